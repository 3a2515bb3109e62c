"""The GenRL agents the app serves, one per body (a bundle each), loaded in the background at start-up,
and a gate that bounds how many inference requests run and wait at once."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.errors import AppError
from genrl_core.errors import ConfigError

log = logging.getLogger("genrl.app")


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Gate:
    """At most `slots` callers inside, at most `max_waiting` waiting; the rest get 429 at once,
    so a burst of requests can never pile up unbounded threads behind the model."""

    def __init__(self, slots: int, max_waiting: int):
        self._sem = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self.slots, self.max_waiting = slots, max_waiting
        self.waiting = self.peak_waiting = self.rejected = self.served = 0

    @contextlib.contextmanager
    def __call__(self, timeout: float = 120.0) -> Iterator[None]:
        with self._lock:
            if self.waiting >= self.max_waiting:
                self.rejected += 1
                raise AppError(429, f"busy: {self.waiting} requests are waiting for the model; retry in a moment")
            self.waiting += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            acquired = self._sem.acquire(timeout=timeout)
        finally:
            with self._lock:
                self.waiting -= 1
        if not acquired:
            raise AppError(503, f"the model stayed busy for {timeout:.0f} s; retry later")
        try:
            yield
        finally:
            self.served += 1
            self._sem.release()

    def stats(self) -> dict[str, int]:
        return {"slots": self.slots, "max_waiting": self.max_waiting, "waiting": self.waiting,
                "peak_waiting": self.peak_waiting, "rejected": self.rejected, "served": self.served}


class Body:
    """One bundle: its agent once loaded, or the reason it could not be."""

    def __init__(self, name: str, bundle: Path):
        self.name, self.bundle = name, bundle
        self.agent: Any = None
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.loaded = threading.Event()  # set when loading finished, successfully or not
        self.version = ""  # changes when the bundle's config changes: keys the target cache

    def info(self) -> dict[str, Any]:
        state = "ready" if self.agent is not None else ("error" if self.error else "loading")
        out: dict[str, Any] = {"body": self.name, "bundle": str(self.bundle), "state": state}
        if self.error:
            out["error"] = self.error
        if self.load_seconds is not None:
            out["load_seconds"] = round(self.load_seconds, 2)
        if self.agent is not None:
            from genrl_core.generalist import generalist_problem

            out["tasks"] = list(self.agent.tasks())
            out["examples"] = example_prompts(self.name)
            # the policies the bundle ships (a server's own learned ones are in GET /policies)
            shipped = self.agent.policies.shipped
            out["stock_policies"] = sorted(p.meta.prompt for p in self.agent.policies.list()
                                           if p.path.resolve().is_relative_to(shipped))
            out["generalist"] = generalist_problem(self.bundle, self.agent.wm_digest) is None
        return out


# a body whose tasks are not known (a bundle for a body genrl_core has no tasks for) gets these
EXAMPLE_PROMPTS = ["stand up straight", "run fast", "walk forward", "lie down on your back",
                   "kneel on the ground", "balance on one foot", "kick one leg high", "do a backflip"]


def example_prompts(body: str) -> list[str]:
    """What the UI offers a body as examples: its tasks' stock prompts (envs.tasks.STOCK_PROMPTS)."""
    from genrl_core.envs import STOCK_PROMPTS, body_tasks

    prompts = list(dict.fromkeys(STOCK_PROMPTS[t.name] for t in body_tasks(body)))
    return prompts or EXAMPLE_PROMPTS


def body_name(bundle: Path) -> str:
    """The body a bundle is for (config.json's `body`), without loading any weights."""
    from genrl_core.bundle import BundleError, read_config

    try:
        cfg = read_config(bundle)
    except BundleError:
        cfg = {}
    return str(cfg.get("body") or bundle.name)


class Bodies:
    def __init__(self, bundles: list[Path], device: str, policies_root: Path, slots: int = 1, max_waiting: int = 16,
                 behaviour_preset: str = "small"):
        self.device, self.behaviour_preset = device, behaviour_preset
        self.policies_root = policies_root
        self.gate = Gate(slots, max_waiting)
        self._bodies: dict[str, Body] = {}
        self._loader: threading.Thread | None = None
        self._start_lock = threading.Lock()
        for bundle in bundles:
            name = body_name(Path(bundle))
            if name in self._bodies:
                raise ConfigError(f"two bundles for body {name!r}: {self._bodies[name].bundle} and {bundle}")
            self._bodies[name] = Body(name, Path(bundle))

    @property
    def names(self) -> list[str]:
        return list(self._bodies)

    @property
    def default(self) -> str:
        return self.names[0]

    def start_loading(self) -> None:
        """Load every bundle in a background thread, so the server answers (and says 'loading') at once."""
        with self._start_lock:
            if self._loader is None:
                self._loader = threading.Thread(target=self.load_all, name="genrl-load", daemon=True)
                self._loader.start()

    def load_all(self) -> None:
        for body in self._bodies.values():
            if not body.loaded.is_set():
                self._load(body)

    def _load(self, body: Body) -> None:
        from genrl_core.agent import GenRL

        t0 = time.perf_counter()
        try:
            device = resolve_device(self.device)
            policies = self.policies_root / body.name
            body.agent = GenRL.load(body.bundle, device=device, policies_dir=policies,
                                    behaviour_preset=self.behaviour_preset)
            config = body.bundle / "config.json"
            body.version = hashlib.sha256(config.read_bytes()).hexdigest()[:12] if config.exists() else ""
            body.load_seconds = time.perf_counter() - t0
            log.info("loaded %s bundle %s on %s in %.1f s", body.name, body.bundle, device, body.load_seconds)
            print(f"[serve] {body.name} bundle ready ({body.load_seconds:.1f} s)", flush=True)
        except Exception as exc:  # a broken bundle must not take the server down: it is reported instead
            body.error = f"cannot load {body.bundle}: {exc}"
            log.error("%s", body.error)
            print(f"[serve] {body.error}", flush=True)
        finally:
            body.loaded.set()

    def body(self, name: str | None) -> Body:
        name = name or self.default
        if name not in self._bodies:
            raise AppError(404, f"unknown body {name!r}; valid: {', '.join(self.names)}")
        return self._bodies[name]

    def agent(self, name: str | None, wait: float = 0.0) -> Any:
        """The loaded agent of a body; 404 for an unknown body, 503 while loading or when it failed."""
        body = self.body(name)
        self.start_loading()
        if not body.loaded.is_set() and wait > 0:
            body.loaded.wait(wait)
        if body.agent is not None:
            return body.agent
        if body.error:
            raise AppError(503, f"the {body.name} bundle is not usable: {body.error}")
        raise AppError(503, f"the {body.name} bundle is still loading; retry in a few seconds")

    def info(self) -> list[dict[str, Any]]:
        return [b.info() for b in self._bodies.values()]
