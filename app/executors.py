"""Where learning jobs run. `make_jobs` picks one of three, all over the same SQLite job store:

- local (default): threads of the web process (`--max-jobs` at once);
- local with `--workers N`: N worker processes on this box (app/workers.py);
- ray (`--executor ray`): each job is a Ray task asking for one GPU (one CPU where the cluster
  has none), running the same recipe (app/job_recipe.py). The web process claims each job under its name and keeps
  its heartbeat while the task runs. The task reports progress and its end state through a small
  Ray actor on the web process's node, which alone opens the SQLite file (SQLite's WAL must not
  span machines); it writes artefacts and policies to the runs folder, which every node must
  mount at the same path (a shared disk).
  Cancel and restart mean what they mean locally: a cancel is a request in the store that the
  task polls; a server stop asks tasks to checkpoint and re-queue their jobs; a task that dies
  leaves its job to be re-queued (up to max_attempts), like a dead worker.

Ray is imported only when the ray executor is chosen: the default needs nothing beyond the app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.bodies import Bodies
from app.config import AppConfig
from app.job_recipe import Halt, run_job
from app.job_store import QUEUED, RUNNING, STOP, JobStore
from app.jobs import JobManager, beat_interval, relay_stop_requests
from genrl_core.errors import ConfigError

log = logging.getLogger("genrl.app")
EXECUTORS = ("local", "ray")


def make_jobs(cfg: AppConfig, store: JobStore, bodies: Bodies) -> JobManager:
    """The job manager for `cfg.executor` and `cfg.workers`; a ConfigError names a bad setting."""
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {cfg.executor!r}; valid: {', '.join(EXECUTORS)}")
    if cfg.max_jobs < 1:
        raise ConfigError(f"max_jobs must be at least 1, got {cfg.max_jobs}")
    if cfg.workers < 0:
        raise ConfigError(f"workers must be 0 (jobs run in the server's threads) or more, got {cfg.workers}")
    if cfg.claim_timeout <= 0:
        raise ConfigError(f"claim_timeout must be positive, got {cfg.claim_timeout}")
    if cfg.executor == "ray":
        if cfg.workers:
            raise ConfigError("workers is for the local executor: with the ray executor the cluster runs the jobs "
                             "(max_jobs sets how many at once)")
        return RayJobs(cfg, store, bodies)
    if cfg.workers:
        from app.workers import ProcessWorkers

        return ProcessWorkers(cfg, store, bodies)
    return JobManager(store, bodies, cfg.runs, cfg.max_jobs, cfg.max_queue, cfg.resume, cfg.max_attempts,
                      cfg.claim_timeout)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray, which is not installed: pip install ray "
                           "(or leave --executor at local)") from None
    return ray


# -- in the Ray task ---------------------------------------------------------------------------
_BODIES: dict[tuple, Bodies] = {}  # per Ray worker process: a reused worker loads each bundle once


class RemoteStore:
    """The job store as seen from a Ray task: each method call runs in the store actor."""

    def __init__(self, actor: Any):
        self._actor = actor

    def __getattr__(self, name: str) -> Any:
        import ray

        method = getattr(self._actor, name)
        return lambda *args, **kwargs: ray.get(method.remote(*args, **kwargs))


@contextlib.contextmanager
def claim_kept(store: Any, owner: str, halts: dict[str, Halt], claim_timeout: float) -> Iterator[None]:
    """While the block runs the jobs of `halts`, claimed by the web process under `owner`, keep
    their heartbeat going and pass on the cancel and stop requests made for them."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(beat_interval(claim_timeout)):
            try:
                relay_stop_requests(store, owner, halts)
            except Exception:  # a briefly unreachable store: try again at the next beat
                log.exception("job heartbeat failed")

    thread = threading.Thread(target=beat, name="genrl-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)


def run_job_task(cfg: AppConfig, job: dict[str, Any], owner: str, store_actor: Any) -> str:
    """The body of a job's Ray task: run the job the web process claimed for us (under its owner
    name); returns the job's end state."""
    key = (tuple(cfg.bundles), cfg.device, str(cfg.runs), cfg.behaviour_preset)
    bodies = _BODIES.get(key)
    if bodies is None:
        from app.workers import make_bodies

        bodies = _BODIES[key] = make_bodies(cfg)
    store: Any = RemoteStore(store_actor)
    halt = Halt()
    with claim_kept(store, owner, {job["id"]: halt}, cfg.claim_timeout):
        run_job(job, store=store, bodies=bodies, jobs_dir=cfg.runs / "jobs", owner=owner, halt=halt,
                resume=cfg.resume, max_attempts=cfg.max_attempts)
    return store.get(job["id"])["state"]


# -- in the web process ------------------------------------------------------------------------
class RayJobs(JobManager):
    """Claims queued jobs and submits each as a Ray task, at most `max_jobs` in flight."""

    def __init__(self, cfg: AppConfig, store: JobStore, bodies: Bodies):
        self.ray = import_ray()  # fail at start-up, with the install command, not at the first job
        super().__init__(store, bodies, cfg.runs, 0, cfg.max_queue, cfg.resume, cfg.max_attempts, cfg.claim_timeout)
        # absolute paths: a Ray worker does not start in this process's folder
        self.cfg = dataclasses.replace(cfg, bundles=[Path(b).resolve() for b in cfg.bundles],
                                       db=Path(cfg.db).resolve(), runs=Path(cfg.runs).resolve())
        self.max_jobs = cfg.max_jobs
        self._inflight: dict[Any, str] = {}  # task ref -> job id
        self._dispatcher: threading.Thread | None = None
        self._task: Any = None
        self._store_actor: Any = None
        self._started_ray = False

    def start(self, recover: bool = True) -> None:
        ray = self.ray
        if not ray.is_initialized():  # else: joined already (a test's local instance, a Ray job's driver)
            ray.init(address=self.cfg.ray_address, include_dashboard=False)
            self._started_ray = True
        gpu = self.cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
        resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
        # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU, so "cuda" is that one
        self._task_cfg = dataclasses.replace(self.cfg, device="cuda" if gpu else "cpu", workers=0)
        self._task = ray.remote(max_retries=0)(run_job_task).options(**resources)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the store actor lives on this node, beside this process's own connection to the file
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self._store_actor = ray.remote(JobStore).options(num_cpus=0, scheduling_strategy=here).remote(self.cfg.db)
        log.info("ray executor: %s, each job asks for %s", ray.cluster_resources(), resources)
        super().start(recover)
        self._dispatcher = threading.Thread(target=self._dispatch, name="genrl-ray", daemon=True)
        self._dispatcher.start()

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                while len(self._inflight) < self.max_jobs and not self._stop.is_set():
                    job = self.store.claim_next(self.owner)
                    if job is None:
                        break
                    # logged first: the task's own first update must come after it
                    self.store.update(job["id"], stage="submitted to Ray", log="submitted to the Ray cluster")
                    ref = self._task.remote(self._task_cfg, job, self.owner, self._store_actor)
                    self._inflight[ref] = job["id"]
                if self._inflight:
                    done, _ = self.ray.wait(list(self._inflight), num_returns=1, timeout=self.beat)
                    for ref in done:
                        self._finished(ref)
                else:
                    with self._wake:
                        self._wake.wait(1.0)
            except Exception:  # a database or cluster hiccup must not end dispatching
                log.exception("ray dispatcher")
                time.sleep(1.0)

    def _finished(self, ref: Any) -> None:
        job_id = self._inflight.pop(ref)
        try:
            self.ray.get(ref)
            why = "its Ray task ended without finishing it"
        except Exception as exc:  # the task's process died, or the task was cancelled
            why = f"its Ray task failed: {type(exc).__name__}"
            log.error("job %s: Ray task failed: %s", job_id, exc)
        # still running under our name: the task ended before the pipeline did (a crash)
        self.store.release(job_id, self.owner, self.resume, self.max_attempts, why)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the running tasks to checkpoint and re-queue their jobs, wait for them, then stop."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        for job_id in list(self._inflight.values()):
            self.store.request_stop(job_id, STOP)
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            done, _ = self.ray.wait(list(self._inflight), num_returns=1,
                                    timeout=max(0.1, deadline - time.monotonic()))
            for ref in done:
                self._finished(ref)
        for ref in list(self._inflight):
            self.ray.cancel(ref, force=True)
            self._finished(ref)
        super().stop(timeout)
        if self._store_actor is not None:
            self.ray.kill(self._store_actor)
            self._store_actor = None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def stats(self) -> dict[str, int]:
        return {"workers": self.max_jobs, "running": self.store.count(RUNNING), "queued": self.store.count(QUEUED),
                "max_queue": self.max_queue}
