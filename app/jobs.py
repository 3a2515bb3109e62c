"""Policy-learning jobs: a bounded queue in SQLite and a pool of worker threads off the event loop.

A job = target video -> learn (progress via the agent's callback, cancellable) -> imagined
rollout -> alignment plot -> real-env evaluation; every artefact is a file in the job's folder,
recorded in the store. torch releases the GIL, so threads are enough for concurrency here.
Several managers (other processes: `genrl worker`, Ray tasks) may share one store: each claims
jobs under its own owner name, refreshes their heartbeat, and polls the store for cancel and
stop requests, so a cancel reaches a job wherever it runs.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from app import plots
from app.agents import Bodies
from app.errors import AppError
from app.job_store import (
    CANCEL,
    CANCELLED,
    CLAIM_TIMEOUT,
    FAILED,
    FINISHED,
    MAX_HISTORY,
    QUEUED,
    RUNNING,
    STOP,
    SUCCEEDED,
    JobStore,
    hold_owner,
    new_owner,
)
from app.media import copy_file, write_video
from genrl_core.errors import ConfigError, GenRLError
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


LOST = "lost"


class JobManager:
    """Runs queued jobs in `max_workers` threads of this process (0: none here, only the queue:
    other processes or a cluster run them; see app/executors.py)."""

    def __init__(self, store: JobStore, bodies: Bodies, runs: Path, max_workers: int = 1, max_queue: int = 32,
                 resume: bool = True, max_attempts: int = 3, claim_timeout: float = CLAIM_TIMEOUT,
                 owner: str | None = None):
        if max_workers < 0:
            raise ConfigError(f"the number of job workers must be 0 or more, got {max_workers}")
        self.store, self.bodies, self.jobs_dir = store, bodies, Path(runs) / "jobs"
        self.max_workers, self.max_queue = max_workers, max_queue
        self.resume, self.max_attempts = resume, max_attempts
        self.claim_timeout = claim_timeout
        self.owner = owner or new_owner()
        # heartbeats (and cancel polls) far more often than the timeout, so a live worker is never taken over
        self.beat = min(1.0, claim_timeout / 10)
        self._events: dict[str, Halt] = {}
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._quiet = threading.Event()  # ends the heartbeat, once the workers have stopped
        self._threads: list[threading.Thread] = []
        self._beater: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, recover: bool = True) -> None:
        """Start the workers. `recover`: this is the server's start (jobs its last run left are
        re-queued or interrupted); a worker process beside a server passes False."""
        if recover:
            touched = self.store.recover(self.resume, self.max_attempts, self.claim_timeout)
            if touched:
                log.info("recovered %d job(s) left over from the last run", len(touched))
        self._stop.clear()
        self._start_heartbeat()
        for i in range(self.max_workers):
            thread = threading.Thread(target=self._worker, name=f"genrl-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask running jobs to checkpoint and stop; they are re-queued (or interrupted) for the next start."""
        self._stop.set()
        for event in list(self._events.values()):
            event.halt(STOP)
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if not self._threads:  # a worker still checkpointing keeps its jobs' heartbeat going
            self._end_heartbeat()

    def _start_heartbeat(self) -> None:
        hold_owner(self.owner, True)
        self._quiet.clear()
        self._beater = threading.Thread(target=self._heartbeat, name="genrl-heartbeat", daemon=True)
        self._beater.start()

    def _end_heartbeat(self) -> None:
        self._quiet.set()
        if self._beater is not None:
            self._beater.join(5)
        hold_owner(self.owner, False)

    def _heartbeat(self) -> None:
        """Keep this manager's claims alive, pass on cancel/stop requests made by other processes,
        stop work on jobs taken over by others, and release the jobs of dead workers."""
        while not self._quiet.wait(self.beat):
            try:
                self.poll()
                if not self._stop.is_set():
                    requeued = self.store.requeue_dead(self.resume, self.max_attempts, self.claim_timeout)
                    if requeued:
                        log.warning("re-queued %d job(s) of a worker that died: %s", len(requeued),
                                    ", ".join(requeued))
                        with self._wake:
                            self._wake.notify_all()
            except Exception:  # a locked or briefly unreadable database: try again at the next beat
                log.exception("job heartbeat failed")

    def poll(self) -> None:
        """One heartbeat of the jobs running here, with the stop requests found for them."""
        held = self.store.heartbeat(self.owner)
        for job_id, event in list(self._events.items()):
            if job_id not in held:
                event.halt(LOST)
            elif held[job_id] in (CANCEL, STOP):
                event.halt(held[job_id])

    # -- requests ------------------------------------------------------------------------------
    def submit(self, body: str, prompt: str, video: Path | None, settings: dict[str, Any],
               options: dict[str, Any]) -> dict[str, Any]:
        queued = self.store.count(QUEUED)
        if queued >= self.max_queue:
            # a queued job waits minutes for a slot, so a client asks again in half a minute, not at once
            raise AppError(429, f"the job queue is full ({queued} waiting); retry when some have finished",
                           retry_after=30)
        job = self.store.create(body, prompt, str(video) if video else None, settings, options)
        with self._wake:
            self._wake.notify()
        return self.store.get(job["id"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None:
            raise AppError(404, f"no job {job_id!r}")
        if job["state"] in FINISHED:
            raise AppError(409, f"job {job_id} has already {job['state']}; nothing to cancel")
        # queued: cancelled at once; running (in any process): asked to stop at its next update
        if not self.store.cancel_if_queued(job_id) and self.store.request_stop(job_id, CANCEL):
            event = self._events.get(job_id)
            if event is not None:
                event.halt(CANCEL)
        return self.store.get(job_id)

    def stats(self) -> dict[str, int]:
        return {"workers": self.max_workers, "running": self.store.count(RUNNING),
                "queued": self.store.count(QUEUED), "max_queue": self.max_queue}

    # -- workers -------------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim_next(self.owner)
            if job is None:
                with self._wake:
                    self._wake.wait(1.0)
                continue
            self.run_claimed(job)

    def run_one(self, job: dict[str, Any]) -> None:
        """Run one job claimed elsewhere under this manager's owner (a Ray task), with the
        heartbeat and the polling for cancel/stop requests going on meanwhile."""
        self._start_heartbeat()
        try:
            self.run_claimed(job)
        finally:
            self._end_heartbeat()

    def run_claimed(self, job: dict[str, Any]) -> None:
        """Run one job this manager's owner has claimed, to its end (or its stop)."""
        event = self._events[job["id"]] = Halt()
        if self._stop.is_set():
            event.halt(STOP)
        try:
            self._run(job, event)
        finally:
            self._events.pop(job["id"], None)

    def _run(self, job: dict[str, Any], cancel: Halt) -> None:
        job_id = job["id"]
        # a resumed run reports progress afresh, from its checkpoint on
        self.store.update(job_id, stage="starting", error=None, metrics={}, history=[],
                          log=f"started (attempt {job['attempts']})" if job["attempts"] > 1 else "started")
        try:
            self._pipeline(job, cancel)
        except Exception as exc:  # every failure ends up in the job's state and log, never in the server
            if cancel.reason == LOST:
                log.warning("job %s was taken over by another worker (this one missed its heartbeat)", job_id)
            elif cancel.reason == STOP:
                self.store.release(job_id, self.owner, self.resume, self.max_attempts,
                                   "stopped while running (checkpointed)", graceful=True)
            elif cancel.is_set():
                self.store.update(job_id, state=CANCELLED, stage="cancelled", finished=time.time(), log="cancelled",
                                  if_owner=self.owner)
            else:
                if isinstance(exc, GenRLError | AppError):  # the user's to fix; anything else is a bug
                    message = exc.detail if isinstance(exc, AppError) else str(exc)
                else:
                    message = f"internal error: {type(exc).__name__}: {exc}"
                    log.error("job %s failed:\n%s", job_id, traceback.format_exc())
                self.store.update(job_id, state=FAILED, stage="failed", finished=time.time(), error=message,
                                  log=f"failed: {message}", if_owner=self.owner)

    def _stage(self, job_id: str, cancel: Halt, stage: str, progress: float) -> None:
        if cancel.is_set():
            raise Cancelled(stage)
        self.store.update(job_id, stage=stage, progress=progress, log=stage)

    def _pipeline(self, job: dict[str, Any], cancel: Halt) -> None:
        job_id, body, settings, options = job["id"], job["body"], job["settings"], job["options"]
        agent = self.bodies.agent(body, wait=600)
        # parsed once: a video prompt is hashed here, and a text prompt is never taken for a path
        prompt = Prompt.video(job["video"]) if job["video"] else Prompt.text(job["prompt"])
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        steps = int(options.get("steps", 32))

        self._stage(job_id, cancel, "decoding the target", 0.02)
        frames = agent.decode(agent.target(prompt, steps=steps, use_aligner=settings.get("use_aligner", True)))
        self._save(job_id, "target", lambda p: write_video(p, frames))

        slug = agent.policy_slug(prompt, settings)
        self.store.update(job_id, slug=slug)
        if self._reuse_artefacts(job_id, body, slug, options, folder):
            return

        self._stage(job_id, cancel, "learning", 0.05)
        history: list[list[float]] = []

        def on_progress(m: dict[str, Any]) -> None:
            history.append([int(m["update"]), float(m["reward"])])
            if len(history) > MAX_HISTORY:
                del history[::2]  # keep the curve's shape with bounded storage
            done = int(m["update"]) / max(int(m["updates"]), 1)
            self.store.update(job_id, metrics=m, history=history, progress=0.05 + 0.75 * done,
                              stage=f"learning: update {m['update']}/{m['updates']}")

        policy = agent.learn(prompt, settings, callback=on_progress, cancel=cancel)
        if policy.reused:
            self.store.update(job_id, reused=1, log=f"policy {slug} already learned: reusing it")
        self.store.update(job_id, log=f"policy {slug}: {policy.meta.updates_done} updates, "
                                      f"{policy.meta.train_seconds:.0f} s of training")
        self._save(job_id, "policy", lambda p: copy_file(policy.policy_file, p))

        self._stage(job_id, cancel, "imagining a rollout", 0.82)
        imagined = agent.imagine(policy, steps=steps, seed=int(settings.get("seed", 0)))
        self._save(job_id, "imagined", lambda p: write_video(p, imagined))

        self._stage(job_id, cancel, "aligning prompt and rollout", 0.86)
        al = agent.alignment(prompt, policy)
        self.store.update(job_id, t_a=int(al["t_a"]))
        self._save(job_id, "alignment", lambda p: plots.save_png(
            plots.alignment_figure(al["offsets"], al["similarity"], al["t_a"]), p))
        result: dict[str, Any] = {"alignment": al}

        episodes = int(options.get("eval_episodes", 1))
        if episodes > 0:
            task = options.get("task") or agent.guess_task(prompt)
            self._stage(job_id, cancel, f"evaluating in the real env ({task}, {episodes} episode(s))", 0.9)
            ev = agent.evaluate(policy, task=task, episodes=episodes, video=folder / "real.mp4",
                                seed=int(settings.get("seed", 0)))
            video = Path(ev.get("video") or folder / "real.mp4")
            if video.exists():
                if video.resolve() != (folder / "real.mp4").resolve():
                    copy_file(video, folder / "real.mp4")
                self.store.add_artefact(job_id, "real", "real.mp4")
            result["evaluation"] = {k: v for k, v in ev.items() if k != "video"}
        self.store.update(job_id, state=SUCCEEDED, stage="done", progress=1.0, result=result, finished=time.time(),
                          log="done", if_owner=self.owner)

    def _save(self, job_id: str, name: str, write) -> None:
        filename = ARTEFACTS[name][0]
        write(self.jobs_dir / job_id / filename)
        self.store.add_artefact(job_id, name, filename)

    def _reuse_artefacts(self, job_id: str, body: str, slug: str, options: dict, folder: Path) -> bool:
        """Same policy and options as a finished job: copy its artefacts instead of learning again."""
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

    def artefact_path(self, job_id: str, name: str) -> tuple[Path, str]:
        """The file of one artefact of one job, by whitelisted name only (no user path reaches the disk)."""
        if name not in ARTEFACTS:
            raise AppError(404, f"unknown artefact {name!r}; valid: {', '.join(ARTEFACTS)}")
        job = self.store.get(job_id)
        if job is None:
            raise AppError(404, f"no job {job_id!r}")
        filename, media_type = ARTEFACTS[name]
        path = self.jobs_dir / job["id"] / filename
        if name not in job["artefacts"] or not path.is_file():
            have = ", ".join(job["artefacts"]) or "none yet"
            raise AppError(404, f"job {job_id} has no {name} artefact (state {job['state']}; has: {have})")
        return path, media_type


