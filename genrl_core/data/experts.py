"""Sampling-based MPC experts on the simulator state (MPPI over `mujoco.rollout`).

There are no pretrained experts for our bodies and custom tasks, so we plan: at every
agent step, perturb a nominal action sequence, roll every candidate out in a copy of the
true physics with `mujoco.rollout` (threaded C, no Python per physics step), score each
with the task's own vectorised reward (`envs.tasks`), and move the nominal towards the
better candidates (MPPI weights). The first action is executed, the plan shifts by one.
The settings per task live in `checkpoints/experts/<task>.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import mujoco
import numpy as np
from dm_control.utils.rewards import tolerance
from mujoco import rollout

from genrl_core.envs.bodies import features
from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.envs.tasks import get_task
from genrl_core.errors import ConfigError
from genrl_core.fileio import atomic_write

EXPERTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "experts"


@dataclasses.dataclass
class MPCConfig:
    """Planner settings; the defaults are the walker ones."""

    horizon: int = 16  # agent steps planned ahead
    samples: int = 48  # candidate action sequences per iteration
    iterations: int = 1  # MPPI refinements per agent step
    noise: float = 0.4  # std of the Gaussian perturbation of the nominal plan
    knots: int = 0  # perturb at this many knots, linearly interpolated over the horizon (0 = every step)
    temperature: float = 0.1  # MPPI softmax temperature, in units of the candidates' return std
    discount: float = 0.99  # per env step, inside the plan
    planner_substep_scale: int = 2  # plan with an N-times coarser physics timestep (speed)
    threads: int = 2
    exec_noise: float = 0.0  # Gaussian noise on executed actions, for a spread of skill levels
    objective: str = ""  # planning objective from PLANNING_OBJECTIVES; empty = the task's true reward
    recover_task: str = ""  # hand over to this task's expert while fallen (torso below recover_height)
    recover_height: float = 0.0

    @classmethod
    def load(cls, task: str) -> MPCConfig:
        raw = expert_settings(task).get("mpc", {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - fields
        if unknown:
            raise ConfigError(f"expert {task}: unknown MPC settings {sorted(unknown)}; valid: {sorted(fields)}")
        return cls(**raw)


def _run_shaped(body: str):
    """The walker-style run reward with its speed margin widened to the full 0-8 m/s: the true one is
    flat below 4 m/s (linear margin 4 around 8 m/s), so a short-horizon planner standing still sees
    no gradient towards speed."""
    stand = get_task(f"{body}_stand").reward

    def objective(f):
        move = tolerance(f["speed"], bounds=(8.0, float("inf")), margin=8.0, sigmoid="linear", value_at_margin=0.0)
        return stand(f) * (5 * move + 1) / 6

    return objective


PLANNING_OBJECTIVES = {f"{body}_run_shaped": _run_shaped(body) for body in ("walker", "stickman")}


def expert_settings(task: str) -> dict:
    path = EXPERTS_DIR / f"{task}.json"
    if not path.exists():
        known = sorted(p.stem for p in EXPERTS_DIR.glob("*.json"))
        raise ConfigError(f"no expert settings for task {task!r} at {path}; experts exist for: {', '.join(known)}")
    return json.loads(path.read_text())


def skill_noise(task: str, seed: int) -> float:
    """Executed-action noise of one expert episode: cycling through the task's `skill_noise`
    list gives a spread of skill levels (the original data mixed agents at several stages)."""
    levels = expert_settings(task).get("skill_noise", [0.0])
    return float(levels[seed % len(levels)])


class MPCExpert:
    """Acts in a `PixelEnv` by planning on its physics state for `task`."""

    def __init__(self, env: PixelEnv, task: str, cfg: MPCConfig | None = None, seed: int = 0):
        self.env, self.cfg = env, cfg or MPCConfig.load(task)
        if self.cfg.objective and self.cfg.objective not in PLANNING_OBJECTIVES:
            raise ConfigError(f"unknown objective {self.cfg.objective!r}; valid: {', '.join(PLANNING_OBJECTIVES)}")
        self.reward_fn = PLANNING_OBJECTIVES[self.cfg.objective] if self.cfg.objective else get_task(task).reward
        # Getting up from the floor needs other plans (longer, calmer) than running: while fallen,
        # the recovery task's own expert acts.
        self.recovery = None
        if self.cfg.recover_task:
            rec_cfg = dataclasses.replace(MPCConfig.load(self.cfg.recover_task), recover_task="", exec_noise=0.0)
            self.recovery = MPCExpert(env, self.cfg.recover_task, rec_cfg, seed=seed + 1)
        if get_task(task).body != env.body_name:
            raise ConfigError(f"task {task} is not a task of body {env.body_name}")
        src = env.physics.model.ptr
        self.model = copy.copy(src)
        scale = self.cfg.planner_substep_scale
        self.model.opt.timestep = src.opt.timestep * scale
        if env.n_sub_steps % scale:
            raise ConfigError(f"planner_substep_scale {scale} must divide the {env.n_sub_steps} physics steps "
                             f"per env step")
        self.substeps = env.n_sub_steps // scale  # planner physics steps per env step
        self.datas = [mujoco.MjData(self.model) for _ in range(self.cfg.threads)]
        self.runner = rollout.Rollout(nthread=self.cfg.threads)
        self.rng = np.random.default_rng(seed)
        self.nu, self.nq, self.nv = src.nu, src.nq, src.nv
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        # (H, K) linear interpolation from knot perturbations to per-step ones: smooth, low-dimensional noise
        knots = self.cfg.knots or self.cfg.horizon
        eye = np.eye(knots)
        grid = np.linspace(0, knots - 1, self.cfg.horizon)
        self.interp = np.stack([np.interp(grid, np.arange(knots), eye[k]) for k in range(knots)], axis=1)
        self.reset()

    def reset(self) -> None:
        self.plan = np.zeros((self.cfg.horizon, self.nu))

    def close(self) -> None:
        self.runner.close()
        if self.recovery is not None:
            self.recovery.close()

    def _returns(self, plans: np.ndarray, state0: np.ndarray) -> np.ndarray:
        """Discounted true-reward return of each candidate plan (N, H, nu)."""
        reps = self.env.action_repeat * self.substeps
        controls = np.repeat(plans, reps, axis=1)
        init = np.broadcast_to(state0, (len(plans), state0.size))
        states, sensordata = self.runner.rollout(self.model, self.datas, init, controls)
        idx = np.arange(self.substeps - 1, controls.shape[1], self.substeps)  # end of every env step
        qvel = states[:, idx, 1 + self.nq: 1 + self.nq + self.nv]
        rewards = self.reward_fn(features(self.env.layout, sensordata[:, idx], qvel))
        rewards = np.where(np.isfinite(rewards), rewards, 0.0)
        diverged = ~np.all(np.isfinite(states[:, -1]), axis=-1)
        ret = rewards @ (self.cfg.discount ** np.arange(rewards.shape[1]))
        return np.where(diverged, -np.inf, ret)

    def act(self) -> np.ndarray:
        cfg, env = self.cfg, self.env
        if self.recovery is not None and env.features()["torso_height"] < cfg.recover_height:
            return self._noisy(self.recovery.act())
        state0 = np.empty(mujoco.mj_stateSize(self.model, self.spec))
        mujoco.mj_getState(env.physics.model.ptr, env.physics.data.ptr, state0, self.spec)
        for _ in range(cfg.iterations):
            knot_noise = self.rng.normal(0.0, cfg.noise, (cfg.samples, self.interp.shape[1], self.nu))
            noise = np.einsum("hk,nku->nhu", self.interp, knot_noise)
            noise[0] = 0.0  # keep the current nominal among the candidates
            plans = np.clip(self.plan[None] + noise, -1.0, 1.0)
            ret = self._returns(plans, state0)
            finite = np.isfinite(ret)
            if not finite.any():
                break
            spread = ret[finite].std() + 1e-6
            logits = np.where(finite, (ret - ret[finite].max()) / (cfg.temperature * spread), -np.inf)
            weights = np.exp(logits)
            self.plan = np.einsum("n,nhu->hu", weights / weights.sum(), plans)
        action = self.plan[0].copy()
        self.plan = np.concatenate([self.plan[1:], self.plan[-1:]], axis=0)  # warm start next step
        return self._noisy(action)

    def _noisy(self, action: np.ndarray) -> np.ndarray:
        if self.cfg.exec_noise > 0:
            action = action + self.rng.normal(0.0, self.cfg.exec_noise, self.nu)
        return np.clip(action, -1.0, 1.0)


def expert_episode_return(task: str, seed: int) -> tuple[float, float]:
    """True return of one noise-free expert episode (1000 env steps) and its wall time."""
    t0 = time.time()
    env = PixelEnv(task, seed=seed, size=16)
    expert = MPCExpert(env, task, seed=seed)
    res, total = env.reset(), 0.0
    try:
        while not res.is_last:
            res = env.step(expert.act())
            total += res.reward
    finally:
        expert.close()
    return total, time.time() - t0


def _episode_job(args: tuple[str, int]) -> tuple[str, int, float, float]:
    task, seed = args
    return (task, seed, *expert_episode_return(task, seed))


def evaluate_experts(tasks: list[str], episodes: int, workers: int = 1, record: bool = False,
                     log=print) -> dict[str, list[float]]:
    """Measure each expert's true return over `episodes` episodes (seeds 1000+i, unseen in
    collection); with `record`, store the numbers in its settings file."""
    for task in tasks:
        MPCConfig.load(task)  # fail early on a task without settings
    jobs = [(task, 1000 + i) for task in tasks for i in range(episodes)]
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in tasks}
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        for task, seed, ret, secs in pool.imap_unordered(_episode_job, jobs):
            results[task].append((ret, secs))
            log(f"[experts] {task} seed {seed}: return {ret:.1f} ({secs:.0f}s)")
    for task, rows in results.items():
        returns = [r for r, _ in rows]
        log(f"[experts] {task}: mean {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")
        if record:
            path = EXPERTS_DIR / f"{task}.json"
            settings = json.loads(path.read_text())
            settings["measured"] = {
                "returns": [round(r, 1) for r in returns], "mean": round(float(np.mean(returns)), 1),
                "episodes": len(returns), "env_steps": 1000,
                "seconds_per_episode": round(float(np.mean([s for _, s in rows])), 1),
                "workers": workers, "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            }
            text = (json.dumps(settings, indent=1) + "\n").encode()
            atomic_write(path, lambda f, text=text: f.write(text))
    return {t: [r for r, _ in rows] for t, rows in results.items()}
