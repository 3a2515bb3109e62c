"""Gradio Blocks front end: prompt -> target video; Learn -> live progress -> imagined rollout,
alignment plot and real-env evaluation; a gallery of learned policies to replay. It calls the same
Services as the REST API (no HTTP round trip), so both see the same jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app import plots
from app.errors import AppError
from app.job_store import FINISHED, SUCCEEDED
from app.media import save_upload_path, write_video
from app.service import EXAMPLE_PROMPTS, Services
from app.ui_guard import NOT_AN_UPLOAD, TOKEN_COOKIE, GuardedBlocks, refuse, ui_refusal
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


def _fail(exc: AppError) -> gr.Error:
    return ui_refusal(exc, TOKEN_MESSAGE)


def _bar(progress: float, width: int = 24) -> str:
    filled = int(round(progress * width))
    return "█" * filled + "░" * (width - filled)


def build_ui(svc: Services) -> gr.Blocks:
    def status() -> str:
        parts = []
        for b in svc.bodies.info():
            if b["state"] == "ready":
                parts.append(f"**{b['body']}** ready ({len(b.get('tasks', []))} tasks)")
            elif b["state"] == "loading":
                parts.append(f"**{b['body']}** loading the bundle…")
            else:
                parts.append(f"**{b['body']}** unavailable: {b.get('error')}")
        return " · ".join(parts)

    def on_load(body: str) -> tuple[Any, ...]:
        ready = all(b["state"] != "loading" for b in svc.bodies.info())
        return status(), gr.Timer(active=not ready), _task_choices(body), *_gallery(body)

    def _task_choices(body: str) -> Any:
        try:
            tasks = svc.bodies.agent(body).tasks()
        except AppError:
            tasks = []
        return gr.Dropdown(choices=[AUTO_TASK, *tasks], value=AUTO_TASK)

    def _video_prompt(video: str | None) -> Path | None:
        if not video:
            return None
        if not demo.is_upload(video):  # GuardedBlocks refused it already; this handler never opens another path
            raise AppError(400, NOT_AN_UPLOAD)
        if not Path(video).is_file():
            raise AppError(400, f"the uploaded video is gone (uploads are kept {svc.cfg.upload_keep_hours:g} h): "
                                "upload it again")
        path = save_upload_path(Path(video), Path(video).name, svc.uploads, svc.cfg.max_upload_bytes)
        svc.prune_uploads()
        return path

    def show_target(body: str, prompt: str, video: str | None, steps: float, token: str | None) -> str:
        try:
            svc.check_token(token)  # decoding is work, and a video is an upload: both need the token
            clip = _video_prompt(video)
            return str(svc.render_target(body, clip if clip else prompt, int(steps)))
        except AppError as exc:
            raise _fail(exc) from None

    def learn(body: str, prompt: str, video: str | None, steps: float, updates: float | None, reward: str,
              seed: float | None, task: str, episodes: float, token: str) -> str:
        """Submit the job. Its only output is the job id (a State), so a refusal shows as one message
        (the error toast) rather than an "Error" badge on every panel; `started` then clears them."""
        try:
            svc.check_token(token)
            clip = _video_prompt(video)
            job = svc.submit(prompt=None if clip else prompt, video=clip, body=body, steps=int(steps),
                             updates=int(updates) if updates else None, reward=reward or None,
                             seed=int(seed) if seed is not None else None,
                             task=None if task in (None, "", AUTO_TASK) else task, eval_episodes=int(episodes))
        except AppError as exc:
            raise _fail(exc) from None
        gr.Info(f"job {job['id']} queued")
        return job["id"]

    def started(job_id: str) -> tuple[Any, ...]:
        """After an accepted Learn: the new job's progress, the result panels emptied, polling on."""
        empty = (None, None, None, "")
        return "", _progress_md(svc.job(job_id)), None, gr.Timer(active=True), *empty

    def cancel(job_id: str | None, token: str) -> str:
        try:
            svc.check_token(token)  # first: without the token, say so rather than "no job"
            if not job_id:
                raise refuse(400, "no job to cancel: start one with Learn")
            return _progress_md(svc.jobs.cancel(job_id))
        except AppError as exc:
            raise _fail(exc) from None

    def poll(job_id: str | None, shown: str) -> tuple[Any, ...]:
        """Timer tick: refresh progress; redraw the curve only when it changed; show the job's target
        and artefacts once each. `shown` is the signature of what the page shows."""
        keep = gr.skip()
        if not job_id:
            return shown, keep, keep, gr.Timer(active=False), keep, keep, keep, keep, keep
        job = svc.store.get(job_id)
        if job is None:
            return shown, "job not found", keep, gr.Timer(active=False), keep, keep, keep, keep, keep
        has_target = "target" in job["artefacts"]
        sig = f"{job_id}:{len(job['history'])}:{job['state']}:{job['reused']}:{has_target}"
        curve = keep if sig == shown else plots.reward_figure(*reward_curve(svc, job))
        # the job's own decoded target, once: re-sending it every tick would restart the video
        target_shown = shown.startswith(f"{job_id}:") and shown.endswith(":True")
        target_video = str(svc.jobs.jobs_dir / job_id / "target.mp4") if has_target and not target_shown else keep
        done = job["state"] in FINISHED
        results: tuple[Any, ...] = (keep, keep, keep, keep)
        if done and sig != shown:
            results = _results(job)
        return sig, _progress_md(job), curve, gr.Timer(active=not done), *results, target_video

    def _results(job: dict[str, Any]) -> tuple[Any, ...]:
        if job["state"] != SUCCEEDED:
            return None, None, None, f"**{job['state']}**: {job.get('error') or job['stage']}"
        folder = svc.jobs.jobs_dir / job["id"]

        def art(name: str, filename: str) -> str | None:
            return str(folder / filename) if name in job["artefacts"] else None

        al = job["result"].get("alignment")
        figure = plots.alignment_figure(al["offsets"], al["similarity"], al["t_a"]) if al else None
        return art("imagined", "imagined.mp4"), figure, art("real", "real.mp4"), _eval_md(job)

    def _gallery(body: str) -> tuple[Any, Any]:
        try:
            items = svc.policies(body)
        except AppError:
            items = []
        rows = [[p["prompt"], p["slug"], p["updates"], p["task"] or "",
                 "" if p["mean_return"] is None else round(p["mean_return"], 1),
                 "" if p["normalised"] is None else round(p["normalised"], 3)] for p in items]
        choices = [(f"{p['prompt']}  ({p['slug']})", p["slug"]) for p in items]
        return gr.Dataframe(value=rows or None), gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def replay(body: str, slug: str | None, token: str | None) -> tuple[Any, ...]:
        try:
            svc.check_token(token)  # a replay can render an imagined rollout: work, as Show target is
            if not slug:
                raise refuse(400, "pick a policy first (learn one in the first tab)")
            match = next((p for p in svc.policies(body) if p["slug"] == slug), None)
            if match is None:
                raise AppError(404, f"no policy {slug!r} for {body}")
            if match["job"]:
                job = svc.store.get(match["job"])
                imagined, align, real, text = _results(job)
                return imagined, real, align, text
            agent = svc.bodies.agent(body)
            path = svc.cfg.runs / "cache" / "replays" / f"{body}-{slug}.mp4"
            if not path.exists():
                with svc.bodies.gate():
                    write_video(path, agent.imagine(slug))
            return str(path), None, None, f"**{match['prompt']}**: imagined rollout (no real-env run recorded)"
        except AppError as exc:
            raise _fail(exc) from None

    # Gradio's own deletion of its temporary files, on the upload retention's age (prune_uploads also
    # applies the size limit to them, on each upload)
    keep_s = max(60, int(svc.cfg.upload_keep_hours * 3600))
    with GuardedBlocks(title="GenRL", delete_cache=(min(keep_s, 3600), keep_s)) as demo:
        gr.Markdown("# GenRL: describe a behaviour, get a policy\nThe world model shows what it understood "
                    "(the target), then learns a policy for it purely in imagination and tries it in the real "
                    "simulator. REST API: [/docs](/docs).")
        banner = gr.Markdown(status(), elem_id="status")
        job_id = gr.State(None)
        shown = gr.State("")
        with gr.Tab("Prompt & learn"):
            with gr.Row():
                with gr.Column(scale=1):
                    # first, as it is needed first: before a video can be uploaded
                    token = gr.Textbox(label="API token", type="password", visible=bool(svc.cfg.token),
                                       info="this server asks for its token to show targets, take videos, "
                                            "learn and replay", elem_id="token")
                    body = gr.Dropdown(svc.bodies.names, value=svc.bodies.default, label="Body")
                    prompt = gr.Textbox(label="Prompt", placeholder="e.g. stand up straight", lines=2,
                                        max_lines=4, elem_id="prompt")
                    gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Examples")
                    video = gr.Video(label="…or a video prompt (mp4 / webm / gif)", sources=["upload"],
                                     height=160, elem_id="video-prompt")
                    steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=32, step=1, label="Target length (steps)")
                    with gr.Accordion("Learning settings", open=False):
                        updates = gr.Number(value=svc.cfg.default_updates, precision=0, minimum=1,
                                            maximum=svc.cfg.max_updates, label="Updates (empty: default)")
                        reward = gr.Radio(list(REWARD_KINDS), value=None, label="Reward (empty: default)")
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        task = gr.Dropdown([AUTO_TASK], value=AUTO_TASK, label="Evaluation task",
                                           allow_custom_value=False)
                        episodes = gr.Slider(0, svc.cfg.max_eval_episodes, value=svc.cfg.eval_episodes, step=1,
                                             label="Real-env evaluation episodes")
                    with gr.Row():
                        show_btn = gr.Button("Show target", elem_id="target-btn")
                        learn_btn = gr.Button("Learn", variant="primary", elem_id="learn-btn")
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                with gr.Column(scale=1):
                    target = gr.Video(label="Target: what the model understood", interactive=False,
                                      elem_id="target-video", **VIDEO)
                    progress = gr.Markdown("No job yet: press **Learn**.", elem_id="progress")
                    curve = gr.Plot(label="Reward while learning", elem_id="reward-plot")
            with gr.Row():
                imagined = gr.Video(label="Imagined rollout of the policy", interactive=False,
                                    elem_id="imagined-video", **VIDEO)
                align = gr.Plot(label="Alignment: similarity per offset (t_a marked)", elem_id="alignment")
                real = gr.Video(label="Real environment", interactive=False, elem_id="real-video", **VIDEO)
            score = gr.Markdown("", elem_id="score")
        with gr.Tab("Learned policies"):
            table = gr.Dataframe(headers=["prompt", "policy", "updates", "task", "return", "normalised"],
                                 interactive=False, elem_id="policies")
            with gr.Row():
                pick = gr.Dropdown([], label="Policy", scale=3)
                refresh_btn = gr.Button("Refresh", scale=1)
                replay_btn = gr.Button("Replay", variant="primary", scale=1)
            with gr.Row():
                replay_imagined = gr.Video(label="Imagined", interactive=False, **VIDEO)
                replay_real = gr.Video(label="Real environment", interactive=False, **VIDEO)
                replay_align = gr.Plot(label="Alignment")
            replay_md = gr.Markdown("")

        poll_timer = gr.Timer(1.0, active=False)
        status_timer = gr.Timer(2.0, active=True)
        target_inputs = [body, prompt, video, steps, token]
        token.change(None, [token], None, js=TOKEN_COOKIE_JS)
        show_btn.click(show_target, target_inputs, target, concurrency_limit=None)
        prompt.submit(show_target, target_inputs, target, concurrency_limit=None)
        learn_btn.click(learn, [body, prompt, video, steps, updates, reward, seed, task, episodes, token],
                        [job_id]).success(started, [job_id],
                                          [shown, progress, curve, poll_timer, imagined, align, real, score],
                                          show_progress="hidden")
        cancel_btn.click(cancel, [job_id, token], progress)
        poll_timer.tick(poll, [job_id, shown],
                        [shown, progress, curve, poll_timer, imagined, align, real, score, target],
                        show_progress="hidden")
        status_timer.tick(on_load, [body], [banner, status_timer, task, table, pick], show_progress="hidden")
        demo.load(on_load, [body], [banner, status_timer, task, table, pick])
        body.change(on_load, [body], [banner, status_timer, task, table, pick])
        refresh_btn.click(_gallery, [body], [table, pick])
        replay_btn.click(replay, [body, pick, token], [replay_imagined, replay_real, replay_align, replay_md])
        poll_timer.tick(lambda b, j: _gallery(b) if j and (svc.store.get(j) or {}).get("state") == SUCCEEDED
                        else (gr.skip(), gr.skip()), [body, job_id], [table, pick], show_progress="hidden")
    return demo


def reward_curve(svc: Services, job: dict[str, Any]) -> tuple[list[list[float]], int | None]:
    """[update, reward] points of a job's learning curve and the update count its x axis spans. A job
    that reused a finished policy learned nothing itself: its curve is the one the policy's own
    training logged, over the updates that training made."""
    updates = job["metrics"].get("updates") or job["settings"].get("updates")
    if job["history"] or not job["reused"] or not job["slug"]:
        return job["history"], updates
    try:
        policy = svc.bodies.agent(job["body"]).policies.find(job["slug"])
    except AppError:  # the body is unavailable: no curve rather than a failed tick
        return [], updates
    if policy is None:
        return [], updates
    return plots.log_history(policy.path / "log.jsonl"), policy.meta.updates_done or None


def _progress_md(job: dict[str, Any]) -> str:
    m = job["metrics"]
    lines = [f"**Job `{job['id']}`** · {job['state']} · {job['stage']}",
             f"`{_bar(job['progress'])}` {job['progress'] * 100:.0f}%"]
    if job.get("queue_position"):
        lines.append(f"queue position {job['queue_position']}")
    if m:
        lines.append(f"update {m.get('update')}/{m.get('updates')} · reward {m.get('reward', 0):.4f} · "
                     f"actor loss {m.get('actor_loss', 0):.3f} · critic loss {m.get('critic_loss', 0):.3f} · "
                     f"{m.get('updates_per_s', 0):.2f} updates/s · {m.get('elapsed', 0):.0f} s")
    if job["reused"]:
        lines.append("reused an already learned policy")
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    return "  \n".join(lines)


def _eval_md(job: dict[str, Any]) -> str:
    ev = job["result"].get("evaluation")
    t_a = f" · t_a = {job['t_a']}" if job["t_a"] is not None else ""
    if not ev:
        return f"Policy `{job['slug']}`{t_a} · no real-env evaluation requested"
    returns = ", ".join(f"{r:.1f}" for r in ev.get("returns", []))
    text = (f"Policy `{job['slug']}`{t_a} · real env **{ev.get('task')}**: "
            f"true return **{ev.get('mean_return', 0):.1f}** ({returns})")
    if ev.get("normalised") is not None:
        text += (f" · normalised score **{ev['normalised']:.3f}** (random {ev.get('random_return', 0):.1f}, "
                 f"expert {ev.get('expert_return', 0):.1f})")
    return text
