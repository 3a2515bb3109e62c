"""Gradio Blocks front end: prompt -> target video; Learn -> live progress -> imagined rollout,
alignment plot and real-env evaluation; Instant -> the bundle's generalist on the prompt at once (its
imagined rollout and a real-env episode, no learning); a gallery of learned policies to replay. It
calls the same Services as the REST API (no HTTP round trip), so both see the same jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app import plots
from app.errors import AppError
from app.job import Job
from app.service import Services
from app.ui_guard import NOT_AN_UPLOAD, TOKEN_COOKIE, GuardedBlocks, refuse, ui_refusal
from genrl_core.config import BEHAVIOUR_INITS
from genrl_core.models.reward import REWARD_KINDS
from genrl_core.prompt import MAX_STEPS, MIN_STEPS

VIDEO = {"height": 256, "width": 256, "autoplay": True, "loop": True, "elem_classes": ["genrl-video"]}
AUTO_TASK = "auto (nearest to the prompt)"
# a page's user is asked for the token in the page, not told about the REST API's header
TOKEN_MESSAGE = "this server needs its API token to show targets, replay and learn: enter it in the API token box"
# the token box keeps a cookie of its value: the browser's uploads and video downloads carry it (they are
# plain HTTP requests of Gradio's, with no event inputs); SameSite keeps other sites' pages from sending it
TOKEN_COOKIE_JS = (f"(token) => {{ document.cookie = '{TOKEN_COOKIE}=' + encodeURIComponent(token || '') + "
                   "'; path=/; SameSite=Strict'; }")
# a policy learned for under this share of the default updates has barely started: its score says
# little about what the prompt can learn, and a newcomer should be told so
FEW_UPDATES = 0.1
NO_RESULTS = (None, None, None, "")  # the result panels emptied: two videos, a plot, the score


def _fail(exc: AppError) -> gr.Error:
    return ui_refusal(exc, TOKEN_MESSAGE)


def _chosen_task(task: str | None) -> str | None:
    """The evaluation task the dropdown names; None for automatic (the nearest to the prompt)."""
    return None if task in (None, "", AUTO_TASK) else task


def _bar(progress: float, width: int = 24) -> str:
    filled = int(round(progress * width))
    return "█" * filled + "░" * (width - filled)


class Handlers:
    """The page's event handlers, over Services alone. Gradio names each event's API after its
    handler (/gradio_api/call/learn, ...), so these names are part of the UI's API."""

    def __init__(self, svc: Services, demo: GuardedBlocks):
        self.svc, self.demo = svc, demo

    def status(self) -> str:
        parts = []
        for b in self.svc.bodies_info():
            if b["state"] == "ready":
                parts.append(f"**{b['body']}** ready ({len(b.get('tasks', []))} tasks)")
            elif b["state"] == "loading":
                parts.append(f"**{b['body']}** loading the bundle…")
            else:
                parts.append(f"**{b['body']}** unavailable: {b.get('error')}")
        return " · ".join(parts)

    def on_load(self, body: str) -> tuple[Any, ...]:
        ready = all(b["state"] != "loading" for b in self.svc.bodies_info())
        return (self.status(), gr.Timer(active=not ready), self._task_choices(body), self._examples(body),
                *self._gallery(body))

    def _examples(self, body: str) -> Any:
        try:
            prompts = self.svc.example_prompts(body)
        except AppError:
            prompts = []
        return gr.Dataset(samples=[[p] for p in prompts])  # an update: the examples keep their prompt component

    def _task_choices(self, body: str) -> Any:
        try:
            tasks = self.svc.tasks(body)
        except AppError:
            tasks = []
        return gr.Dropdown(choices=[AUTO_TASK, *tasks], value=AUTO_TASK)

    def _video_prompt(self, video: str | None) -> Path | None:
        if not video:
            return None
        if not self.demo.is_upload(video):  # GuardedBlocks refused it already; this never opens another path
            raise AppError(400, NOT_AN_UPLOAD)
        if not Path(video).is_file():
            raise AppError(400, f"the uploaded video is gone (uploads are kept {self.svc.cfg.upload_keep_hours:g} h): "
                                "upload it again")
        return self.svc.take_upload(Path(video), Path(video).name)

    def show_target(self, body: str, prompt: str, video: str | None, steps: float, token: str | None) -> str:
        try:
            self.svc.check_token(token)  # decoding is work, and a video is an upload: both need the token
            clip = self._video_prompt(video)
            return str(self.svc.render_target(body, clip if clip else prompt, int(steps)))
        except AppError as exc:
            raise _fail(exc) from None

    def learn(self, body: str, prompt: str, video: str | None, steps: float, updates: float | None, reward: str,
              seed: float | None, task: str, episodes: float, init: str | None, token: str) -> str:
        """Submit the job. Its only output is the job id (a State), so a refusal shows as one message
        (the error toast) rather than an "Error" badge on every panel; `started` then clears them."""
        try:
            self.svc.check_token(token)
            clip = self._video_prompt(video)
            request = self.svc.learn_request(prompt=None if clip else prompt, video=clip, body=body,
                                             steps=int(steps), updates=int(updates) if updates else None,
                                             reward=reward or None, seed=int(seed) if seed is not None else None,
                                             task=_chosen_task(task), eval_episodes=int(episodes),
                                             init=init or None)
            job = self.svc.submit(request)
        except AppError as exc:
            raise _fail(exc) from None
        gr.Info(f"job {job.id} queued")
        return job.id

    def started(self, job_id: str) -> tuple[Any, ...]:
        """After an accepted Learn: the new job's progress, the result panels emptied, polling on."""
        return "", _progress_md(self.svc.job(job_id)), None, gr.Timer(active=True), *NO_RESULTS

    def clear_results(self) -> tuple[Any, ...]:
        """An action starts: what an earlier one showed goes (the result panels and the target), so
        that it never sits beside this one's error as if it were its result."""
        return *NO_RESULTS, None

    def clear_replay(self) -> tuple[Any, ...]:
        """A replay starts: the previous replay's panels go, as clear_results."""
        return NO_RESULTS

    def instant(self, body: str, prompt: str, video: str | None, steps: float, task: str, token: str) -> str:
        """Act on the prompt with the bundle's generalist (Services.act). As Learn, its only output is
        the run's id (a State), so a refusal is one message; `instant_results` then shows the run."""
        try:
            self.svc.check_token(token)
            clip = self._video_prompt(video)
            return self.svc.act(body, clip if clip else prompt, task=_chosen_task(task), steps=int(steps)).id
        except AppError as exc:
            raise _fail(exc) from None

    def instant_results(self, run_id: str) -> tuple[Any, ...]:
        """The result panels of an instant run: its imagined rollout, its real-env episode, its score."""
        try:
            run = self.svc.instant(run_id)
            imagined, real = (str(self.svc.instant_video(run.id, name)) for name in ("imagined", "real"))
        except AppError as exc:
            raise _fail(exc) from None
        s = run.seconds
        timing = "cached" if run.cached else f"a policy in {s['policy']:.2f} s, the real env in {s['real']:.1f} s"
        text = f"**Instant** (the bundle's generalist, no learning; {timing}) · {_real_md(run.evaluation)}"
        return imagined, None, real, text

    def cancel(self, job_id: str | None, token: str) -> str:
        try:
            self.svc.check_token(token)  # first: without the token, say so rather than "no job"
            if not job_id:
                raise refuse(400, "no job to cancel: start one with Learn")
            return _progress_md(self.svc.cancel(job_id))
        except AppError as exc:
            raise _fail(exc) from None

    def poll(self, job_id: str | None, shown: str) -> tuple[Any, ...]:
        """Timer tick: refresh progress; redraw the curve only when it changed; show the job's target
        and artefacts once each. `shown` is the signature of what the page shows."""
        keep = gr.skip()
        if not job_id:
            return shown, keep, keep, gr.Timer(active=False), keep, keep, keep, keep, keep
        job = self.svc.find_job(job_id)
        if job is None:
            return shown, "job not found", keep, gr.Timer(active=False), keep, keep, keep, keep, keep
        target = self.svc.recorded_artefact(job, "target")
        sig = f"{job_id}:{len(job.history)}:{job.state}:{job.reused}:{target is not None}"
        curve = keep if sig == shown else plots.reward_figure(*self.svc.reward_curve(job))
        # the job's own decoded target, once: re-sending it every tick would restart the video
        target_shown = shown.startswith(f"{job_id}:") and shown.endswith(":True")
        target_video = str(target) if target is not None and not target_shown else keep
        results: tuple[Any, ...] = (keep, keep, keep, keep)
        if job.done and sig != shown:
            results = self._results(job)
        return sig, _progress_md(job), curve, gr.Timer(active=not job.done), *results, target_video

    def _results(self, job: Job) -> tuple[Any, ...]:
        """The result panels of a finished job: imagined rollout, alignment plot, real-env video, score."""
        if not job.succeeded:
            return None, None, None, f"**{job.state}**: {job.error or job.stage}"

        def art(name: str) -> str | None:
            path = self.svc.recorded_artefact(job, name)
            return str(path) if path is not None else None

        al = job.result.get("alignment")
        figure = plots.alignment_figure(al["offsets"], al["similarity"], al["t_a"]) if al else None
        return art("imagined"), figure, art("real"), _eval_md(job) + self._few_updates(self.svc.updates_done(job))

    def _few_updates(self, updates: int | None) -> str:
        """A note under a score of a policy that learned far too briefly to mean much."""
        default = self.svc.behaviour_defaults
        if updates is None or updates >= FEW_UPDATES * default.updates:
            return ""
        limit = f" or {default.max_minutes:g} min" if default.max_minutes else ""
        return (f"  \n**Only {updates} updates**: too few to learn a behaviour (the {self.svc.cfg.behaviour_preset} "
                f"preset learns for {default.updates} updates{limit}; leave Updates empty for the default)")

    def _gallery(self, body: str) -> tuple[Any, Any]:
        try:
            items = self.svc.policies(body)
        except AppError:
            items = []
        rows = [[p["prompt"], _settings_text(p["changed"]), p["slug"], p["updates"], p["task"] or "",
                 "" if p["mean_return"] is None else round(p["mean_return"], 1),
                 "" if p["normalised"] is None else round(p["normalised"], 3)] for p in items]
        choices = [(f"{p['prompt']} · {_settings_text(p['changed'])}  ({p['slug']})", p["slug"]) for p in items]
        return gr.Dataframe(value=rows or None), gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def _gallery_after(self, body: str, job_id: str | None) -> tuple[Any, Any]:
        """The gallery again once the page's job has succeeded (it added a policy), else unchanged."""
        job = self.svc.find_job(job_id) if job_id else None
        return self._gallery(body) if job is not None and job.succeeded else (gr.skip(), gr.skip())

    def replay(self, body: str, slug: str | None, token: str | None) -> tuple[Any, ...]:
        try:
            self.svc.check_token(token)  # a replay can render an imagined rollout: work, as Show target is
            if not slug:
                raise refuse(400, "pick a policy first (learn one in the first tab)")
            shown = self.svc.replay(body, slug)
        except AppError as exc:
            raise _fail(exc) from None
        if shown.job is not None:
            imagined, align, real, text = self._results(shown.job)
        else:
            imagined, align, real = str(shown.imagined), None, None
            text = f"**{shown.prompt}** · policy `{shown.slug}`: imagined rollout" + self._few_updates(shown.updates)
        if shown.record is None:
            return imagined, real, align, text + ("" if real else " (no real-env run recorded)")
        ev = shown.record
        seeds = ev["seeds"]
        recorded = (f"Recorded ({ev['episodes']} episode(s), seeds {seeds[0]}-{seeds[-1]}; the video: episode 0) · "
                    f"{_real_md(ev)}")
        return imagined, str(shown.real) if shown.real else real, align, f"{text}  \n{recorded}"


@dataclass
class LearnTab:
    """The "Prompt & learn" tab: the request on the left, what the job shows on the right and below."""

    token: gr.Textbox
    body: gr.Dropdown
    prompt: gr.Textbox
    video: gr.Video
    steps: gr.Slider
    updates: gr.Number
    reward: gr.Radio
    seed: gr.Number
    task: gr.Dropdown
    episodes: gr.Slider
    init: gr.Radio
    examples: gr.Dataset
    show_btn: gr.Button
    learn_btn: gr.Button
    instant_btn: gr.Button
    cancel_btn: gr.Button
    target: gr.Video
    progress: gr.Markdown
    curve: gr.Plot
    imagined: gr.Video
    align: gr.Plot
    real: gr.Video
    score: gr.Markdown

    @classmethod
    def build(cls, svc: Services) -> LearnTab:
        # two columns, so that on a wide screen (1400 x 1000) every result shows beside the request
        # without scrolling: the request on the left, the three videos, progress and plots on the right
        with gr.Tab("Prompt & learn"):
            with gr.Row():
                with gr.Column(scale=1, min_width=360):
                    # first, as it is needed first: before a video can be uploaded
                    token = gr.Textbox(label="API token", type="password", visible=bool(svc.cfg.token),
                                       info="this server asks for its token to show targets, take videos, "
                                            "learn and replay: paste it here", elem_id="token")
                    names = svc.body_names()
                    body = gr.Dropdown(names, value=names[0], label="Body", elem_id="body")
                    prompt = gr.Textbox(label="Prompt", placeholder="e.g. stand up straight", lines=2,
                                        max_lines=4, elem_id="prompt")
                    # the body's own tasks' prompts, replaced when another body is picked
                    examples = gr.Dataset(components=[prompt], samples=[[p] for p in svc.example_prompts(names[0])],
                                          label="Examples", elem_id="examples")
                    video = gr.Video(label="…or a video prompt (mp4 / webm / gif)", sources=["upload"],
                                     height=120, elem_id="video-prompt")
                    steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=32, step=1, label="Target length (steps)")
                    with gr.Accordion("Learning settings", open=False):
                        updates = gr.Number(value=svc.cfg.default_updates, precision=0, minimum=1,
                                            maximum=svc.cfg.max_updates, label=_updates_label(svc))
                        reward = gr.Radio(list(REWARD_KINDS), value=None,
                                          label=f"Reward (empty: {svc.behaviour_defaults.reward})")
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        task = gr.Dropdown([AUTO_TASK], value=AUTO_TASK, label="Evaluation task",
                                           allow_custom_value=False)
                        episodes = gr.Slider(0, svc.cfg.max_eval_episodes, value=svc.cfg.eval_episodes, step=1,
                                             label="Real-env evaluation episodes")
                        init = gr.Radio(list(BEHAVIOUR_INITS), value=BEHAVIOUR_INITS[0], label="Start from",
                                        info="generalist: refine what Instant shows instead of learning from "
                                             "scratch (needs a bundle with a generalist)")
                    with gr.Row():
                        show_btn = gr.Button("Show target", elem_id="target-btn", min_width=90)
                        learn_btn = gr.Button("Learn", variant="primary", elem_id="learn-btn", min_width=90)
                        instant_btn = gr.Button("Instant", variant="primary", elem_id="instant-btn", min_width=90)
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", min_width=90)
                    gr.Markdown("**Learn** trains a policy for the prompt (minutes); **Instant** shows at once what "
                                "the bundle's generalist does for it, without learning.")
                with gr.Column(scale=2):
                    with gr.Row():
                        target = gr.Video(label="Target: what the model understood", interactive=False,
                                          elem_id="target-video", **VIDEO)
                        imagined = gr.Video(label="Imagined rollout of the policy", interactive=False,
                                            elem_id="imagined-video", **VIDEO)
                        real = gr.Video(label="Real environment", interactive=False, elem_id="real-video", **VIDEO)
                    score = gr.Markdown("", elem_id="score")
                    progress = gr.Markdown("No job yet: press **Learn**.", elem_id="progress")
                    with gr.Row():
                        curve = gr.Plot(label="Reward while learning", elem_id="reward-plot")
                        align = gr.Plot(label="Alignment: similarity per offset (t_a marked)", elem_id="alignment")
        return cls(token, body, prompt, video, steps, updates, reward, seed, task, episodes, init, examples, show_btn,
                   learn_btn,
                   instant_btn, cancel_btn, target, progress, curve, imagined, align, real, score)


def _updates_label(svc: Services) -> str:
    """The Updates field's label, with the default a request that leaves it empty gets."""
    limit = svc.behaviour_defaults.max_minutes
    return f"Updates (empty: {svc.default_updates()}" + (f", at most {limit:g} min)" if limit else ")")


@dataclass
class PoliciesTab:
    """The "Learned policies" tab: the gallery and a replay of one policy."""

    table: gr.Dataframe
    pick: gr.Dropdown
    refresh_btn: gr.Button
    replay_btn: gr.Button
    imagined: gr.Video
    real: gr.Video
    align: gr.Plot
    text: gr.Markdown

    @classmethod
    def build(cls) -> PoliciesTab:
        with gr.Tab("Learned policies"):
            table = gr.Dataframe(headers=["prompt", "settings (not default)", "policy", "updates", "task", "return",
                                          "normalised"],
                                 interactive=False, elem_id="policies")
            with gr.Row():
                pick = gr.Dropdown([], label="Policy", scale=3)
                refresh_btn = gr.Button("Refresh", scale=1)
                replay_btn = gr.Button("Replay", variant="primary", scale=1, elem_id="replay-btn")
            with gr.Row():
                imagined = gr.Video(label="Imagined", interactive=False, **VIDEO)
                real = gr.Video(label="Real environment", interactive=False, **VIDEO)
                align = gr.Plot(label="Alignment")
            text = gr.Markdown("")
        return cls(table, pick, refresh_btn, replay_btn, imagined, real, align, text)


def build_ui(svc: Services) -> gr.Blocks:
    # Gradio's own deletion of its temporary files, on the upload retention's age (prune_uploads also
    # applies the size limit to them, on each upload and each event that shows a file)
    keep_s = max(60, int(svc.cfg.upload_keep_hours * 3600))
    with GuardedBlocks(title="GenRL", delete_cache=(min(keep_s, 3600), keep_s)) as demo:
        demo.after_files = svc.prune_uploads
        h = Handlers(svc, demo)
        gr.Markdown("# GenRL: describe a behaviour, get a policy\nThe world model shows what it understood "
                    "(the target), then learns a policy for it purely in imagination and tries it in the real "
                    "simulator. REST API: [/docs](/docs).")
        banner = gr.Markdown(h.status(), elem_id="status")
        job_id = gr.State(None)
        instant_id = gr.State(None)
        shown = gr.State("")
        lt = LearnTab.build(svc)
        pt = PoliciesTab.build()
        poll_timer = gr.Timer(1.0, active=False)
        status_timer = gr.Timer(2.0, active=True)
        _wire(h, lt, pt, banner, job_id, instant_id, shown, poll_timer, status_timer)
    return demo


def _wire(h: Handlers, lt: LearnTab, pt: PoliciesTab, banner: gr.Markdown, job_id: gr.State,
          instant_id: gr.State, shown: gr.State, poll_timer: gr.Timer, status_timer: gr.Timer) -> None:
    """Connect the page's events to their handlers (in a fixed order: Gradio numbers the events so)."""
    target_inputs = [lt.body, lt.prompt, lt.video, lt.steps, lt.token]
    results = [lt.imagined, lt.align, lt.real, lt.score]
    replayed = [pt.imagined, pt.real, pt.align, pt.text]
    on_load_outputs = [banner, status_timer, lt.task, lt.examples, pt.table, pt.pick]
    lt.examples.click(lambda sample: sample[0], lt.examples, lt.prompt, queue=False, show_progress="hidden",
                      api_visibility="private")
    lt.token.change(None, [lt.token], None, js=TOKEN_COOKIE_JS)
    # every action first empties what an earlier one showed (a listener of its own, so that the
    # action's refusal, a toast, never marks those panels)
    for trigger in (lt.show_btn.click, lt.prompt.submit, lt.learn_btn.click, lt.instant_btn.click):
        trigger(h.clear_results, None, [*results, lt.target], queue=False, show_progress="hidden",
                api_visibility="private")
    pt.replay_btn.click(h.clear_replay, None, replayed, queue=False, show_progress="hidden", api_visibility="private")
    lt.show_btn.click(h.show_target, target_inputs, lt.target, concurrency_limit=None)
    lt.prompt.submit(h.show_target, target_inputs, lt.target, concurrency_limit=None)
    lt.learn_btn.click(h.learn, [lt.body, lt.prompt, lt.video, lt.steps, lt.updates, lt.reward, lt.seed, lt.task,
                                 lt.episodes, lt.init, lt.token],
                       [job_id]).success(h.started, [job_id], [shown, lt.progress, lt.curve, poll_timer, *results],
                                         show_progress="hidden")
    lt.instant_btn.click(h.instant, [lt.body, lt.prompt, lt.video, lt.steps, lt.task, lt.token],
                         [instant_id]).success(h.instant_results, [instant_id], results)
    lt.cancel_btn.click(h.cancel, [job_id, lt.token], lt.progress)
    poll_timer.tick(h.poll, [job_id, shown], [shown, lt.progress, lt.curve, poll_timer, *results, lt.target],
                    show_progress="hidden")
    status_timer.tick(h.on_load, [lt.body], on_load_outputs, show_progress="hidden")
    h.demo.load(h.on_load, [lt.body], on_load_outputs)
    lt.body.change(h.on_load, [lt.body], on_load_outputs)
    pt.refresh_btn.click(h._gallery, [lt.body], [pt.table, pt.pick])
    pt.replay_btn.click(h.replay, [lt.body, pt.pick, lt.token], replayed)
    # a lambda, as it always was: Gradio names this event's API after it ("lambda")
    poll_timer.tick(lambda b, j: h._gallery_after(b, j), [lt.body, job_id], [pt.table, pt.pick],
                    show_progress="hidden")


def _progress_md(job: Job) -> str:
    m = job.metrics
    lines = [f"**Job `{job.id}`** · {job.state} · {job.stage}",
             f"`{_bar(job.progress)}` {job.progress * 100:.0f}%"]
    if job.queue_position:
        lines.append(f"queue position {job.queue_position}")
    if m:
        lines.append(f"update {m.get('update')}/{m.get('updates')} · reward {m.get('reward', 0):.4f} · "
                     f"actor loss {m.get('actor_loss', 0):.3f} · critic loss {m.get('critic_loss', 0):.3f} · "
                     f"{m.get('updates_per_s', 0):.2f} updates/s · {m.get('elapsed', 0):.0f} s")
    if job.reused:
        lines.append("reused an already learned policy")
    if job.error:
        lines.append(f"error: {job.error}")
    return "  \n".join(lines)


def _eval_md(job: Job) -> str:
    ev = job.result.get("evaluation")
    t_a = f" · t_a = {job.t_a}" if job.t_a is not None else ""
    return f"Policy `{job.slug}`{t_a} · " + (_real_md(ev) if ev else "no real-env evaluation requested")


def _real_md(ev: dict[str, Any]) -> str:
    """A real-env evaluation (run_policy's result, a job's or a record's) in words."""
    returns = ", ".join(f"{r:.1f}" for r in ev.get("returns", []))
    text = f"real env **{ev.get('task')}**: true return **{ev.get('mean_return', 0):.1f}** ({returns})"
    if ev.get("normalised") is not None:
        text += (f" · normalised score **{ev['normalised']:.3f}** (random {ev.get('random_return') or 0:.1f}, "
                 f"expert {ev.get('expert_return') or 0:.1f})")
    return text


def _settings_text(changed: dict[str, Any]) -> str:
    """A policy's settings that differ from the defaults, e.g. "updates=30, seed=1"."""
    return ", ".join(f"{key}={value}" for key, value in changed.items()) or "defaults"
