"""Job workers in processes of their own, sharing the web process's SQLite job store.

    genrl worker --device cuda:1       # a standalone worker: runs queued jobs of the same database
    genrl serve --workers 2            # the web process keeps the queue; 2 worker processes run jobs

Every worker claims jobs atomically under its own owner name and keeps a heartbeat on them
(app/job_store.py, app/liveness.py), so any number can share one database: a job runs once, a
worker that is killed has its job re-queued by the others, and a cancel made in the web process
reaches the worker through the store at its next heartbeat.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from app.bodies import Bodies
from app.config import AppConfig
from app.job_store import QUEUED, RUNNING, JobStore
from app.jobs import JobManager
from genrl_core.bundle import BundleError
from genrl_core.errors import ConfigError

log = logging.getLogger("genrl.app")
MAX_RESTARTS = 5  # times one worker slot is started again after it exited on its own


def make_bodies(cfg: AppConfig) -> Bodies:
    return Bodies(cfg.bundles, cfg.device, cfg.runs / "policies", cfg.inference_slots, cfg.inference_queue,
                  cfg.behaviour_preset)


def run_worker(cfg: AppConfig, parent: int | None = None) -> None:
    """Run jobs from `cfg.db` in `cfg.max_jobs` threads until SIGTERM/SIGINT (or until `parent`,
    the process that started this one, exits). A stop checkpoints running jobs and re-queues them."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    bodies = make_bodies(cfg)
    bodies.load_all()  # before claiming anything: a worker that cannot load its bundle takes no job
    broken = [b["error"] for b in bodies.info() if b["state"] != "ready"]
    if broken:
        raise BundleError("; ".join(broken))
    store = JobStore(cfg.db)
    manager = JobManager(store, bodies, cfg.runs, cfg.max_jobs, cfg.max_queue, cfg.resume, cfg.max_attempts,
                         cfg.claim_timeout)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    manager.start(recover=False)  # the server's start does the restart recovery; dead workers are released here
    print(f"[worker] pid {os.getpid()} on {cfg.device}: running jobs of {cfg.db} ({cfg.max_jobs} at a time)",
          flush=True)
    try:
        while not stop.wait(1.0):
            if parent is not None and os.getppid() != parent:
                log.warning("the server that started this worker has exited: stopping")
                break
    finally:
        manager.stop()
        store.close()
    print(f"[worker] pid {os.getpid()} stopped", flush=True)


def devices(device: str, count: int) -> list[str]:
    """One device per worker: GPUs round robin when there are several, else the one given."""
    if device in ("cuda", "auto"):
        import torch

        gpus = torch.cuda.device_count()
        if gpus > 1:
            return [f"cuda:{i % gpus}" for i in range(count)]
    return [device] * count


class ProcessWorkers(JobManager):
    """`genrl serve --workers N`: this (web) process keeps the queue, takes requests and cancels;
    N spawned worker processes run the jobs. One that exits unexpectedly is started again."""

    def __init__(self, cfg: AppConfig, store: JobStore, bodies: Bodies):
        if cfg.workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {cfg.workers}")
        super().__init__(store, bodies, cfg.runs, 0, cfg.max_queue, cfg.resume, cfg.max_attempts, cfg.claim_timeout)
        self.cfg, self.count = cfg, cfg.workers
        self._context = multiprocessing.get_context("spawn")  # no fork of a process holding threads and CUDA
        self._procs: list[Any] = []
        self._devices = devices(cfg.device, cfg.workers)
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def _spawn(self, i: int) -> Any:
        cfg = dataclasses.replace(self.cfg, device=self._devices[i], max_jobs=1, workers=0)
        proc = self._context.Process(target=run_worker, args=(cfg, os.getpid()), name=f"genrl-worker-{i}")
        proc.start()
        return proc

    def start(self, recover: bool = True) -> None:
        super().start(recover)
        self._stopping.clear()
        self._procs = [self._spawn(i) for i in range(self.count)]
        self._monitor = threading.Thread(target=self._watch, name="genrl-workers", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        restarts = [0] * self.count
        while not self._stopping.wait(2.0):
            for i, proc in enumerate(self._procs):
                if proc.is_alive() or self._stopping.is_set() or restarts[i] < 0:
                    continue
                if restarts[i] >= MAX_RESTARTS:  # e.g. a bundle it cannot load: say so once, not forever
                    log.error("worker %d exited %d times (last code %s): not starting it again", i, restarts[i],
                              proc.exitcode)
                    restarts[i] = -1
                    continue
                restarts[i] += 1
                log.error("worker %d (pid %s) exited with code %s: starting it again", i, proc.pid, proc.exitcode)
                self._procs[i] = self._spawn(i)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the workers (they checkpoint and re-queue their jobs), then stop the heartbeat."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %s did not stop in %.0f s: killing it", proc.pid, timeout)
                proc.kill()
                proc.join(5)
        super().stop(timeout)
        # a killed worker's job goes back to the queue now rather than after the heartbeat timeout
        self.store.requeue_dead(self.resume, self.max_attempts, self.claim_timeout)

    def stats(self) -> dict[str, int]:
        return {"workers": self.count, "running": self.store.count(RUNNING), "queued": self.store.count(QUEUED),
                "max_queue": self.max_queue}
