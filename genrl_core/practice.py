"""Practice: an online loop in the manner of DreamerV3. The agent's own policies act in the simulator,
the world model trains on the growing replay, and every driver's actor-critic keeps learning in
imagination on the current world model.

    genrl practice --bundle checkpoints/walker --data data/walker --out runs/practice \\
        --driver oracle:walker_walk --driver "walk forward@walker_walk" --driver explore --frames 200000

Why: a policy learned in imagination finds the states where the world model is wrong and exploits
them. Only data from where the policies go fixes that (docs/LADDER.md: Dyna rounds were the one lever
that moved real scores). Practice does it continuously instead of in a few large rounds.

One cycle: each driver collects one episode (sampled actions, from pixels, in `--workers` processes,
or as Ray tasks on a cluster with `--env-workers ray`) into `OUT/data/practice-*.npz` -> the world
model takes `train_ratio` replayed steps per collected step. Each update's batch mixes the dataset
and the practice episodes (`online_fraction`). The oracle reward heads fit the true task rewards the
episodes record, on the same batch's posteriors. After each world-model update, every learning
driver takes `behaviour_ratio` actor-critic updates that start from those posteriors, as DreamerV3
does.

Drivers:
- `oracle:TASK`: learns from the reward head of TASK (a reward-driven agent, as made GenRL's data).
  The held-out tasks never get one: they stay the test.
- `TEXT@TASK` (or `TEXT`): a prompt. Its target is decoded once from the starting bundle into frames;
  each cycle the current world model encodes those frames again, so the target follows the
  world model as it changes.
- `explore`: from random poses, acting with one of the learning drivers' policies in turn (random
  actions where there is none). This covers falls and getting up.

Every `eval_every` collected frames, each driver with a task is scored in the real simulator (mean
actions, seeds 1000, 1001, ...); the curve goes to `practice.json` and TensorBoard (`genrl logs OUT`).
Rerunning the same command resumes (replay on disk, optimiser states, RNG); Ctrl-C or SIGTERM
saves. A larger `--frames` continues a finished run. At the end `OUT/bundle` is a full bundle: the
world model, start states and reward heads for it, the connector retrained on it, and every learning
driver's policy.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import re
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.config import BehaviourConfig, apply_settings, describe
from genrl_core.config import preset as get_preset
from genrl_core.dyna import Driver, prepare, read_run_state, write_run_state
from genrl_core.errors import ConfigError
from genrl_core.fileio import atomic_write
from genrl_core.models.reward import REWARD_KINDS, make_reward

STATE_FILE = "practice.json"
TRAIN_STATE = Path("train_state") / "practice.pt"
COLLECT_DIR = Path("train_state") / "collect"  # the weights the env workers act with
TARGETS_DIR = Path("train_state") / "targets"  # each prompt driver's target frames
PREFIX = "practice-"  # the episodes practice collects, beside the dataset's
EVAL_SEED = 1000  # the score ladder's real-episode seeds, so the numbers compare
# custom tasks that no reward-driven driver may practise (GENRL.md: the held-out test)
HELD_OUT = ("walker_flip", "walker_high_kick", "walker_one_foot", "walker_legs_up", "cheetah_flip",
            "stickman_flip", "stickman_high_kick", "stickman_one_foot", "stickman_legs_up", "stickman_hands_up")


@dataclasses.dataclass(frozen=True)
class PracticeDriver:
    """What collects and (unless `explore`) learns: `oracle:TASK`, `TEXT@TASK`, `TEXT` or `explore`."""

    spec: str
    kind: str  # oracle | prompt | explore
    prompt: str | None = None
    task: str | None = None

    @classmethod
    def parse(cls, spec: str) -> PracticeDriver:
        spec = spec.strip()
        if spec == "explore":
            return cls(spec, "explore")
        d = Driver.parse(spec)
        if d.oracle and d.task in HELD_OUT:
            raise ConfigError(f"--driver {spec!r}: {d.task} is a held-out task; no reward-driven driver may "
                              f"practise it (held out: {', '.join(HELD_OUT)})")
        return cls(d.name, "oracle" if d.oracle else "prompt", d.prompt, d.task)

    @property
    def learns(self) -> bool:
        return self.kind != "explore"

    @property
    def slug(self) -> str:
        """A file-name-safe, unique name for its episodes and weights."""
        readable = re.sub(r"[^a-z0-9]+", "-", self.spec.lower()).strip("-")[:32] or "driver"
        return f"{readable}-{zlib.crc32(self.spec.encode()):08x}"

    def behaviour(self, settings: dict[str, str], for_bundle: bool = False) -> BehaviourConfig:
        """The learner's settings; `for_bundle`: as a `genrl learn` request with them names its policy
        (with the preset's time limit), so that the app and the CLI reuse the practised policy."""
        cfg = apply_settings(get_preset("behaviour", "small")["behaviour"], settings, "behaviour")
        if cfg.reward not in REWARD_KINDS:
            raise ConfigError(f"--set reward={cfg.reward}: practice gives each oracle:TASK driver its task's reward, "
                              "and a prompt driver learns from its prompt; give a prompt reward or none")
        reward = f"oracle:{self.task}" if self.kind == "oracle" else cfg.reward
        if for_bundle:
            return dataclasses.replace(cfg, reward=reward)
        # practice never ends a learner: its updates are counted by the loop, not by the config
        return dataclasses.replace(cfg, reward=reward, max_minutes=0.0)


def oracle_prompt(task: str) -> str:
    """The name an oracle driver's policy goes by in a bundle."""
    return f"oracle {task}"


@dataclasses.dataclass(frozen=True)
class PracticePlan:
    drivers: tuple[PracticeDriver, ...]
    frames: int = 100_000  # collected frames (agent steps) to reach; a larger number continues a run
    train_ratio: float = 32.0  # replayed world-model steps (batch x seq_len) per collected frame
    behaviour_ratio: float = 1.0  # actor-critic updates per learning driver per world-model update
    online_fraction: float = 0.5  # share of each world-model batch drawn from the practice episodes
    warmup_updates: int = 200  # actor-critic updates per driver before the first collection
    eval_every: int = 10_000  # collected frames between real-simulator scores of every driver with a task
    eval_episodes: int = 3  # real episodes per score (mean actions, seeds 1000, 1001, ...)
    connector_updates: int = 1000  # connector updates on the new world model when the run ends (0: keep it)
    warm_start: bool = True  # each actor starts from the bundle's policy for its prompt (oracle:TASK: one on TASK)
    seed: int = 0  # seed of the episodes, the batches and the learners
    settings: tuple[tuple[str, str], ...] = ()  # behaviour settings of every learning driver (KEY, VALUE)

    def __post_init__(self) -> None:
        if not any(d.learns for d in self.drivers):
            raise ConfigError("give at least one learning --driver (oracle:TASK, TEXT@TASK or TEXT)")
        if len({d.spec for d in self.drivers}) != len(self.drivers):
            raise ConfigError("each --driver may be given once")
        for name in ("frames", "warmup_updates", "eval_episodes", "connector_updates"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.eval_every < 1:
            raise ConfigError(f"--eval-every must be >= 1, got {self.eval_every}")
        if self.train_ratio <= 0 or self.behaviour_ratio < 0:
            raise ConfigError("--train-ratio must be > 0 and --behaviour-ratio >= 0")
        if not 0 <= self.online_fraction <= 1:
            raise ConfigError(f"--online-fraction must be in [0, 1], got {self.online_fraction}")
        for d in self.drivers:
            d.behaviour(dict(self.settings))  # bad settings fail before any work

    def recorded(self) -> dict[str, Any]:
        """What must stay the same for a rerun to resume (--frames may grow, the eval cadence change)."""
        return {"drivers": [d.spec for d in self.drivers], "train_ratio": self.train_ratio,
                "behaviour_ratio": self.behaviour_ratio, "online_fraction": self.online_fraction,
                "seed": self.seed, "settings": dict(self.settings), "warm_start": self.warm_start}


PLAN_HELP = describe(PracticePlan)


# ------------------------------------------------------------------ env workers
def _worker_init() -> None:
    torch.set_num_threads(1)  # one core per env worker; the learner keeps the rest


ENV_WORKERS = ("processes", "ray")


def check_env_workers(kind: str) -> None:
    if kind not in ENV_WORKERS:
        raise ConfigError(f"--env-workers must be one of {', '.join(ENV_WORKERS)}, got {kind!r}")


def practice_episode(job: dict[str, Any], wm_state: dict | None, actor_state: dict | None) -> dict[str, np.ndarray]:
    """One practice episode: act from pixels with the given weights (random actions without an actor)."""
    from genrl_core.bundle import load_weights
    from genrl_core.data.collect import PixelActor, _RandomActions, roll_episode
    from genrl_core.envs import PixelEnv
    from genrl_core.models.actor_critic import Actor
    from genrl_core.models.rssm import RSSM, config_from_dict

    torch.manual_seed(job["seed"])
    env = PixelEnv(job["env"], seed=job["seed"], init=job["init"])
    if actor_state is None:
        noise = _RandomActions(env.action_dim, np.random.default_rng(job["seed"]))
        act = lambda image: noise()  # noqa: E731
    else:
        wm = RSSM(config_from_dict(job["wm_config"]))
        load_weights(wm, wm_state)
        actor = Actor(wm.cfg.deter + wm.cfg.stoch_dim, wm.cfg.action_dim, job["hidden"], job["layers"])
        load_weights(actor, actor_state)
        act = PixelActor(wm.eval(), actor.eval(), explore=True)
    return roll_episode(env, act, job["policy"], job["seed"])


def _saved(job: dict[str, Any], ep: dict[str, np.ndarray]) -> dict[str, Any]:
    """Save a collected episode into the run's data folder; what the loop needs of it."""
    from genrl_core.data.store import EpisodeStore

    EpisodeStore(job["data"]).save(job["name"], ep)
    return {"name": job["name"], "driver": job["driver"], "frames": len(ep["image"]),
            "return": float(ep["reward"].sum())}


def collect_episode(job: dict[str, Any]) -> dict[str, Any]:
    """A worker process's job: the weights from the files the job names, the episode saved there too."""
    from genrl_core.bundle import load_torch

    acts = job["actor"] is not None
    ep = practice_episode(job, load_torch(job["wm"]) if acts else None, load_torch(job["actor"]) if acts else None)
    return _saved(job, ep)


class EnvWorkers:
    """Where practice episodes are rolled: `workers` spawned processes (in this process for 1), or
    Ray tasks of one CPU each (`kind="ray"`, on the cluster at `ray_address`, or a local one when
    None). Ray tasks get the weights as objects and hand the episode back, so the nodes need not
    share the run's disk; this process saves every episode."""

    def __init__(self, workers: int, kind: str = "processes", ray_address: str | None = None):
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        check_env_workers(kind)
        self.pool, self.ray, self._started_ray = None, None, False
        if kind == "ray":
            try:
                import ray
            except ImportError:
                raise ConfigError("--env-workers ray needs Ray, which is not installed: pip install ray") from None
            if not ray.is_initialized():  # else: joined already (a test's local instance, a Ray job's driver)
                ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
                self._started_ray = True
            self.ray = ray
            self._task = ray.remote(num_cpus=1, max_retries=2)(practice_episode)
        elif workers > 1:
            self.pool = mp.get_context("spawn").Pool(workers, _worker_init)

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.ray is not None:
            return self._run_on_ray(jobs)
        if self.pool is None:
            return [collect_episode(job) for job in jobs]
        return self.pool.map(collect_episode, jobs)

    def _run_on_ray(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from genrl_core.bundle import load_torch

        weights: dict[str, Any] = {}  # one object per file this cycle (the world model is shared by all)

        def put(path: str | None) -> Any:
            if path is None:
                return None
            if path not in weights:
                weights[path] = self.ray.put(load_torch(path))
            return weights[path]

        acting = [(job, put(job["wm"]) if job["actor"] else None, put(job["actor"])) for job in jobs]
        episodes = self.ray.get([self._task.remote(job, wm, actor) for job, wm, actor in acting])
        return [_saved(job, ep) for job, ep in zip(jobs, episodes, strict=True)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        if self._started_ray:
            self.ray.shutdown()


def write_prompt_targets(bundle: Path, plan: PracticePlan, folder: Path, device: str = "cpu") -> None:
    """Each prompt driver's target as frames (`folder/SLUG.npy`), decoded from `bundle`, where not
    there yet. Frames, not latents: each cycle the current world model encodes them again. Written
    beforehand (scripts/gpu_practice.sh), they spare a GPU box the VLM."""
    todo = [d for d in plan.drivers if d.kind == "prompt" and not (folder / f"{d.slug}.npy").exists()]
    if not todo:
        return
    from genrl_core.agent import GenRL

    agent = GenRL.load(bundle, device=device)
    folder.mkdir(parents=True, exist_ok=True)
    for d in todo:
        cfg = d.behaviour(dict(plan.settings))
        frames = agent.decode(agent.target(d.prompt, cfg.horizon + 1, cfg.use_aligner, cfg.target_samples))
        atomic_write(folder / f"{d.slug}.npy", lambda f, frames=frames: np.save(f, frames))


# ------------------------------------------------------------------ the learner
class Practice:
    """The world model, reward heads and every driver's actor-critic, trained together, with their
    optimisers and RNG: what a checkpoint holds."""

    def __init__(self, out: Path, plan: PracticePlan, device: str, log):
        from genrl_core.bundle import Bundle, read_config
        from genrl_core.data.replay import EpisodeReplay, split_episodes
        from genrl_core.data.store import EpisodeStore, read_arrays
        from genrl_core.models.reward_heads import RewardHeads
        from genrl_core.train.behaviour import BehaviourLearner
        from genrl_core.train.loop import PAPER_DETER, allow_tf32, resolve_amp
        from genrl_core.train.world_model import resolve_configs

        self.out, self.plan, self.log = out, plan, log
        self.bundle, self.data = out / "bundle", out / "data"
        self.dev = torch.device(device)
        config = read_config(self.bundle)
        self.body, self.preset = config.get("body"), config.get("world_model_preset", "small")
        _, self.wm_cfg, _ = resolve_configs(self.bundle, self.preset, [], None)
        self.wm = Bundle(self.bundle).load_world_model(device).train().requires_grad_(True)
        self.amp = resolve_amp(self.wm_cfg.amp, self.dev, large=self.wm.cfg.deter >= PAPER_DETER)
        allow_tf32(self.dev)
        self.wm_opt = torch.optim.Adam(self.wm.parameters(), lr=self.wm_cfg.lr, eps=self.wm_cfg.eps)

        rewards = {"task_rewards": lambda p: read_arrays(p, ("task_rewards",))["task_rewards"]}
        paths = EpisodeStore(self.data).paths()
        dataset = split_episodes([p for p in paths if not p.name.startswith(PREFIX)])[0]
        seq_len = self.wm_cfg.seq_len
        self.dataset = EpisodeReplay(dataset, seq_len, self.dev, plan.seed, rewards, log)
        self.online: EpisodeReplay | None = None
        self.online_names: list[str] = []
        self._replay_args = (seq_len, self.dev, plan.seed + 1, rewards, log)
        self.tasks = [str(t) for t in read_arrays(dataset[0], ("task_names",))["task_names"]]

        feat = self.wm.cfg.deter + self.wm.cfg.stoch_dim
        self.heads = RewardHeads(feat, self.tasks).to(self.dev)
        heads_file = Bundle(self.bundle).reward_heads_file
        if heads_file.exists():  # start from the bundle's heads (they fit an older model)
            from genrl_core.bundle import load_torch

            saved = load_torch(heads_file)
            if saved["tasks"] == self.tasks:
                self.heads.load_state_dict(saved["state_dict"])
        self.heads_opt = torch.optim.Adam(self.heads.parameters(), lr=1e-3)

        torch.manual_seed(plan.seed)
        settings = dict(plan.settings)
        self.learners: dict[str, BehaviourLearner] = {}
        for d in plan.drivers:
            if d.learns:
                cfg = d.behaviour(settings)
                # an oracle driver's reward reads the heads trained here, as they learn
                reward = make_reward(cfg.reward, self.wm, self.heads, cfg.align_states)
                self.learners[d.slug] = BehaviourLearner(self.wm, cfg, self.wm.cfg.action_dim, reward)
        self.drivers = {d.slug: d for d in plan.drivers}
        folder = out / TARGETS_DIR
        write_prompt_targets(self.bundle, plan, folder, device)
        self.target_frames = {d.slug: torch.from_numpy(np.load(folder / f"{d.slug}.npy")).to(self.dev)
                              for d in plan.drivers if d.kind == "prompt"}
        self.starts_gen = torch.Generator(device=self.dev).manual_seed(plan.seed + 2)
        self.counters: dict[str, Any] = {"wm_updates": 0, "update_debt": 0.0, "behaviour_debt": 0.0,
                                         "seconds": 0.0, "next_eval": 0, "warmup": 0}
        self.warm: set[str] = set()  # learners whose actor came from a bundle policy (their critic warms up alone)

    @torch.no_grad()
    def target(self, slug: str) -> torch.Tensor:
        """A prompt driver's target latents under the current world model (its frames, encoded)."""
        from genrl_core.models.nets import mode_onehot

        if slug not in self.target_frames:
            return torch.zeros((), device=self.dev)  # an oracle learner reads no target
        return mode_onehot(self.wm.posterior_probs(self.target_frames[slug]))

    @property
    def frames_per_update(self) -> int:
        """Replayed steps of one world-model update: what `train_ratio` divides by."""
        return self.wm_cfg.batch * self.wm_cfg.seq_len

    # -------------------------------------------------------------- replay
    def add_episodes(self, names: list[str]) -> None:
        from genrl_core.data.replay import EpisodeReplay

        paths = [self.data / f"{n}.npz" for n in names if n not in self.online_names]
        if not paths:
            return
        if self.online is None:
            self.online = EpisodeReplay(paths, *self._replay_args)
        else:
            self.online.extend(paths)
        self.online_names += [p.stem for p in paths]

    def sample(self) -> dict[str, torch.Tensor]:
        batch = self.wm_cfg.batch
        online = round(batch * self.plan.online_fraction) if self.online is not None else 0
        parts = [r.sample(n) for r, n in ((self.dataset, batch - online), (self.online, online)) if n]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    # -------------------------------------------------------------- updates
    def wm_update(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One world-model and reward-head update; returns metrics and the batch's posterior states."""
        from genrl_core.models.actor_critic import feature
        from genrl_core.train.loop import autocast

        batch = self.sample()
        with autocast(self.dev, self.amp):
            loss, metrics, states = self.wm.loss_and_states(batch["image"], batch["action"], batch["is_first"])
        self.wm_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.wm.parameters(), self.wm_cfg.grad_clip)
        self.wm_opt.step()
        warm = self.wm_cfg.seq_len // 4  # past each sequence's warm-up steps, as the start states
        deter = states["deter"][:, warm:].detach().float().flatten(0, 1)
        stoch = states["stoch"][:, warm:].detach().float().flatten(0, 1)
        head_loss = F.mse_loss(self.heads(feature(deter, stoch)), batch["task_rewards"][:, warm:].flatten(0, 1).float())
        self.heads_opt.zero_grad(set_to_none=True)
        head_loss.backward()
        self.heads_opt.step()
        self.counters["wm_updates"] += 1
        return {**metrics, "reward_head_mse": head_loss.detach()}, deter, stoch

    def behaviour_updates(self, deter: torch.Tensor, stoch: torch.Tensor, count: int,
                          frozen: set[str] = frozenset()) -> dict[str, torch.Tensor]:
        """`count` updates of every learner from these start states (the actors in `frozen` stay)."""
        out = {}
        targets = {slug: self.target(slug) for slug in self.learners}
        for _ in range(count):
            for slug, learner in self.learners.items():
                idx = torch.randint(len(deter), (learner.cfg.batch,), device=self.dev, generator=self.starts_gen)
                stats = learner.update(deter[idx], stoch[idx], targets[slug], train_actor=slug not in frozen)
                out[f"{slug}/return"], out[f"{slug}/reward"] = stats["return"], stats["reward"]
        return out

    def warm_start(self) -> None:
        """Each learner's actor from the starting bundle's finished policy for its prompt; an oracle
        driver takes that of a prompt driver on its task. The practice then goes on from where
        per-prompt learning got, and its first episodes already go where that policy goes."""
        from genrl_core.bundle import Bundle, load_weights
        from genrl_core.policies import POLICY_FILE, read_meta

        policies = Bundle(self.bundle).policies_dir
        metas = [m for m in map(read_meta, sorted(policies.glob("*/"))) if m and m.finished]
        by_prompt = {m.prompt: m for m in metas}
        by_task = {d.task: by_prompt[d.prompt] for d in self.plan.drivers
                   if d.kind == "prompt" and d.task and d.prompt in by_prompt}
        for slug, learner in self.learners.items():
            d = self.drivers[slug]
            # an oracle driver's own policy first (a bundle that practice wrote has one)
            meta = by_prompt.get(d.prompt) if d.kind == "prompt" else \
                by_prompt.get(oracle_prompt(d.task), by_task.get(d.task))
            if meta is None:
                continue
            shape = {k: meta.settings.get(k) for k in ("hidden", "layers")}
            if shape != {"hidden": learner.cfg.hidden, "layers": learner.cfg.layers}:
                raise ConfigError(f"--driver {d.spec!r}: the bundle's policy {meta.slug} has {shape}, this "
                                  f"learner hidden={learner.cfg.hidden} layers={learner.cfg.layers}: set those "
                                  "(--set hidden=... layers=...) or pass --no-warm-start")
            load_weights(learner.actor, policies / meta.slug / POLICY_FILE)
            learner.updates = meta.updates_done
            self.warm.add(slug)
            self.log(f"[practice] {d.spec}: the actor starts from the bundle's policy {meta.slug} "
                     f"({meta.updates_done} updates)")

    def warmup(self) -> None:
        """Actor-critic updates on the starting world model before the first collection, so the
        first episodes already try. A warm-started learner trains only its critic meanwhile: a fresh
        critic would otherwise pull its actor away from what it already does."""
        while self.counters["warmup"] < self.plan.warmup_updates:
            with torch.no_grad():
                batch = self.sample()
                states = self.wm.observe(batch["image"], batch["action"], batch["is_first"])
            warm = self.wm_cfg.seq_len // 4
            self.behaviour_updates(states["deter"][:, warm:].flatten(0, 1), states["stoch"][:, warm:].flatten(0, 1), 1,
                                   frozen=self.warm)
            self.counters["warmup"] += 1

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"wm": self.wm.state_dict(), "wm_opt": self.wm_opt.state_dict(), "heads": self.heads.state_dict(),
                "heads_opt": self.heads_opt.state_dict(),
                "learners": {slug: le.state_dict() for slug, le in self.learners.items()},
                "dataset_rng": self.dataset.get_state(),
                "online_rng": None if self.online is None else self.online.get_state(),
                "online_names": list(self.online_names), "starts_rng": self.starts_gen.get_state(),
                "torch_rng": torch.get_rng_state(), "counters": dict(self.counters), "warm": sorted(self.warm)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wm.load_state_dict(state["wm"])
        self.wm_opt.load_state_dict(state["wm_opt"])
        self.heads.load_state_dict(state["heads"])
        self.heads_opt.load_state_dict(state["heads_opt"])
        for slug, le in self.learners.items():
            le.load_state_dict(state["learners"][slug])
        self.dataset.set_state(state["dataset_rng"])
        self.add_episodes(state["online_names"])
        if self.online is not None and state["online_rng"] is not None:
            self.online.set_state(state["online_rng"])
        self.starts_gen.set_state(state["starts_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.counters = {"warmup": 0, **state["counters"]}
        self.warm = set(state.get("warm", ()))

    def save(self) -> None:
        from genrl_core.bundle import save_torch

        save_torch(self.out / TRAIN_STATE, self.state_dict())

    # -------------------------------------------------------------- acting
    def collect_jobs(self, cycle: int) -> list[dict[str, Any]]:
        """One episode per driver, acting with the current weights (written for the workers)."""
        from genrl_core.bundle import WORLD_MODEL_FILE, save_torch
        from genrl_core.data.store import EpisodeStore

        folder = self.out / COLLECT_DIR
        save_torch(folder / WORLD_MODEL_FILE, self.wm.state_dict())
        for slug, learner in self.learners.items():
            save_torch(folder / f"{slug}.pt", learner.actor.state_dict())
        on_disk, learning = [p.name for p in EpisodeStore(self.data).paths()], list(self.learners)
        jobs = []
        for d in self.plan.drivers:
            index = len([name for name in on_disk if name.startswith(f"{PREFIX}{d.slug}-")])
            actor = d.slug if d.learns else (learning[cycle % len(learning)] if learning else None)
            cfg = self.learners[actor].cfg if actor else None
            jobs.append({"data": str(self.data), "driver": d.slug, "name": f"{PREFIX}{d.slug}-{index:05d}",
                         "env": d.task or self.body, "init": "random_pose" if d.kind == "explore" else "default",
                         "seed": zlib.crc32(f"{self.plan.seed}/{d.spec}/{index}".encode()),
                         "policy": f"practice:{d.spec}", "wm": str(folder / WORLD_MODEL_FILE),
                         "wm_config": dataclasses.asdict(self.wm.cfg),
                         "actor": None if actor is None else str(folder / f"{actor}.pt"),
                         "hidden": cfg.hidden if cfg else 0, "layers": cfg.layers if cfg else 0})
        return jobs

    def evaluate(self, episodes: int) -> dict[str, Any]:
        from genrl_core.evaluate import run_policy

        scores = {}
        for slug, learner in self.learners.items():
            d = self.drivers[slug]
            if d.task is None:
                continue
            ev = run_policy(self.wm, learner.actor, d.task, episodes, EVAL_SEED)
            scores[d.spec] = {"normalised": ev["normalised"], "mean_return": ev["mean_return"],
                              "returns": ev["returns"]}
        return scores


# ------------------------------------------------------------------ the run
def read_state(out: Path, plan: PracticePlan, bundle: Path, data: Path) -> dict[str, Any]:
    """The run's state; a rerun must ask for the same plan, from the same bundle and dataset."""
    want = {**plan.recorded(), "bundle": str(bundle.resolve()), "data": str(data.resolve())}
    return read_run_state(out / STATE_FILE, want, {"curve": [], "collected": [], "finished": []}, "practice")


def write_state(out: Path, state: dict[str, Any]) -> None:
    write_run_state(out / STATE_FILE, state)


def collected_frames(state: dict[str, Any]) -> int:
    return sum(row["frames"] for row in state["collected"])


def adopt_orphans(practice: Practice, state: dict[str, Any], log) -> None:
    """Episodes written after the last checkpoint (a crash while training on them) join the replay
    and owe their updates, instead of lying unused on disk."""
    from genrl_core.data.store import EpisodeStore, read_arrays

    known = {row["name"] for row in state["collected"]}
    slugs = {d.slug: d for d in practice.plan.drivers}
    orphans = [p for p in EpisodeStore(practice.data).paths() if p.name.startswith(PREFIX) and p.stem not in known]
    for path in orphans:
        slug = path.stem[len(PREFIX):].rsplit("-", 1)[0]
        if slug not in slugs:
            continue
        reward = read_arrays(path, ("reward",))["reward"]
        state["collected"].append({"name": path.stem, "driver": slug, "frames": len(reward),
                                   "return": float(reward.sum()), "cycle": None})
        practice.add_episodes([path.stem])
        practice.counters["update_debt"] += len(reward) * practice.plan.train_ratio / practice.frames_per_update
    if orphans:
        log(f"[practice] {len(orphans)} episodes collected after the last checkpoint join the replay")


def run_practice(bundle: str | Path, data: str | Path, out: str | Path, plan: PracticePlan, device: str = "cpu",
                 workers: int = 1, log=print, minutes: float = 0.0, env_workers: str = "processes",
                 ray_address: str | None = None) -> dict[str, Any]:
    """Run (or resume) practice until `plan.frames` collected frames, then write the bundle; returns
    the state (also in OUT/practice.json). `minutes` > 0 ends this run's practising after the cycle
    that passes it (then it scores and writes the bundle as at the end; a rerun goes on).
    `env_workers`: where episodes are rolled (`EnvWorkers`)."""
    if minutes < 0:
        raise ConfigError(f"--minutes must be >= 0, got {minutes}")
    check_env_workers(env_workers)  # before any work, as the other settings
    from genrl_core.bundle import load_torch
    from genrl_core.train.loop import ProgressLog, event_writer

    out, bundle, data = Path(out), Path(bundle), Path(data)
    state = read_state(out, plan, bundle, data)
    prepare(out, bundle, data)
    practice = Practice(out, plan, device, log)
    if (out / TRAIN_STATE).exists():
        practice.load_state_dict(load_torch(out / TRAIN_STATE))
        log(f"[practice] resumed at {collected_frames(state)} frames, {practice.counters['wm_updates']} "
            f"world-model updates")
    elif plan.warm_start:
        practice.warm_start()
    adopt_orphans(practice, state, log)
    write_state(out, state)
    per_update = practice.frames_per_update
    total = practice.counters["wm_updates"] + max(0, round((plan.frames - collected_frames(state))
                                                           * plan.train_ratio / per_update))
    plog = ProgressLog(out / "logs" / "practice.jsonl", max(total, 1), practice.counters["wm_updates"],
                       log_every=25, checkpoint_minutes=1e9, desc="practice", progress=False,
                       elapsed_before=practice.counters["seconds"])
    board = event_writer(out / "tensorboard" / "practice_scores")
    workers_pool = EnvWorkers(workers, env_workers, ray_address)
    started = time.time()

    def checkpoint() -> None:
        practice.counters["seconds"] = round(plog.elapsed, 1)
        practice.save()
        write_state(out, state)

    def score() -> None:
        frames = collected_frames(state)
        scores = practice.evaluate(plan.eval_episodes) if plan.eval_episodes else {}
        row = {"frames": frames, "wm_updates": practice.counters["wm_updates"],
               "minutes": round(plog.elapsed / 60, 1), "scores": scores}
        state["curve"].append(row)
        for spec, s in scores.items():
            log(f"[practice] {frames} frames: {spec} scores {s['normalised']} (return {s['mean_return']})")
            if board is not None and s["normalised"] is not None:
                board.add_scalar(f"score/{spec}", s["normalised"], frames)
        if board is not None:
            board.flush()
        practice.counters["next_eval"] = (frames // plan.eval_every + 1) * plan.eval_every

    try:
        with plog.saving_on_interrupt(checkpoint, log):
            if practice.counters["wm_updates"] == 0 and practice.counters.get("warmup", 0) < plan.warmup_updates:
                log(f"[practice] {plan.warmup_updates} actor-critic updates per learning driver before collecting"
                    + (" (critic only where the actor is warm-started)" if practice.warm else ""))
                practice.warmup()
            while True:
                out_of_time = minutes > 0 and time.time() - started >= 60 * minutes
                done = collected_frames(state) >= plan.frames or out_of_time
                if collected_frames(state) >= practice.counters["next_eval"] or (
                        done and state["curve"][-1]["frames"] != collected_frames(state)):
                    score()
                    checkpoint()
                if done:
                    if out_of_time and collected_frames(state) < plan.frames:
                        log(f"[practice] {minutes:g} minutes are up: the bundle now, rerun to go on to "
                            f"{plan.frames} frames")
                    break
                cycle = len(state["collected"]) // len(plan.drivers)
                t0 = time.time()
                results = workers_pool.run(practice.collect_jobs(cycle))
                collect_seconds = time.time() - t0
                for res in results:
                    res["cycle"] = cycle
                    state["collected"].append(res)
                practice.add_episodes([r["name"] for r in results])
                frames = sum(r["frames"] for r in results)
                practice.counters["update_debt"] += frames * plan.train_ratio / per_update
                t0, updates_before = time.time(), practice.counters["wm_updates"]
                while practice.counters["update_debt"] >= 1:
                    metrics, deter, stoch = practice.wm_update()
                    practice.counters["update_debt"] -= 1
                    practice.counters["behaviour_debt"] += plan.behaviour_ratio
                    count = int(practice.counters["behaviour_debt"])
                    practice.counters["behaviour_debt"] -= count
                    metrics.update(practice.behaviour_updates(deter, stoch, count))
                    plog.update(practice.counters["wm_updates"], metrics)
                train_seconds = time.time() - t0
                rate = (practice.counters["wm_updates"] - updates_before) / max(train_seconds, 1e-9)
                returns = ", ".join(f"{practice.drivers[r['driver']].spec} {r['return']:.0f}" for r in results)
                log(f"[practice] cycle {cycle}: {collected_frames(state)}/{plan.frames} frames "
                    f"({frames / max(collect_seconds, 1e-9):.0f} frames/s collecting), "
                    f"{practice.counters['wm_updates']} world-model updates "
                    f"({rate:.2f}/s with the actor-critics, {train_seconds:.0f} s); returns: {returns}")
                checkpoint()
    finally:
        workers_pool.close()
        if board is not None:
            board.close()
    log(f"[practice] {collected_frames(state)} frames collected, {time.time() - started:.0f} s this run")
    finish(practice, state, device, log)
    log(report(state))
    log(f"[practice] the bundle is {out / 'bundle'}: `genrl serve --bundle {out / 'bundle'}`")
    if (bundle / "generalist").is_dir():  # it fits the old world model only, so it was not copied
        log(f"[practice] its generalist (instant prompts) goes on from the old one's: `genrl train-generalist "
            f"--bundle {out / 'bundle'} --data {data} --warm-from {bundle / 'generalist'}`")
    return state


# ------------------------------------------------------------------ the bundle it ends with
FINISH_STAGES = ("world_model", "connector", "policies")


def finish(practice: Practice, state: dict[str, Any], device: str, log) -> None:
    """Write OUT/bundle for the final world model: weights, start states, reward heads, connector,
    and each learning driver's policy. Stages are recorded, so a rerun skips the finished ones; new
    frames redo them all."""
    from genrl_core.bundle import Bundle, read_config, save_torch, write_config
    from genrl_core.train.behaviour import build_start_states

    bundle, data, plan = practice.bundle, practice.data, practice.plan
    files = Bundle(bundle)
    frames = collected_frames(state)
    if state.get("finished_at") != frames:
        state["finished"], state["finished_at"] = [], frames

    def world_model() -> None:
        files.save_world_model(practice.wm)
        cfg = read_config(bundle)
        train = {**cfg.get("world_model_train", {})}
        base = state.setdefault("start_wm_step", int(train.get("step", 0)))
        train["step"] = base + practice.counters["wm_updates"]
        write_config(bundle, {**cfg, "world_model_train": train, "practice": {
            "frames": frames, "wm_updates": practice.counters["wm_updates"], "drivers": [d.spec for d in plan.drivers],
            "held_out": list(HELD_OUT), "train_ratio": plan.train_ratio, "minutes": practice.counters["seconds"] / 60}})
        build_start_states(practice.wm.eval(), data, bundle, log=log)
        files.save_reward_heads(practice.heads, steps=practice.counters["wm_updates"], heldout_mae={})

    def connector() -> None:
        if not plan.connector_updates:
            return
        from genrl_core.train.connector import train_connector
        from genrl_core.vlm import embed_dataset, load_vlm

        embed_dataset(data, load_vlm(bundle, device=device), log=log)
        step = int(read_config(bundle).get("connector", {}).get("train", {}).get("step", 0))
        train_connector(data, bundle, preset=practice.preset, device=device, progress=False, log=log,
                        overrides=[f"train.steps={step + plan.connector_updates}"], warm_start=True)

    def policies() -> None:  # without the VLM, so that a GPU box without one writes them too
        import shutil

        from genrl_core.policies import POLICY_FILE, TARGET_FILE, PolicyMeta, PolicyStore, write_meta
        from genrl_core.prompt import Prompt

        for old in files.policies_dir.glob("*/"):  # learned on an older world model: they no longer load
            shutil.rmtree(old)
        digest = files.world_model_digest()
        store = PolicyStore(files.policies_dir, files.policies_dir, digest)
        vlm = read_config(bundle).get("connector", {}).get("vlm", "")  # the VLM its targets come through
        for slug, learner in practice.learners.items():
            d = practice.drivers[slug]
            prompt = Prompt.text(d.prompt if d.kind == "prompt" else oracle_prompt(d.task))
            settings = d.behaviour(dict(plan.settings), for_bundle=True)
            name = store.slug(prompt, settings)
            folder = store.run_dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            save_torch(folder / POLICY_FILE, learner.actor.state_dict())
            save_torch(folder / TARGET_FILE, practice.target(slug).cpu())
            meta = PolicyMeta.start(name, prompt, settings, practice.body, digest, vlm)
            write_meta(folder, dataclasses.replace(meta, updates_done=learner.updates, finished=True,
                                                   train_seconds=practice.counters["seconds"], start_mode="practice",
                                                   device=device))
            log(f"[practice] {d.spec}: policy {name} ({learner.updates} updates) -> {folder}")

    stages = {"world_model": world_model, "connector": connector, "policies": policies}
    for name in FINISH_STAGES:
        if name in state["finished"]:
            continue
        log(f"[practice] bundle: {name}")
        stages[name]()
        state["finished"].append(name)
        write_state(practice.out, state)


def report(state: dict[str, Any]) -> str:
    """The learning curve as a markdown table: one row per score, one column per driver with a task."""
    names = sorted({spec for row in state["curve"] for spec in row["scores"]})
    lines = ["| frames | world-model updates | minutes | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for row in state["curve"]:
        cells = [f"{row['scores'][n]['normalised']}" if n in row["scores"] else "" for n in names]
        lines.append(f"| {row['frames']} | {row['wm_updates']} | {row['minutes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
