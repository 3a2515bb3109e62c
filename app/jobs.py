"""Policy-learning jobs: a bounded queue in SQLite and a pool of worker threads off the event loop.

What running one job does is app/job_recipe.py's; this file claims jobs and runs them in its
threads. torch releases the GIL, so threads are enough for concurrency here. Several processes
(`genrl worker`, the web process of Ray tasks) may share one store: each claims jobs under its own
owner name, refreshes their heartbeat, and polls the store for cancel and stop requests, so a
cancel reaches a job wherever it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from app.bodies import Bodies
from app.config import AppConfig
from app.errors import AppError
from app.job_recipe import LOST, Halt, run_job
from app.job_store import CANCEL, FINISHED, QUEUED, RUNNING, STOP, JobStore
from genrl_core.errors import ConfigError
from genrl_core.prompt import Prompt

log = logging.getLogger("genrl.app")


def beat_interval(claim_timeout: float) -> float:
    """Seconds between heartbeats (and cancel polls): far fewer than the claim timeout, so a live
    worker is never taken over."""
    return min(1.0, claim_timeout / 10)


def relay_stop_requests(store: JobStore, owner: str, halts: dict[str, Halt]) -> None:
    """One heartbeat of `owner`'s running jobs, passing the stop requests found for them to their
    halts (and halting, as LOST, those that another worker has taken over)."""
    held = store.heartbeat(owner)
    for job_id, event in list(halts.items()):
        if job_id not in held:
            event.halt(LOST)
        elif held[job_id] in (CANCEL, STOP):
            event.halt(held[job_id])


class JobManager:
    """Runs queued jobs in `max_workers` threads of this process (0: none here, only the queue:
    other processes or a cluster run them; see app/executors.py)."""

    def __init__(self, store: JobStore, bodies: Bodies, runs: Path, max_workers: int = 1, max_queue: int = 32,
                 resume: bool = True, max_attempts: int = 3, claim_timeout: float = AppConfig.claim_timeout):
        if max_workers < 0:
            raise ConfigError(f"the number of job workers must be 0 or more, got {max_workers}")
        self.store, self.bodies, self.jobs_dir = store, bodies, Path(runs) / "jobs"
        self.max_workers, self.max_queue = max_workers, max_queue
        self.resume, self.max_attempts = resume, max_attempts
        self.claim_timeout = claim_timeout
        self.owner = store.owners.new()
        self.beat = beat_interval(claim_timeout)
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
        self.store.owners.hold(self.owner, True)
        self._quiet.clear()
        self._beater = threading.Thread(target=self._heartbeat, name="genrl-heartbeat", daemon=True)
        self._beater.start()

    def _end_heartbeat(self) -> None:
        self._quiet.set()
        if self._beater is not None:
            self._beater.join(5)
        self.store.owners.hold(self.owner, False)

    def _heartbeat(self) -> None:
        """Keep this manager's claims alive, pass on cancel/stop requests made by other processes,
        stop work on jobs taken over by others, and release the jobs of dead workers."""
        while not self._quiet.wait(self.beat):
            try:
                relay_stop_requests(self.store, self.owner, self._events)
                if not self._stop.is_set():
                    requeued = self.store.requeue_dead(self.resume, self.max_attempts, self.claim_timeout)
                    if requeued:
                        log.warning("re-queued %d job(s) of a worker that died: %s", len(requeued),
                                    ", ".join(requeued))
                        with self._wake:
                            self._wake.notify_all()
            except Exception:  # a locked or briefly unreadable database: try again at the next beat
                log.exception("job heartbeat failed")

    # -- requests ------------------------------------------------------------------------------
    def submit(self, body: str, prompt: Prompt, settings: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """Queue a job for a prompt parsed at the edge (stored as parsed: no worker parses it again)."""
        queued = self.store.count(QUEUED)
        if queued >= self.max_queue:
            # a queued job waits minutes for a slot, so a client asks again in half a minute, not at once
            raise AppError(429, f"the job queue is full ({queued} waiting); retry when some have finished",
                           retry_after=30)
        job = self.store.create(body, prompt, settings, options)
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
            self._run(job)

    def _run(self, job: dict[str, Any]) -> None:
        """Run one job this manager's owner has claimed, to its end (or its stop)."""
        event = self._events[job["id"]] = Halt()
        if self._stop.is_set():
            event.halt(STOP)
        try:
            run_job(job, store=self.store, bodies=self.bodies, jobs_dir=self.jobs_dir, owner=self.owner, halt=event,
                    resume=self.resume, max_attempts=self.max_attempts)
        finally:
            self._events.pop(job["id"], None)
