"""What running one policy-learning job does, wherever it runs (a thread of app/jobs.py, a worker
process, a Ray task): target video -> learn (progress via the agent's callback, cancellable) ->
imagined rollout -> alignment plot -> real-env evaluation. Every artefact is a file in the job's
folder (`ARTEFACTS`, found again by `find_artefact`), recorded in the store, and every end (done,
failed, cancelled, stopped) is written there.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import plots
from app.bodies import Bodies
from app.errors import AppError
from app.job_store import CANCELLED, FAILED, MAX_HISTORY, STOP, SUCCEEDED, JobStore
from app.media import copy_file, write_video
from genrl_core.errors import GenRLError
from genrl_core.prompt import Prompt

log = logging.getLogger("genrl.app")

# name -> (file in the job folder, media type): the only files a download can ever reach
ARTEFACTS: dict[str, tuple[str, str]] = {
    "target": ("target.mp4", "video/mp4"),
    "imagined": ("imagined.mp4", "video/mp4"),
    "real": ("real.mp4", "video/mp4"),
    "alignment": ("alignment.png", "image/png"),
    "policy": ("policy.pt", "application/octet-stream"),
}
LOST = "lost"


class Cancelled(Exception):
    """The job's cancel event was set between stages."""


class Halt(threading.Event):
    """Set to stop a running job at its next update; `reason` says what becomes of it: CANCEL,
    STOP (checkpoint and re-queue) or LOST (another worker took it over: leave it alone)."""

    reason = ""

    def halt(self, reason: str) -> None:
        if not self.is_set():  # the first reason wins
            self.reason = reason
            self.set()


def artefact_file(jobs_dir: Path, job_id: str, name: str) -> Path:
    """Where a job's artefact `name` (a key of ARTEFACTS) is written."""
    return jobs_dir / job_id / ARTEFACTS[name][0]


def find_artefact(store: JobStore, jobs_dir: Path, job_id: str, name: str) -> tuple[Path, str]:
    """The file and media type of one artefact of one job, by whitelisted name only (no user path
    reaches the disk)."""
    if name not in ARTEFACTS:
        raise AppError(404, f"unknown artefact {name!r}; valid: {', '.join(ARTEFACTS)}")
    job = store.get(job_id)
    if job is None:
        raise AppError(404, f"no job {job_id!r}")
    path = artefact_file(jobs_dir, job["id"], name)
    if name not in job["artefacts"] or not path.is_file():
        have = ", ".join(job["artefacts"]) or "none yet"
        raise AppError(404, f"job {job_id} has no {name} artefact (state {job['state']}; has: {have})")
    return path, ARTEFACTS[name][1]


def run_job(job: dict[str, Any], *, store: JobStore, bodies: Bodies, jobs_dir: Path, owner: str, halt: Halt,
            resume: bool, max_attempts: int) -> None:
    """Run one job `owner` has claimed to its end, or to its stop when `halt` is set; its outcome is
    written to `store` (a stopped job is re-queued, or interrupted past `max_attempts`)."""
    job_id = job["id"]
    # a resumed run reports progress afresh, from its checkpoint on
    store.update(job_id, stage="starting", error=None, metrics={}, history=[],
                 log=f"started (attempt {job['attempts']})" if job["attempts"] > 1 else "started")
    try:
        _Run(store, bodies, jobs_dir, job, owner, halt).pipeline()
    except Exception as exc:  # every failure ends up in the job's state and log, never in the server
        if halt.reason == LOST:
            log.warning("job %s was taken over by another worker (this one missed its heartbeat)", job_id)
        elif halt.reason == STOP:
            store.release(job_id, owner, resume, max_attempts, "stopped while running (checkpointed)", graceful=True)
        elif halt.is_set():
            store.update(job_id, state=CANCELLED, stage="cancelled", finished=time.time(), log="cancelled",
                         if_owner=owner)
        else:
            if isinstance(exc, GenRLError | AppError):  # the user's to fix; anything else is a bug
                message = exc.detail if isinstance(exc, AppError) else str(exc)
            else:
                message = f"internal error: {type(exc).__name__}: {exc}"
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            store.update(job_id, state=FAILED, stage="failed", finished=time.time(), error=message,
                         log=f"failed: {message}", if_owner=owner)


class _Run:
    """The stages of one job, each recorded in the store as it starts."""

    def __init__(self, store: JobStore, bodies: Bodies, jobs_dir: Path, job: dict[str, Any], owner: str,
                 halt: Halt):
        self.store, self.bodies, self.jobs_dir, self.job = store, bodies, jobs_dir, job
        self.job_id, self.owner, self.halt = job["id"], owner, halt

    def stage(self, stage: str, progress: float) -> None:
        if self.halt.is_set():
            raise Cancelled(stage)
        self.store.update(self.job_id, stage=stage, progress=progress, log=stage)

    def save(self, name: str, write: Callable[[Path], Any]) -> None:
        write(artefact_file(self.jobs_dir, self.job_id, name))
        self.store.add_artefact(self.job_id, name, ARTEFACTS[name][0])

    def pipeline(self) -> None:
        job, job_id = self.job, self.job_id
        body, settings, options = job["body"], job["settings"], job["options"]
        agent = self.bodies.agent(body, wait=600)
        prompt = Prompt.from_record(job["parsed"])  # as the request's edge parsed it: no parse, no hash here
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        steps = int(options.get("steps", 32))

        self.stage("decoding the target", 0.02)
        plan = agent.plan(prompt, settings)  # the config, slug and target, for the reuse check and learning
        slug = plan.slug
        frames = agent.decode(agent.target(prompt, steps=steps, use_aligner=plan.cfg.use_aligner,
                                           samples=plan.cfg.target_samples))
        self.save("target", lambda p: write_video(p, frames))

        self.store.update(job_id, slug=slug)
        if self.reuse_artefacts(body, slug, options, folder):
            return

        self.stage("learning", 0.05)
        history: list[list[float]] = []

        def on_progress(m: dict[str, Any]) -> None:
            history.append([int(m["update"]), float(m["reward"])])
            if len(history) > MAX_HISTORY:
                del history[::2]  # keep the curve's shape with bounded storage
            done = int(m["update"]) / max(int(m["updates"]), 1)
            self.store.update(job_id, metrics=m, history=history, progress=0.05 + 0.75 * done,
                              stage=f"learning: update {m['update']}/{m['updates']}")

        policy = agent.learn(plan, callback=on_progress, cancel=self.halt)
        if policy.reused:
            self.store.update(job_id, reused=1, log=f"policy {slug} already learned: reusing it")
        self.store.update(job_id, log=f"policy {slug}: {policy.meta.updates_done} updates, "
                                      f"{policy.meta.train_seconds:.0f} s of training")
        self.save("policy", lambda p: copy_file(policy.policy_file, p))

        self.stage("imagining a rollout", 0.82)
        imagined = agent.imagine(policy, steps=steps, seed=plan.cfg.seed)
        self.save("imagined", lambda p: write_video(p, imagined))

        self.stage("aligning prompt and rollout", 0.86)
        al = agent.alignment(prompt, policy)
        self.store.update(job_id, t_a=int(al["t_a"]))
        self.save("alignment", lambda p: plots.save_png(
            plots.alignment_figure(al["offsets"], al["similarity"], al["t_a"]), p))
        result: dict[str, Any] = {"alignment": al}

        episodes = int(options.get("eval_episodes", 1))
        if episodes > 0:
            task = options.get("task") or agent.guess_task(prompt)
            self.stage(f"evaluating in the real env ({task}, {episodes} episode(s))", 0.9)
            ev = agent.evaluate(policy, task=task, episodes=episodes, video=folder / "real.mp4",
                                seed=plan.cfg.seed)
            video = Path(ev.get("video") or folder / "real.mp4")
            if video.exists():
                if video.resolve() != (folder / "real.mp4").resolve():
                    copy_file(video, folder / "real.mp4")
                self.store.add_artefact(job_id, "real", "real.mp4")
            result["evaluation"] = {k: v for k, v in ev.items() if k != "video"}
        self.store.update(job_id, state=SUCCEEDED, stage="done", progress=1.0, result=result, finished=time.time(),
                          log="done", if_owner=self.owner)

    def reuse_artefacts(self, body: str, slug: str, options: dict[str, Any], folder: Path) -> bool:
        """Same policy and options as a finished job: copy its artefacts instead of learning again."""
        job_id = self.job_id
        prev = self.store.finished_with_slug(body, slug, options)
        if prev is None or prev["id"] == job_id:
            return False
        src = self.jobs_dir / prev["id"]
        names = [n for n in prev["artefacts"] if n != "target"]
        if not all((src / ARTEFACTS[n][0]).exists() for n in names):
            return False
        for name in names:
            copy_file(src / ARTEFACTS[name][0], folder / ARTEFACTS[name][0])
            self.store.add_artefact(job_id, name, ARTEFACTS[name][0])
        self.store.update(job_id, state=SUCCEEDED, stage="done", progress=1.0, reused=1, t_a=prev["t_a"],
                          metrics=prev["metrics"], history=prev["history"], result=prev["result"],
                          finished=time.time(), log=f"reused policy {slug} and the results of job {prev['id']}",
                          if_owner=self.owner)
        return True
