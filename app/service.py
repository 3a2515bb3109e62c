"""What the REST API and the UI both do, validated once: render a target, take an upload, start,
cancel and show jobs, list and replay policies, act on a prompt at once with the bundle's generalist.
The front ends call nothing else: this is their whole view of the app. Every user error is an
AppError with a status and a clear message."""

from __future__ import annotations

import dataclasses
import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app import plots
from app.bodies import Bodies, example_prompts
from app.config import AppConfig
from app.errors import AppError
from app.executors import make_jobs
from app.instant import VIDEOS, Instant, InstantCache
from app.job import Job
from app.job_recipe import artefact_file, find_artefact
from app.job_store import JobStore
from app.jobs import JobManager
from app.media import (
    TargetCache,
    copy_file,
    digest,
    prune_tree,
    prune_uploads,
    save_upload,
    save_upload_path,
    write_video,
)
from genrl_core import prompt as prompt_limits
from genrl_core.config import BEHAVIOUR_BOOKKEEPING, BEHAVIOUR_INITS, BehaviourConfig, check_target_samples, preset
from genrl_core.envs.tasks import body_tasks
from genrl_core.errors import BundleError, ConfigError, GenRLError
from genrl_core.evaluate import RECORD_VIDEO, read_record
from genrl_core.generalist import generalist_problem
from genrl_core.models.reward import REWARD_KINDS
from genrl_core.policies import LearnedPolicy
from genrl_core.prompt import Prompt, PromptEmpty, PromptError


def text_prompt(prompt: str | None) -> Prompt:
    """A text prompt from a request (never read as a file path), or the AppError that refuses it."""
    try:
        return Prompt.text(prompt)
    except PromptEmpty as exc:
        raise AppError(400, str(exc)) from None
    except PromptError as exc:  # over the documented maxLength, a control character, not a string: what
        raise AppError(422, str(exc)) from None  # the OpenAPI document declares invalid is a 422 there


def check_steps(steps: int) -> int:
    try:
        return prompt_limits.check_steps(steps)
    except PromptError as exc:
        raise AppError(422, str(exc)) from None


def parse_prompt(prompt: str | Path) -> Prompt:
    """A text prompt, or a stored video prompt (a Path: only ever an upload this server kept)."""
    try:
        return Prompt.video(prompt) if isinstance(prompt, Path) else text_prompt(prompt)
    except PromptError as exc:
        raise AppError(400, str(exc)) from None


@dataclass(frozen=True)
class LearnRequest:
    """A policy-learning request as REST and the UI both submit it, validated once
    (`Services.learn_request`): everything a job needs to run, its prompt parsed."""

    body: str
    prompt: Prompt
    settings: dict[str, Any]  # the learning settings the request gives (BehaviourConfig names)
    options: dict[str, Any]  # steps, task, eval_episodes: what the job shows and how it evaluates


@dataclass(frozen=True)
class Replay:
    """What replaying a learned policy shows: the latest job that ran it (its artefacts), or else
    an `imagined` rollout of the policy; and the policy's recorded real-env episode (`real`, its
    score `record`: genrl evaluate --record) when no job evaluated it."""

    prompt: str
    slug: str
    updates: int | None
    job: Job | None = None
    imagined: Path | None = None
    real: Path | None = None
    record: dict[str, Any] | None = None


@dataclass
class Services:
    cfg: AppConfig
    bodies: Bodies
    store: JobStore
    jobs: JobManager
    targets: TargetCache
    instants: InstantCache
    started: float
    ui_files: Path | None = None  # Gradio's temporary files (the UI's uploads and shown videos), when it has a UI

    @classmethod
    def build(cls, cfg: AppConfig) -> Services:
        cfg.runs.mkdir(parents=True, exist_ok=True)
        bodies = Bodies(cfg.bundles, cfg.device, cfg.runs / "policies", cfg.inference_slots, cfg.inference_queue,
                        cfg.behaviour_preset)
        store = JobStore(cfg.db)
        jobs = make_jobs(cfg, store, bodies)  # threads here, worker processes or a Ray cluster
        cache = cfg.runs / "cache"
        return cls(cfg, bodies, store, jobs, TargetCache(cache / "targets", cfg.target_cache),
                   InstantCache(cache / "instant", cfg.target_cache), time.time())

    def start(self) -> None:
        """Start loading the bundles (unless the settings leave it to the first request) and running jobs."""
        if self.cfg.preload:
            self.bodies.start_loading()
        self.jobs.start()

    def stop(self) -> None:
        """Stop running jobs: they checkpoint and are re-queued for the next start."""
        self.jobs.stop()

    # -- uploads -------------------------------------------------------------------------------
    @property
    def uploads(self) -> Path:
        return self.cfg.runs / "uploads"

    def take_upload(self, src: BinaryIO | Path, filename: str | None) -> Path:
        """Keep an uploaded video prompt (a stream, or a file the UI received) under the upload limits;
        each upload makes room under them."""
        if isinstance(src, Path):
            path = save_upload_path(src, filename, self.uploads, self.cfg.max_upload_bytes)
        else:
            path = save_upload(src, filename, self.uploads, self.cfg.max_upload_bytes)
        self.prune_uploads()
        return path

    def prune_uploads(self) -> list[Path]:
        """Apply the upload retention limits (age, total size), sparing live jobs' video prompts; the
        UI's temporary files are held to the same limits."""
        live = {Path(j["video"]) for state in ("queued", "running") for j in self.store.list(state=state, limit=10**6)
                if j.get("video")}
        age, size = self.cfg.upload_keep_hours * 3600, int(self.cfg.upload_keep_mb * 2**20)
        gone = prune_uploads(self.uploads, live, age, size)
        if self.ui_files is not None:  # the UI's own copies: none is a live job's prompt (those are in uploads)
            gone += prune_tree(self.ui_files, age, size)
        return gone

    # -- auth ----------------------------------------------------------------------------------
    def check_token(self, given: str | None) -> None:
        if self.cfg.token and not hmac.compare_digest((given or "").encode(), self.cfg.token.encode()):
            # no angle brackets: the UI renders messages as HTML, where "<token>" vanished as a tag
            raise AppError(401, "this server needs an API token to start or cancel work: send the header "
                                "'Authorization: Bearer YOUR_TOKEN' (in the UI: the token box)")

    # -- bodies --------------------------------------------------------------------------------
    def bodies_info(self) -> list[dict[str, Any]]:
        """Each body served: its bundle, whether it is loaded, and its tasks once it is."""
        return self.bodies.info()

    def example_prompts(self, body: str | None) -> list[str]:
        """The body's example prompts (the default body's when none is named)."""
        return example_prompts(self.bodies.body(body).name)

    def body_names(self) -> list[str]:
        """The bodies served, the default (a request that names none) first."""
        return self.bodies.names

    def served_tasks(self) -> list[str]:
        """Every task of every body served (known before any bundle has loaded)."""
        return [task.name for body in self.bodies.names for task in body_tasks(body)]

    def tasks(self, body: str | None) -> list[str]:
        """The real-env evaluation tasks of a body; an AppError while it is unknown or not loaded."""
        return list(self.bodies.agent(body).tasks())

    def _check_task(self, body: str, task: str) -> None:
        tasks = self.bodies.agent(body, wait=60).tasks()
        if task not in tasks:
            raise AppError(422, f"unknown task {task!r} for {body}; valid: {', '.join(tasks)}")

    # -- learning defaults ---------------------------------------------------------------------
    @property
    def behaviour_defaults(self) -> BehaviourConfig:
        """The learning settings a request leaves out: the served preset's (`default_updates` aside)."""
        return preset("behaviour", self.cfg.behaviour_preset)["behaviour"]

    def default_updates(self) -> int:
        """The updates a job learns for when its request names none (`max_minutes` may end it sooner)."""
        return self.cfg.default_updates or self.behaviour_defaults.updates

    def changed_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings of a policy that differ from the defaults: what tells policies of one prompt
        apart (bookkeeping, which changes nothing learned, left out)."""
        defaults = dataclasses.asdict(self.behaviour_defaults)
        return {k: v for k, v in settings.items() if k not in BEHAVIOUR_BOOKKEEPING and defaults.get(k, v) != v}

    # -- targets -------------------------------------------------------------------------------
    def render_target(self, body: str | None, prompt: str | Path, steps: int = 32, use_aligner: bool = True) -> Path:
        """An mp4 of the decoded target of a text prompt or a stored video prompt (cached)."""
        steps = check_steps(steps)
        parsed = parse_prompt(prompt)
        b = self.bodies.body(body)
        agent = self.bodies.agent(b.name, wait=60)
        samples = agent.behaviour_defaults.target_samples  # what learning this prompt would match
        path = self.targets.path(b.name, b.version, parsed.identity, steps, use_aligner, samples)
        if self.targets.get(path):
            return path
        with self.bodies.gate():
            try:
                frames = agent.decode(agent.target(parsed, steps=steps, use_aligner=use_aligner, samples=samples))
            except GenRLError as exc:
                raise AppError(400, str(exc)) from None
            write_video(path, frames)
        self.targets.prune()
        return path

    # -- jobs ----------------------------------------------------------------------------------
    def learn_request(self, *, prompt: str | None = None, video: Path | None = None, body: str | None = None,
                      steps: int = 32, updates: int | None = None, reward: str | None = None,
                      seed: int | None = None, use_aligner: bool | None = None, task: str | None = None,
                      eval_episodes: int | None = None, init: str | None = None,
                      target_samples: int | None = None) -> LearnRequest:
        """A policy-learning request of REST or the UI, validated under this server's limits: a text
        prompt, or a stored video prompt (an upload this server kept), parsed (and hashed) here.
        `init="generalist"` refines the bundle's generalist (409 when the bundle has none that fits)."""
        b = self.bodies.body(body)
        if video is None:
            parsed = text_prompt(prompt)
        elif prompt is not None and prompt.strip():
            raise AppError(400, "give either a text prompt or a video prompt, not both")
        else:
            parsed = parse_prompt(video)
        steps = check_steps(steps)
        updates = updates if updates is not None else self.cfg.default_updates
        if updates is not None and not 1 <= updates <= self.cfg.max_updates:
            raise AppError(422, f"updates must be between 1 and {self.cfg.max_updates}, got {updates}")
        if reward is not None and reward not in REWARD_KINDS:  # oracle:TASK is the score ladder's, not a user's
            raise AppError(422, f"unknown reward {reward!r}; valid: {', '.join(REWARD_KINDS)}")
        episodes = self.cfg.eval_episodes if eval_episodes is None else eval_episodes
        if not 0 <= episodes <= self.cfg.max_eval_episodes:
            raise AppError(422, f"eval_episodes must be between 0 and {self.cfg.max_eval_episodes}, got {episodes}")
        if task:
            self._check_task(b.name, task)
        if target_samples is not None:
            try:
                check_target_samples(target_samples)
            except ConfigError as exc:
                raise AppError(422, str(exc)) from None
        if init is not None and init not in BEHAVIOUR_INITS:
            raise AppError(422, f"unknown init {init!r}; valid: {', '.join(BEHAVIOUR_INITS)}")
        if init == "generalist":
            agent = self.bodies.agent(b.name, wait=60)
            if (problem := generalist_problem(agent.bundle, agent.wm_digest)) is not None:
                raise AppError(409, problem)
        settings = {k: v for k, v in (("updates", updates), ("reward", reward), ("seed", seed),
                                      ("use_aligner", use_aligner), ("init", init),
                                      ("target_samples", target_samples)) if v is not None}
        return LearnRequest(b.name, parsed, settings, {"steps": steps, "task": task or None, "eval_episodes": episodes})

    def submit(self, request: LearnRequest) -> Job:
        """Queue the job of a validated request (`learn_request`); its prompt is stored parsed."""
        return Job.from_row(self.jobs.submit(request.body, request.prompt, request.settings, request.options))

    def find_job(self, job_id: str) -> Job | None:
        """The job of that id; None when there is none."""
        row = self.store.get(job_id)
        return Job.from_row(row) if row is not None else None

    def job(self, job_id: str) -> Job:
        job = self.find_job(job_id)
        if job is None:
            raise AppError(404, f"no job {job_id!r}; list jobs with GET /jobs")
        return job

    def list_jobs(self, state: str | None = None, body: str | None = None, limit: int = 50) -> list[Job]:
        """Recent jobs, newest first."""
        return [Job.from_row(row) for row in self.store.list(state=state, body=body, limit=limit)]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask a running one (in any process) to stop at its next update."""
        return Job.from_row(self.jobs.cancel(job_id))

    def artefact(self, job_id: str, name: str) -> tuple[Path, str]:
        """The file and media type of one artefact of one job (a whitelisted name: an AppError else)."""
        return find_artefact(self.store, self.jobs.jobs_dir, job_id, name)

    def recorded_artefact(self, job: Job, name: str) -> Path | None:
        """The file of an artefact the job has recorded (None before it has)."""
        return artefact_file(self.jobs.jobs_dir, job.id, name) if name in job.artefacts else None

    def reward_curve(self, job: Job) -> tuple[list[list[float]], int | None]:
        """[update, reward] points of a job's learning curve and the update count its x axis spans. A
        job that reused a finished policy learned nothing itself: its curve is the one the policy's own
        training logged, over the updates that training made."""
        updates = job.metrics.get("updates") or job.settings.get("updates")
        if job.history or not job.reused:
            return job.history, updates
        policy = self._policy_of(job)
        if policy is None:
            return [], updates
        return plots.log_history(policy.path / "log.jsonl"), policy.meta.updates_done or None

    def _policy_of(self, job: Job) -> LearnedPolicy | None:
        """The finished policy a job learned or reused; None before it has one, or while its body is
        unavailable (the UI then shows less rather than failing a tick)."""
        if not job.slug:
            return None
        try:
            return self.bodies.agent(job.body).policies.find(job.slug)
        except AppError:
            return None

    def updates_done(self, job: Job) -> int | None:
        """The updates the policy of a job learned for (a reused policy's own), once it has one."""
        policy = self._policy_of(job)
        return policy.meta.updates_done if policy is not None else None

    def policies(self, body: str | None) -> list[dict[str, Any]]:
        """Finished policies of a body (learned here or shipped), with the latest job that showed each
        and the real-env score of that job, else the policy's recorded one (`evaluated`: job | record),
        and the settings that differ from the defaults (`changed`)."""
        b = self.bodies.body(body)
        agent = self.bodies.agent(b.name)
        jobs: dict[str, dict[str, Any]] = {}
        for job in reversed(self.store.list(state="succeeded", body=b.name, limit=500)):
            if job["slug"]:
                jobs[job["slug"]] = job
        out = []
        for policy in agent.policies.list():
            meta = policy.meta
            job = jobs.get(policy.slug)
            ev = (job.get("result") or {}).get("evaluation") if job else None
            evaluated = "job" if ev else None
            if ev is None and (ev := read_record(policy.path)) is not None:
                evaluated = "record"
            ev = ev or {}
            out.append({"slug": policy.slug, "prompt": meta.prompt, "settings": meta.settings,
                        "changed": self.changed_settings(meta.settings), "updates": meta.updates_done,
                        "train_seconds": meta.train_seconds, "job": job["id"] if job else None,
                        "evaluated": evaluated, "task": ev.get("task"), "mean_return": ev.get("mean_return"),
                        "normalised": ev.get("normalised")})
        return out

    def replay(self, body: str | None, slug: str) -> Replay:
        """What to show of a learned policy: the latest job that showed it, else an imagined rollout
        (rendered once, then cached); and its recorded real-env episode when no job evaluated it."""
        body = self.bodies.body(body).name  # the default body's name, when the request names none
        match = next((p for p in self.policies(body) if p["slug"] == slug), None)
        if match is None:
            raise AppError(404, f"no policy {slug!r} for {body}")
        agent = self.bodies.agent(body)
        replays = self.cfg.runs / "cache" / "replays"
        shown = Replay(match["prompt"], slug, match["updates"])
        if match["job"]:
            shown = dataclasses.replace(shown, job=self.job(match["job"]))
        else:
            path = replays / f"{body}-{slug}.mp4"
            if not path.exists():
                with self.bodies.gate():
                    write_video(path, agent.imagine(slug))
            shown = dataclasses.replace(shown, imagined=path)
        if match["evaluated"] == "record":
            folder = agent.policies.get(slug).path
            recorded = folder / RECORD_VIDEO
            if recorded.is_file():
                # the UI serves only the app's own folders: a copy there, renewed when the record is
                real = replays / f"{body}-{slug}-real.mp4"
                if not real.exists() or real.stat().st_mtime < recorded.stat().st_mtime:
                    copy_file(recorded, real)
                shown = dataclasses.replace(shown, real=real)
            shown = dataclasses.replace(shown, record=read_record(folder))
        return shown

    # -- instant (the bundle's generalist, no learning) -----------------------------------------
    def act(self, body: str | None, prompt: str | Path, task: str | None = None, episodes: int = 1,
            steps: int = 32) -> Instant:
        """Zero-shot: the bundle's generalist conditioned on the prompt, imagined for `steps` and run
        for `episodes` real episodes at once, under the inference gate as a target render is. The
        same request (same generalist) is served from the cache."""
        steps = check_steps(steps)
        if not 1 <= episodes <= self.cfg.max_act_episodes:
            raise AppError(422, f"episodes must be between 1 and {self.cfg.max_act_episodes}, got {episodes}")
        parsed = parse_prompt(prompt)
        b = self.bodies.body(body)
        agent = self.bodies.agent(b.name, wait=60)
        if task:
            self._check_task(b.name, task)
        with self.bodies.gate():
            t0 = time.perf_counter()
            try:
                policy = agent.act(parsed)
            except BundleError as exc:  # no (usable) generalist: the bundle lacks it, the request is fine
                raise AppError(409, str(exc)) from None
            except GenRLError as exc:
                raise AppError(400, str(exc)) from None
            t_policy = time.perf_counter()
            task = task or agent.guess_task(parsed)
            run_id = digest(b.name, b.version, policy.slug, policy.meta.updates_done, task, episodes, steps)
            if (done := self.instants.get(run_id)) is not None:
                return dataclasses.replace(done, cached=True)
            write_video(self.instants.file(run_id, "imagined"), agent.imagine(policy, steps=steps))
            t_imagined = time.perf_counter()
            ev = agent.evaluate(policy, task, episodes, video=self.instants.file(run_id, "real"))
            t_real = time.perf_counter()
        seconds = {"policy": t_policy - t0, "imagined": t_imagined - t_policy, "real": t_real - t_imagined,
                   "total": t_real - t0}
        return self.instants.put(Instant(run_id, b.name, parsed.name, policy.slug,
                                         {k: v for k, v in ev.items() if k != "video"},
                                         {k: round(v, 3) for k, v in seconds.items()}))

    def instant(self, run_id: str) -> Instant:
        """An instant run by its id (from act)."""
        run = self.instants.get(run_id)
        if run is None:
            raise AppError(404, f"no instant run {run_id!r} (runs are cached for a while: act again)")
        return run

    def instant_video(self, run_id: str, name: str) -> Path:
        """The real-env or imagined mp4 of an instant run, by its id and a whitelisted name."""
        if name not in VIDEOS:
            raise AppError(404, f"unknown video {name!r}; valid: {', '.join(VIDEOS)}")
        path = self.instants.file(self.instant(run_id).id, name)
        if not path.is_file():
            raise AppError(404, f"instant run {run_id} has no {name} video")
        return path

    def health(self) -> dict[str, Any]:
        bodies = self.bodies.info()
        ready = all(b["state"] == "ready" for b in bodies)
        return {"status": "ok" if ready else ("loading" if any(b["state"] == "loading" for b in bodies)
                                              else "degraded"),
                "uptime_s": round(time.time() - self.started, 1), "bodies": bodies, "jobs": self.jobs.stats(),
                "inference": self.bodies.gate.stats(),
                "target_cache": {"hits": self.targets.hits, "misses": self.targets.misses},
                "auth": bool(self.cfg.token)}
