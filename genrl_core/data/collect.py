"""Data collection: random, random-pose ('reset'), MPC-expert and learned-policy episodes into an
EpisodeStore. A learned policy (`learned:POLICY_DIR`, with the bundle it was learned on) acts
from pixels through its world model and samples its actions, as Dreamer collects: its episodes
show the world model the states its own policies reach, where imagination was least right
(`benchmarks/imagination_gap.py`).

Each episode is one file named `<policy>-<index>`, seeded from (seed, body, policy, index),
so a collection can stop anywhere and a rerun skips finished files and produces the same
data. Files are written atomically by the store, never half-written.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genrl_core.data.recipes import POLICY_HELP
from genrl_core.data.store import EpisodeStore
from genrl_core.envs import PixelEnv, get_body, get_task
from genrl_core.errors import ConfigError
from genrl_core.fileio import atomic_write


@dataclasses.dataclass(frozen=True)
class Policy:
    kind: str  # random, reset, expert or learned
    task: str | None = None  # the expert's task
    path: str | None = None  # the learned policy's folder
    bundle: str | None = None  # the bundle a learned policy was learned on

    @classmethod
    def parse(cls, spec: str, body: str, bundle: str | Path | None = None) -> Policy:
        if spec in ("random", "reset"):
            return cls(spec)
        if spec.startswith("expert:"):
            task = spec.split(":", 1)[1]
            if get_task(task).body != body:
                raise ConfigError(f"expert task {task!r} is not a task of body {body!r}")
            return cls("expert", task)
        if spec.startswith("learned:"):
            return cls._learned(Path(spec.split(":", 1)[1]), body, bundle)
        raise ConfigError(f"unknown policy {spec!r}; valid: {POLICY_HELP}")

    @classmethod
    def _learned(cls, folder: Path, body: str, bundle: str | Path | None) -> Policy:
        from genrl_core.bundle import Bundle, read_config
        from genrl_core.policies import POLICY_FILE, read_meta

        meta = read_meta(folder)
        if meta is None or not meta.finished or not (folder / POLICY_FILE).exists():
            raise ConfigError(f"{folder} is not a finished policy folder (meta.json and {POLICY_FILE})")
        if bundle is None:
            raise ConfigError(f"learned:{folder} needs the bundle it was learned on (--bundle)")
        files = Bundle(bundle)
        if not files.world_model_file.exists() or files.world_model_digest() != meta.world_model:
            raise ConfigError(f"policy {meta.slug} was not learned on the world model of {bundle}")
        if read_config(bundle).get("body") != body:
            raise ConfigError(f"{bundle} is a bundle for {read_config(bundle).get('body')!r}, not {body!r}")
        return cls("learned", path=str(folder), bundle=str(bundle))

    @property
    def slug(self) -> str:
        if self.kind == "learned":
            return f"learned_{Path(self.path).name}"
        return f"expert_{self.task}" if self.task else self.kind

    @property
    def spec(self) -> str:
        if self.kind == "learned":
            return f"learned:{self.path}"
        return f"expert:{self.task}" if self.task else self.kind


class PixelActor:
    """A policy acting from pixels: filter each frame with its world model, then act (sampled
    actions when `explore`, as Dreamer collects; the mean otherwise)."""

    def __init__(self, wm, actor, explore: bool = True):
        self.wm, self.actor, self.explore = wm, actor, explore
        self.deter = wm.initial_deter(1)
        self.stoch = torch.zeros(1, wm.cfg.stoch, wm.cfg.classes)
        self.action = torch.zeros(1, wm.cfg.action_dim)

    @classmethod
    def from_policy(cls, policy: Policy, seed: int) -> PixelActor:
        from genrl_core.bundle import Bundle
        from genrl_core.policies import LearnedPolicy, load_actor, read_meta

        torch.manual_seed(seed)
        wm = Bundle(policy.bundle).load_world_model()
        folder = Path(policy.path)
        return cls(wm, load_actor(LearnedPolicy(read_meta(folder), folder), wm.cfg))

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        from genrl_core.models.actor_critic import feature

        frame = torch.from_numpy(np.ascontiguousarray(image[None]))
        self.deter, self.stoch = self.wm.obs_step(self.deter, self.stoch, self.action, frame)
        self.action = self.actor.act(feature(self.deter, self.stoch), explore=self.explore)
        return self.action[0].numpy()


def episode_seed(seed: int, body: str, policy: Policy, index: int) -> int:
    return zlib.crc32(f"{seed}/{body}/{policy.slug}/{index}".encode())


class _RandomActions:
    """Temporally correlated uniform-ish noise; the correlation varies per episode so that both
    jittery and smooth, sweeping motions appear in the data."""

    def __init__(self, dim: int, rng: np.random.Generator):
        self.dim, self.rng = dim, rng
        self.rho = rng.uniform(0.0, 0.95)
        self.prev = rng.uniform(-1, 1, dim)

    def __call__(self) -> np.ndarray:
        fresh = self.rng.uniform(-1, 1, self.dim)
        self.prev = self.rho * self.prev + np.sqrt(1 - self.rho**2) * fresh
        return np.clip(self.prev, -1, 1)


def run_episode(body: str, policy: Policy, seed: int, size: int = 64) -> dict:
    """Roll one full episode and return it in the store's format."""
    from genrl_core.data.experts import MPCConfig, MPCExpert, skill_noise

    init = "random_pose" if policy.kind == "reset" else "default"
    env = PixelEnv(policy.task or body, size=size, seed=seed, init=init)
    if policy.kind == "expert":
        cfg = MPCConfig.load(policy.task)
        cfg = dataclasses.replace(cfg, exec_noise=skill_noise(policy.task, seed))
        expert = MPCExpert(env, policy.task, cfg, seed=seed)
        try:
            return roll_episode(env, lambda image: expert.act(), policy.spec, seed)
        finally:
            expert.close()
    if policy.kind == "learned":
        return roll_episode(env, PixelActor.from_policy(policy, seed), policy.spec, seed)
    noise = _RandomActions(env.action_dim, np.random.default_rng(seed))
    return roll_episode(env, lambda image: noise(), policy.spec, seed)


def roll_episode(env: PixelEnv, act: Callable[[np.ndarray], np.ndarray], policy: str, seed: int) -> dict:
    """Reset `env` and roll it to the end, `act(last frame) -> action`; the episode in the store's
    format, `policy` its spec (what acted)."""
    steps = [env.reset()]
    actions = [np.zeros(env.action_dim, np.float32)]
    while not steps[-1].is_last:
        a = act(steps[-1].image)
        steps.append(env.step(a))
        actions.append(np.asarray(a, np.float32))
    n = len(steps)
    is_last = np.zeros(n, bool)
    is_last[-1] = True
    return {
        "image": np.stack([s.image for s in steps]),
        "action": np.stack(actions),
        "reward": np.array([s.reward for s in steps], np.float32),
        "is_first": np.arange(n) == 0,
        "is_last": is_last,
        "is_terminal": np.array([s.is_terminal for s in steps]),
        "state": np.stack([s.state for s in steps]).astype(np.float64),
        "task_rewards": np.stack([s.task_rewards for s in steps]).astype(np.float32),
        "task_names": np.array(env.task_names),
        "body": env.body_name,
        "task": env.task.name if env.task else "none",
        "policy": policy,
        "seed": int(seed),
    }


def _collect_one(args: tuple) -> tuple[str, float | None, float]:
    root, body, policy, index, seed, size = args
    t0 = time.time()
    ep = run_episode(body, policy, episode_seed(seed, body, policy, index), size)
    EpisodeStore(root).save(f"{policy.slug}-{index:05d}", ep)
    # only an expert's episode has a task; the others' per-task returns are in the file (task_rewards)
    ret = float(ep["reward"].sum()) if policy.task else None
    return f"{policy.slug}-{index:05d}", ret, time.time() - t0


def collect(body: str, policy: str, episodes: int, out: str | Path, seed: int = 0, workers: int = 1,
            size: int = 64, log=print, bundle: str | Path | None = None) -> list[tuple[str, float | None, float]]:
    """Collect episodes 0..episodes-1 of `policy`, skipping those already on disk; `bundle` is
    the one a `learned:` policy was learned on.

    Returns (name, return, seconds) for each episode written in this call; the return is the
    expert's task return (None for the task-less random, reset and learned episodes).
    """
    get_body(body)
    pol = Policy.parse(policy, body, bundle)
    if episodes < 0:
        raise ConfigError(f"episodes must be >= 0, got {episodes}")
    check_dataset_meta(out, body, seed, size)
    store = EpisodeStore(out)
    store.clean_temp()  # leftovers of an interrupted run; their episodes are redone below
    todo = [i for i in range(episodes) if not store.exists(f"{pol.slug}-{i:05d}")]
    log(f"[collect] {body} {pol.spec}: {episodes - len(todo)}/{episodes} on disk, {len(todo)} to go -> {out}")
    jobs = [(str(out), body, pol, i, seed, size) for i in todo]
    done = []
    t0 = time.time()
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.imap_unordered(_collect_one, jobs)
            for res in results:
                done.append(res)
                _log_progress(log, res, len(done), len(jobs), t0)
    else:
        for job in jobs:
            done.append(_collect_one(job))
            _log_progress(log, done[-1], len(done), len(jobs), t0)
    return done


def _log_progress(log, res: tuple[str, float | None, float], n: int, total: int, t0: float) -> None:
    name, ret, secs = res
    elapsed = time.time() - t0
    eta = elapsed / n * (total - n)
    score = "" if ret is None else f": return {ret:.1f}"
    log(f"[collect] {n}/{total} {name}{score} in {secs:.1f}s (eta {eta / 60:.1f} min)")


def check_dataset_meta(out: str | Path, body: str, seed: int, size: int, recipe: list | None = None) -> None:
    """A dataset folder holds one body, seed and frame size: resuming with others would silently
    mix data, so it is refused. The first collection writes `dataset.json`."""
    path = Path(out, "dataset.json")
    want = {"body": body, "seed": seed, "size": size}
    if path.exists():
        have = json.loads(path.read_text())
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            raise ConfigError(f"{out} was collected with " + ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items())
                             + "; this run asks for " + ", ".join(f"{k}={b!r}" for k, (_, b) in diff.items())
                             + ": use those values to resume, or another --out")
        if recipe is None or have.get("recipe") == recipe:
            return
        want = {**have, "recipe": recipe}
    elif recipe is not None:
        want["recipe"] = recipe
    text = json.dumps(want, indent=1).encode()
    atomic_write(path, lambda f: f.write(text))
