"""A bundle's generalist: train it (`genrl train-generalist`) and load it for zero-shot use.

The generalist lives in the bundle's `generalist/` folder, laid out as a policy's run folder:
`policy.pt` (the conditioned actor), `values.pt` (its critic and return normaliser, which
refinements start from), `meta.json` (its settings, world model and VLM), `target.pt` (the target
pool it trained on) and, while it trains, `state.pt` (rerun to resume; Ctrl-C saves).
Training is per-prompt learning's loop (`learn_policy`) with the generalist's learner and one
target per trajectory, drawn from the pool (`train.generalist_targets`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl_core.bundle import BundleError, load_torch, load_weights
from genrl_core.data.store import EpisodeStore
from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import Actor
from genrl_core.models.generalist import BoundActor, conditioned_actor
from genrl_core.policies import POLICY_FILE, TARGET_FILE, VALUES_FILE, LearnedPolicy, PolicyMeta, read_meta
from genrl_core.prompt import Prompt
from genrl_core.train.behaviour import LearnRun, StartStates, learn_policy
from genrl_core.train.generalist import GeneralistLearner, TargetSampler, warm_started

GENERALIST_DIR = "generalist"
# a generalist learns many targets at once: more updates than one prompt's default, no time cap.
# Its targets are the connector's mode rollouts (train.generalist_targets), so `act` conditions it on
# a mode rollout too: a best-of-N sampled target is another kind of sequence to it (on the walker
# bundle it halved zero-shot walk, docs/EXPERIMENTS.md "Best-of-N targets")
GENERALIST_SETTINGS: dict[str, Any] = {"updates": 20_000, "max_minutes": 0.0, "target_samples": 0}


@dataclasses.dataclass
class GeneralistPlan:
    """Where the generalist's targets come from (see train.generalist_targets)."""

    prompts: int = 2000  # prompt-bank targets: the body's task phrases and caption wordings
    windows: int = 1000  # targets from VLM embeddings of random dataset windows (needs a dataset)
    random: int = 1000  # data-free targets from random unit embeddings
    episodes: int = 16  # dataset episodes the window targets are drawn from
    pool_seed: int = 0  # seed of the target pool (prompt bank, windows, random embeddings)

    def __post_init__(self) -> None:
        if min(self.prompts, self.windows, self.random, self.episodes) < 0:
            raise ConfigError("prompts, windows, random and episodes must be >= 0")
        if self.prompts + self.random == 0 and self.windows == 0:
            raise ConfigError("the generalist needs targets: give prompts, windows or random a count above 0")


def generalist_dir(bundle: str | Path) -> Path:
    return Path(bundle) / GENERALIST_DIR


def _pool(agent, run_dir: Path, steps: int, plan: GeneralistPlan, data: str | Path | None,
          log: Callable[[str], None]) -> dict[str, Any]:
    """The saved pool when resuming (the same targets as before), else a new one."""
    # here, not at the top: the pool reads the bodies' tasks (MuJoCo), and `genrl` builds its
    # parser from this module's plan on machines that only train (no MuJoCo there)
    from genrl_core.train.generalist_targets import build_target_pool, read_episode_frames

    saved = run_dir / TARGET_FILE
    if saved.exists():
        pool = load_torch(saved)
        if not isinstance(pool, dict) or tuple(pool["stoch"].shape[1:]) != (steps, agent.wm.cfg.stoch):
            raise BundleError(f"{saved} holds another generalist's targets; delete {run_dir} to start over")
        return pool
    episodes = None
    if data is not None and plan.windows:
        paths = EpisodeStore(data).paths()
        if not paths:
            raise BundleError(f"dataset folder {data} holds no episodes")
        pick = np.random.default_rng(plan.pool_seed).choice(len(paths), min(plan.episodes, len(paths)), replace=False)
        episodes = read_episode_frames([paths[i] for i in sorted(pick)])
    pool = build_target_pool(agent.vlm, agent.aligner, agent.connector, agent.body, steps, plan.prompts,
                             plan.random, episodes, plan.windows if episodes else 0, plan.pool_seed)
    log(f"[generalist] {len(pool['source'])} targets: {len(pool['prompts'])} prompts, "
        f"{pool['source'].count('window')} dataset windows, {pool['source'].count('random')} random")
    return pool


def train_generalist(agent, settings: dict[str, Any] | None = None, plan: GeneralistPlan | None = None,
                     data: str | Path | None = None, callback: Callable[[dict], None] | None = None,
                     cancel: threading.Event | None = None, progress: bool = False,
                     log: Callable[[str], None] = print, warm_from: str | Path | None = None) -> PolicyMeta:
    """Train (or resume) the generalist of `agent`'s bundle (a loaded `GenRL`); returns its meta.
    `warm_from`, another generalist's folder (the one of the bundle a practice run started from),
    gives the first weights: a world model that practised on goes on from its predecessor's
    generalist instead of from scratch. Its targets are rebuilt on this bundle all the same."""
    plan = plan or GeneralistPlan()
    cfg = agent.behaviour_config({**GENERALIST_SETTINGS, **(settings or {})})
    if cfg.target_samples:
        raise ConfigError(f"target_samples={cfg.target_samples}: the generalist learns from the connector's mode "
                          "rollouts of its target pool, and acts on them; leave it at 0")
    run_dir = generalist_dir(agent.bundle)
    earlier = read_meta(run_dir)
    if earlier is not None and earlier.world_model != agent.wm_digest:
        raise BundleError(generalist_problem(agent.bundle, agent.wm_digest) if (run_dir / POLICY_FILE).exists()
                          else f"{run_dir} was trained on another world model; delete it to train a new generalist")
    if earlier is not None and earlier.finished and (run_dir / POLICY_FILE).exists():
        # its training state is not kept once finished: training again would start over and replace it
        log(f"[generalist] {run_dir} is trained ({earlier.updates_done} updates); delete it to train anew")
        return earlier
    learner_class = GeneralistLearner
    if warm_from is not None:  # checked before the pool is built: a bad folder fails at once
        actor_state, values = _warm_weights(Path(warm_from), agent.wm.cfg, cfg)
        learner_class = warm_started(actor_state, values)
        log(f"[generalist] starting from {warm_from}" + ("" if values else " (its actor; no critic was kept)"))
    pool = _pool(agent, run_dir, cfg.horizon + 1, plan, data, log)
    gen = torch.Generator().manual_seed(cfg.seed)  # the start states' stream: saved and restored by learn_policy
    starts = StartStates(agent.wm, agent.bundle, cfg.start, agent.connector, agent.aligner, agent.vlm.embed_dim, gen)
    targets = TargetSampler(pool, agent.wm.cfg.classes, agent.device, gen)
    meta = PolicyMeta.start(GENERALIST_DIR, Prompt.text(f"generalist over {len(targets)} targets"), cfg,
                            agent.body, agent.wm_digest, agent.vlm.name, earlier.created if earlier else None)
    run = LearnRun(targets, starts, cfg, run_dir, meta, learner_class=learner_class, keep_values=True)
    return learn_policy(agent.wm, run, callback=callback, cancel=cancel, progress=progress)


def _warm_weights(folder: Path, wm_cfg, cfg) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The actor and (when kept) values of the generalist in `folder`, checked against this one's shapes."""
    if not (folder / POLICY_FILE).exists():
        raise BundleError(f"{folder} holds no trained generalist ({POLICY_FILE}) to start from")
    actor = conditioned_actor(wm_cfg, cfg.hidden, cfg.layers)
    load_weights(actor, folder / POLICY_FILE)  # names a mismatched shape (another body or preset)
    return actor.state_dict(), generalist_values(folder)


def generalist_values(folder: str | Path) -> dict[str, Any] | None:
    """A finished generalist's critic, slow critic and return normaliser, or None where they were not
    kept (generalists trained before they were)."""
    path = Path(folder) / VALUES_FILE
    return load_torch(path) if path.exists() else None


def generalist_problem(bundle: str | Path, wm_digest: str) -> str | None:
    """Why the bundle's generalist cannot serve its world model (none, unfinished, another world
    model's), with the command that makes one; None when it can."""
    run_dir = generalist_dir(bundle)
    meta = read_meta(run_dir)
    if meta is None or not meta.finished or not (run_dir / POLICY_FILE).exists():
        return f"{bundle} has no trained generalist; train one with `genrl train-generalist --bundle {bundle}`"
    if meta.world_model != wm_digest:
        return (f"{run_dir} was trained on another world model; move it aside and train the bundle's own from it: "
                f"`mv {run_dir} {run_dir}.old && genrl train-generalist --bundle {bundle} --warm-from {run_dir}.old`")
    return None


def load_generalist(bundle: str | Path, wm_digest: str, wm_cfg, device: torch.device | str = "cpu"
                    ) -> tuple[Actor, LearnedPolicy]:
    """The trained generalist's conditioned actor and its handle; checks it fits this world model."""
    if (problem := generalist_problem(bundle, wm_digest)) is not None:
        raise BundleError(problem)
    run_dir = generalist_dir(bundle)
    found = LearnedPolicy(read_meta(run_dir), run_dir)
    cfg = found.config
    actor = conditioned_actor(wm_cfg, cfg.hidden, cfg.layers)
    load_weights(actor, run_dir / POLICY_FILE)
    return actor.to(device).eval(), found


@dataclasses.dataclass(frozen=True)
class InstantPolicy:
    """The generalist bound to one prompt's target (`GenRL.act`): no learning, it acts at once.
    Anything that takes a learned policy (rollout, imagine, alignment, evaluate) takes it."""

    meta: PolicyMeta  # the generalist's, with this prompt and slug
    actor: BoundActor
    target: torch.Tensor  # (horizon + 1, stoch, classes): what the actor is conditioned on
    reused: bool = False

    @property
    def slug(self) -> str:
        return self.meta.slug

    @property
    def config(self):
        return self.meta.config
