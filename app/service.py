"""What the REST API and the UI both do, validated once: render a target, start/cancel a job,
list jobs and policies. Every user error is an AppError with a status and a clear message."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.agents import Bodies
from app.config import AppConfig
from app.errors import AppError
from app.executors import make_jobs
from app.job_store import JobStore
from app.jobs import JobManager
from app.media import TargetCache, prune_tree, prune_uploads, write_video
from genrl_core import prompt as prompt_limits
from genrl_core.errors import GenRLError
from genrl_core.models.reward import REWARD_KINDS
from genrl_core.prompt import Prompt, PromptEmpty, PromptError

EXAMPLE_PROMPTS = ["stand up straight", "run fast", "walk forward", "lie down on your back",
                   "kneel on the ground", "balance on one foot", "kick one leg high", "do a backflip"]


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


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else None


@dataclass
class Services:
    cfg: AppConfig
    bodies: Bodies
    store: JobStore
    jobs: JobManager
    targets: TargetCache
    started: float
    ui_files: Path | None = None  # Gradio's temporary files (the UI's uploads and shown videos), when it has a UI

    @classmethod
    def build(cls, cfg: AppConfig) -> Services:
        cfg.runs.mkdir(parents=True, exist_ok=True)
        bodies = Bodies(cfg.bundles, cfg.device, cfg.runs / "policies", cfg.inference_slots, cfg.inference_queue,
                        cfg.behaviour_preset)
        store = JobStore(cfg.db)
        jobs = make_jobs(cfg, store, bodies)  # threads here, worker processes or a Ray cluster
        return cls(cfg, bodies, store, jobs, TargetCache(cfg.runs / "cache" / "targets", cfg.target_cache),
                   time.time())

    @property
    def uploads(self) -> Path:
        return self.cfg.runs / "uploads"

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

    # -- targets -------------------------------------------------------------------------------
    def render_target(self, body: str | None, prompt: str | Path, steps: int = 32, use_aligner: bool = True) -> Path:
        """An mp4 of the decoded target of a text prompt or a stored video prompt (cached)."""
        steps = check_steps(steps)
        try:
            parsed = Prompt.video(prompt) if isinstance(prompt, Path) else text_prompt(prompt)
        except PromptError as exc:
            raise AppError(400, str(exc)) from None
        b = self.bodies.body(body)
        agent = self.bodies.agent(b.name, wait=60)
        path = self.targets.path(b.name, b.version, parsed.identity, steps, use_aligner)
        if self.targets.get(path):
            return path
        with self.bodies.gate():
            try:
                frames = agent.decode(agent.target(parsed, steps=steps, use_aligner=use_aligner))
            except GenRLError as exc:
                raise AppError(400, str(exc)) from None
            write_video(path, frames)
        self.targets.prune()
        return path

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, *, prompt: str | None = None, video: Path | None = None, body: str | None = None,
               steps: int = 32, updates: int | None = None, reward: str | None = None, seed: int | None = None,
               use_aligner: bool | None = None, task: str | None = None,
               eval_episodes: int | None = None) -> dict[str, Any]:
        b = self.bodies.body(body)
        if video is None:
            prompt = text_prompt(prompt).name
        elif prompt is not None and prompt.strip():
            raise AppError(400, "give either a text prompt or a video prompt, not both")
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
            tasks = self.bodies.agent(b.name, wait=60).tasks()
            if task not in tasks:
                raise AppError(422, f"unknown task {task!r} for {b.name}; valid: {', '.join(tasks)}")
        settings = {k: v for k, v in (("updates", updates), ("reward", reward), ("seed", seed),
                                      ("use_aligner", use_aligner)) if v is not None}
        options = {"steps": steps, "task": task or None, "eval_episodes": episodes}
        shown = prompt if video is None else f"video:{video.name}"
        return self.jobs.submit(b.name, shown, video, settings, options)

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None:
            raise AppError(404, f"no job {job_id!r}; list jobs with GET /jobs")
        return job

    def view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The public form of a job: no server paths, artefacts as download URLs."""
        jid = job["id"]
        metrics = {k: v for k, v in job["metrics"].items() if k != "t_a_hist"}
        t_a = job["t_a"]
        if t_a is None and job["metrics"].get("t_a_hist"):
            hist = job["metrics"]["t_a_hist"]
            t_a = max(range(len(hist)), key=hist.__getitem__)
        return {
            "id": jid, "body": job["body"], "prompt": job["prompt"],
            "prompt_kind": "video" if job["video"] else "text",
            "state": job["state"], "stage": job["stage"], "progress": round(job["progress"], 3),
            "queue_position": job.get("queue_position"), "settings": job["settings"], "options": job["options"],
            "metrics": metrics, "t_a_hist": job["metrics"].get("t_a_hist"), "reward_history": job["history"],
            "t_a": t_a, "policy": job["slug"], "reused": job["reused"], "result": job["result"],
            "error": job["error"], "log": job["log"], "attempts": job["attempts"],
            "created": _iso(job["created"]), "started": _iso(job["started"]), "finished": _iso(job["finished"]),
            "urls": {"self": f"/jobs/{jid}", "cancel": f"/jobs/{jid}/cancel",
                     "artefacts": {name: f"/jobs/{jid}/artefacts/{name}" for name in job["artefacts"]}},
        }

    def policies(self, body: str | None) -> list[dict[str, Any]]:
        """Finished policies of a body (learned here or shipped), with the latest job that showed each."""
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
            ev = (job or {}).get("result", {}).get("evaluation", {}) if job else {}
            out.append({"slug": policy.slug, "prompt": meta.prompt, "settings": meta.settings,
                        "updates": meta.updates_done, "train_seconds": meta.train_seconds,
                        "job": job["id"] if job else None, "task": ev.get("task"),
                        "mean_return": ev.get("mean_return"), "normalised": ev.get("normalised")})
        return out

    def health(self) -> dict[str, Any]:
        bodies = self.bodies.info()
        ready = all(b["state"] == "ready" for b in bodies)
        return {"status": "ok" if ready else ("loading" if any(b["state"] == "loading" for b in bodies)
                                              else "degraded"),
                "uptime_s": round(time.time() - self.started, 1), "bodies": bodies, "jobs": self.jobs.stats(),
                "inference": self.bodies.gate.stats(),
                "target_cache": {"hits": self.targets.hits, "misses": self.targets.misses},
                "auth": bool(self.cfg.token)}
