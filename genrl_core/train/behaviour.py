"""Behaviour learning in imagination: one policy per prompt (docs/GENRL.md section 6).

From a batch of starting latent states the actor imagines `horizon` steps with the frozen
world model; each imagined state is rewarded by its similarity to the prompt's target
trajectory after temporal alignment (`models.reward`); the critic learns lambda-returns and
the actor maximises them with gradients through the dynamics.

Starting states come from the bundle's `start_states.pt` (posteriors of dataset frames,
`build_start_states`), or, in data-free mode, half from random one-hot latents and half from
the connector fed random aligned embeddings, with h = 0.

A run lives in one folder: `state.pt` (everything needed to resume, written every few
minutes, on cancel and on Ctrl-C), `policy.pt` (actor weights) and `meta.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.bundle import Bundle, save_torch
from genrl_core.config import BehaviourConfig
from genrl_core.data.replay import EpisodeReplay
from genrl_core.errors import ConfigError, GenRLError
from genrl_core.models.actor_critic import Actor, Critic, ReturnNorm, feature
from genrl_core.models.reward import RewardFn, make_reward
from genrl_core.models.rssm import RSSM
from genrl_core.policies import POLICY_FILE, STATE_FILE, TARGET_FILE, VALUES_FILE, PolicyMeta, write_meta
from genrl_core.train.loop import (
    COMPILE_MIN_BEHAVIOUR_UPDATES,
    PAPER_DETER,
    ProgressLog,
    TrainState,
    compile_for,
    resolve_amp,
    should_compile,
    torch_rng,
)


class LearningCancelled(GenRLError):
    """Learning stopped on request; the checkpoint was saved and a rerun resumes."""


# ------------------------------------------------------------------ starting states
@torch.no_grad()
def build_start_states(wm: RSSM, data: str | Path, bundle: str | Path, count: int = 4096, seq_len: int = 32,
                       seed: int = 0, log=print) -> Path:
    """Posterior states of `count` random dataset frames, shipped in the bundle (~2 MB), so that
    learning needs no dataset on the user's machine."""
    device = next(wm.parameters()).device
    replay, _ = EpisodeReplay.from_dir(data, seq_len, device, seed=seed, log=log)
    deters, stochs = [], []
    while sum(len(d) for d in deters) < count:
        batch = replay.sample(32)
        obs = wm.observe(batch["image"], batch["action"], batch["is_first"])
        deters.append(obs["deter"][:, seq_len // 4:].flatten(0, 1))  # skip the warm-up steps of each sequence
        stochs.append(obs["stoch"][:, seq_len // 4:].flatten(0, 1).argmax(-1))
    deter, stoch = torch.cat(deters)[:count], torch.cat(stochs)[:count]
    files = Bundle(bundle)
    files.save_start_states(deter, stoch)
    log(f"[start-states] {len(deter)} posterior states -> {files.start_states_file}")
    return files.start_states_file


class StartStates:
    """Samples batches of (deter, one-hot stoch) starting states."""

    def __init__(self, wm: RSSM, bundle: Path, mode: str, connector=None, aligner=None, embed_dim: int = 0,
                 generator: torch.Generator | None = None):
        self.wm, self.device = wm, next(wm.parameters()).device
        self.gen = generator
        files = Bundle(bundle)
        if mode == "auto":
            mode = "dataset" if files.start_states_file.exists() else "data_free"
        self.mode = mode
        if mode == "dataset":
            pool = files.load_start_states()
            self.deter = pool["deter"].float().to(self.device)
            self.stoch = F.one_hot(pool["stoch"].long(), wm.cfg.classes).float().to(self.device)
        else:
            if connector is None or aligner is None:
                raise ConfigError("data-free starting states need the connector and the aligner")
            self.connector, self.aligner, self.embed_dim = connector, aligner, embed_dim

    @torch.no_grad()
    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "dataset":
            idx = torch.randint(len(self.deter), (batch,), generator=self.gen).to(self.device)
            return self.deter[idx], self.stoch[idx]
        cfg = self.wm.cfg
        half = batch // 2
        classes = torch.randint(cfg.classes, (batch - half, cfg.stoch), generator=self.gen).to(self.device)
        uniform = F.one_hot(classes, cfg.classes).float()
        emb = F.normalize(torch.randn(half, self.embed_dim, generator=self.gen), dim=-1).to(self.device)
        steps = int(torch.randint(1, 8, (), generator=self.gen))
        from_connector = self.connector.rollout(self.aligner(emb), steps, sample=True)[:, -1]
        stoch = torch.cat([uniform, from_connector])
        return torch.zeros(batch, cfg.deter, device=self.device), stoch


# ------------------------------------------------------------------ learner
def actor_rollout(wm: RSSM, actor: Actor, deter: torch.Tensor, stoch: torch.Tensor,
                  horizon: int, prior: Actor | None = None) -> dict[str, torch.Tensor]:
    """The world model's one imagination loop with the actor's sampled actions, plus the actor's
    entropy at states 0..horizon-1 and, with a behaviour-cloning `prior`, each action's
    log-density under it (`prior_logp`, differentiable in the action)."""
    # the actor's input is a stop-gradient, as GenRL and Dreamer: its gradients reach earlier
    # actions only through the dynamics of the states it led to, not through its own input
    entropies, prior_logps = [], []

    def act(deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        feat = feature(deter, stoch).detach()
        action, entropy = actor.sample(feat)
        entropies.append(entropy)
        if prior is not None:
            prior_logps.append(prior.log_prob(feat, action))
        return action

    traj = wm.imagine(deter, stoch, act, horizon)
    traj["entropy"] = torch.stack(entropies, 1)
    if prior is not None:
        traj["prior_logp"] = torch.stack(prior_logps, 1)
    return traj


def lambda_returns(reward: torch.Tensor, value: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """reward (B, H) for reaching states 1..H, value (B, H+1) -> returns (B, H) of states 0..H-1."""
    ret, out = value[:, -1], []
    for t in reversed(range(reward.shape[1])):
        ret = reward[:, t] + gamma * ((1 - lam) * value[:, t + 1] + lam * ret)
        out.append(ret)
    return torch.stack(out[::-1], 1)


COMPILE_MIN_MINUTES = 2.0  # a run capped shorter than this would spend half its time compiling


def compile_update(cfg: BehaviourConfig, device: torch.device) -> bool:
    """`compile`: auto compiles on CUDA, where the eager update is bound by kernel launches at any
    batch, when the run is long enough to pay for it. On a CPU the gain is small and does not repay
    the compiling within a usual run: opt in with compile=true (docs/EXPERIMENTS.md, "Speed")."""
    remaining = cfg.updates if not cfg.max_minutes or cfg.max_minutes >= COMPILE_MIN_MINUTES else 0
    return should_compile(cfg.compile, device, remaining, COMPILE_MIN_BEHAVIOUR_UPDATES)


class BehaviourLearner:
    """Actor, critic, slow critic, their optimisers and the return normaliser.

    An update is two pure functions of tensors, `actor_objective` and `critic_objective`, and the
    optimiser steps between them; compiled (`compile`), each becomes one fused graph with its
    backward, replayed as a CUDA graph on a GPU. State that persists across updates (the return
    percentiles, the slow critic, the update count) is written outside the graphs."""

    def __init__(self, wm: RSSM, cfg: BehaviourConfig, action_dim: int, reward: RewardFn | None = None,
                 bc_prior: Actor | None = None):
        """`reward`: `models.reward.make_reward`'s function for cfg.reward (made here when None, for a
        kind that needs nothing from the bundle). `bc_prior`: the bundle's behaviour-cloning prior
        (`Bundle.load_bc_prior`), needed when cfg.bc_weight > 0."""
        if cfg.bc_weight > 0 and bc_prior is None:
            raise ConfigError("bc_weight > 0 needs the bundle's behaviour-cloning prior (`genrl train-bc-prior`); "
                              "`genrl learn` loads it, practice and the generalist do not use one")
        self.wm, self.cfg = wm, cfg
        self.bc_prior = bc_prior if cfg.bc_weight > 0 else None
        self.rewards = make_reward(cfg.reward, wm, None, cfg.align_states) if reward is None else reward
        dev = next(wm.parameters()).device
        in_dim = wm.cfg.deter + wm.cfg.stoch_dim + self.condition_dim()
        self.actor = Actor(in_dim, action_dim, cfg.hidden, cfg.layers).to(dev)
        self.critic = Critic(in_dim, cfg.hidden, cfg.layers).to(dev)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.norm = ReturnNorm().to(dev)
        fused = dev.type == "cuda"  # one kernel per step instead of one per tensor
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, eps=1e-5, fused=fused)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, eps=1e-5, fused=fused)
        self.updates = 0
        self.critic_warmup = 0  # first updates that train the critic alone (a warm-started actor's values)
        self.amp = resolve_amp(cfg.amp, dev, large=wm.cfg.deter >= PAPER_DETER)
        self.compiled = compile_update(cfg, dev)
        self.cuda_graphs = self.compiled and dev.type == "cuda"
        self._actor_objective, self._critic_objective = self.actor_objective, self.critic_objective
        if self.compiled:
            self._actor_objective = compile_for(self.actor_objective, dev)
            self._critic_objective = compile_for(self.critic_objective, dev)

    # what the generalist (train.generalist) overrides: a per-prompt learner has no condition
    def condition_dim(self) -> int:
        return 0

    def condition(self, target: torch.Tensor) -> torch.Tensor | None:
        """The actor's and critic's input besides the state features, derived from the target."""
        return None

    def policy(self, cond: torch.Tensor | None) -> Actor:
        """The actor that imagines, given the condition."""
        return self.actor

    def critic_input(self, feat: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return feat

    def autocast(self, device: torch.device) -> torch.autocast:
        """Autocast to `amp`'s dtype (off for fp32), without its weight-cast cache, which a
        compiled graph cannot hold across calls."""
        return torch.autocast(device.type, dtype=self.amp or torch.bfloat16, enabled=self.amp is not None,
                              cache_enabled=False)

    def actor_objective(self, deter: torch.Tensor, stoch: torch.Tensor,
                        target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Imagine from the starting states, reward against the target, and return the actor's loss
        with what the critic and the logs need (`low`/`high`: the return percentiles to store)."""
        cfg = self.cfg
        with self.autocast(deter.device):
            cond = self.condition(target)
            traj = actor_rollout(self.wm, self.policy(cond), deter, stoch, cfg.horizon, self.bc_prior)
            reward, t_a = self.rewards(traj, target)
            reward = reward.float()
            feat = feature(traj["deter"], traj["stoch"])
            value = self.critic.value(self.critic(self.critic_input(feat, cond)).float())
            returns = lambda_returns(reward[:, 1:], value, cfg.gamma, cfg.lam)
            weight = cfg.gamma ** torch.arange(cfg.horizon, device=feat.device, dtype=torch.float32)
            low, high = self.norm.updated(returns)
            actor_loss = (-(weight * returns / ReturnNorm.scale_of(low, high)).mean()
                          - cfg.entropy * traj["entropy"].float().mean())
            if self.bc_prior is not None:  # with the entropy bonus: a reverse KL to the prior
                prior_nll = -traj["prior_logp"].float().mean()
                actor_loss = actor_loss + cfg.bc_weight * prior_nll
        out = {"actor_loss": actor_loss, "feat": feat, "returns": returns, "reward": reward[:, 1:].mean(),
               "t_a": t_a, "low": low, "high": high, "cond": cond}
        if self.bc_prior is not None:
            out["prior_nll"] = prior_nll
        return out

    def critic_objective(self, feat: torch.Tensor, returns: torch.Tensor,
                         cond: torch.Tensor | None = None) -> torch.Tensor:
        """Two-hot loss of the critic on the imagined states (no gradient into the imagination)
        toward the lambda-returns and toward the slow critic."""
        cfg = self.cfg
        weight = cfg.gamma ** torch.arange(cfg.horizon, device=feat.device, dtype=torch.float32)
        with self.autocast(feat.device):
            inputs = self.critic_input(feat[:, :-1], cond)
            logits = self.critic(inputs).float()
            with torch.no_grad():
                slow_value = self.slow_critic.value(self.slow_critic(inputs).float())
            return (weight * (self.critic.loss(logits, returns) + self.critic.loss(logits, slow_value))).mean()

    def update(self, deter: torch.Tensor, stoch: torch.Tensor, target: torch.Tensor,
               train_actor: bool = True) -> dict[str, Any]:
        """One update from these start states; `train_actor=False` trains only the critic (the
        values of a given actor, before it learns on)."""
        cfg = self.cfg
        if self.cuda_graphs:  # a new iteration: the last update's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        out = self._actor_objective(deter, stoch, target)
        self.norm.store(out["low"], out["high"])
        if train_actor:
            self.actor_opt.zero_grad(set_to_none=True)
            # only the actor's gradients: the critic's from this loss would be thrown away, and with CUDA
            # graphs accumulating into critic grads that the last update's graph owns is an error
            torch.autograd.backward(out["actor_loss"], inputs=list(self.actor.parameters()))
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
            self.actor_opt.step()

        cond = None if out["cond"] is None else out["cond"].detach()
        critic_loss = self._critic_objective(out["feat"].detach(), out["returns"].detach(), cond)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        self.updates += 1
        if self.updates % cfg.slow_critic_every == 0:
            self.slow_critic.load_state_dict(self.critic.state_dict())
        stats = {"reward": out["reward"], "actor_loss": out["actor_loss"], "critic_loss": critic_loss,
                 "return": out["returns"].mean(), "t_a": out["t_a"]}
        if "prior_nll" in out:
            stats["prior_nll"] = out["prior_nll"]
        # CUDA graph outputs are overwritten by the next update: callers may keep these longer
        return {k: v.detach().clone() if self.cuda_graphs else v.detach() for k, v in stats.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "slow_critic": self.slow_critic.state_dict(), "norm": self.norm.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "slow_critic", "norm", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = int(state["updates"])

    _VALUES = ("critic", "slow_critic", "norm")

    def values_state(self) -> dict[str, Any]:
        """What the learner knows of returns (critic, slow critic, return normaliser), without the
        optimisers: what a warm-started run takes besides the actor (VALUES_FILE)."""
        return {name: getattr(self, name).state_dict() for name in self._VALUES}

    def load_values(self, state: dict[str, Any]) -> None:
        missing = [name for name in self._VALUES if name not in state]
        if missing:
            raise ValueError(f"a values state needs {', '.join(missing)}")
        for name in self._VALUES:
            getattr(self, name).load_state_dict(state[name])


# ------------------------------------------------------------------ one run
class TargetSource(Protocol):
    """What a learner is rewarded against: `sample(batch)` per update, `saved()` for TARGET_FILE."""

    def sample(self, batch: int) -> torch.Tensor: ...

    def saved(self) -> Any: ...


class FixedTarget:
    """One prompt's target (J, stoch, classes), the same for every update."""

    def __init__(self, target: torch.Tensor):
        self.target = target

    def sample(self, batch: int) -> torch.Tensor:
        return self.target

    def saved(self) -> torch.Tensor:
        return self.target.cpu()


@dataclasses.dataclass(frozen=True)
class LearnRun:
    """What one run of `learn_policy` learns, and where.

    `target` is one prompt's target (J, stoch, classes) or a source of targets per update; `reward`
    is `make_reward`'s function for cfg.reward (needed for a kind that reads the bundle, oracle:TASK;
    None makes it from the world model alone); `learner_class` replaces the per-prompt learner (the
    generalist's, or one warm-started from it)."""

    target: torch.Tensor | TargetSource
    starts: StartStates
    cfg: BehaviourConfig
    run_dir: Path
    meta: PolicyMeta  # the meta it starts with; learning adds the progress
    reward: RewardFn | None = None
    learner_class: type[BehaviourLearner] | None = None
    bc_prior: Actor | None = None  # the bundle's behaviour-cloning prior, for cfg.bc_weight > 0
    keep_values: bool = False  # also write VALUES_FILE when it finishes (for runs that start from this one)


def learn_policy(wm: RSSM, run: LearnRun, *, callback: Callable[[dict], None] | None = None,
                 cancel: threading.Event | None = None, progress: bool = False) -> PolicyMeta:
    """Learn (or resume) one policy in `run.run_dir`; returns its final meta. The learner is built
    after the seed is set, so that its initial weights follow the seed. `callback(dict)` gets
    progress; setting `cancel` checkpoints and raises LearningCancelled."""
    cfg, run_dir, starts, meta = run.cfg, run.run_dir, run.starts, run.meta
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    source = FixedTarget(run.target) if isinstance(run.target, torch.Tensor) else run.target
    learner = (run.learner_class or BehaviourLearner)(wm, cfg, wm.cfg.action_dim, run.reward, run.bc_prior)
    if learner.compiled and progress:
        print("[learn] compiling the update" + (" into CUDA graphs" if learner.cuda_graphs else "")
              + " (about a minute, once per process)", file=sys.stderr, flush=True)
    rngs = {"torch_rng": torch_rng()}
    if starts.gen is not None:
        rngs["start_rng"] = (starts.gen.get_state, starts.gen.set_state)
    resumable = TrainState(run_dir / STATE_FILE, rngs)
    if (state := resumable.load()) is not None:
        learner.load_state_dict(state["learner"])
    save_torch(run_dir / TARGET_FILE, source.saved())
    plog = ProgressLog(run_dir / "log.jsonl", cfg.updates, learner.updates, cfg.log_every, cfg.checkpoint_minutes,
                       "learn", progress, resumable.elapsed)

    def checkpoint(finished: bool = False) -> PolicyMeta:
        if finished:
            save_torch(run_dir / POLICY_FILE, learner.actor.state_dict())
            if run.keep_values:
                save_torch(run_dir / VALUES_FILE, learner.values_state())
            resumable.path.unlink(missing_ok=True)
        else:
            resumable.save(learner.updates, plog.elapsed, learner=learner.state_dict())
        full = dataclasses.replace(meta, updates_done=learner.updates, finished=finished,
                                   train_seconds=round(plog.elapsed, 1), start_mode=starts.mode,
                                   device=str(next(wm.parameters()).device))
        write_meta(run_dir, full)
        return full

    t_a_hist = np.zeros(cfg.horizon + 1 - cfg.align_states, np.int64)
    window_start, window_updates = time.time(), 0
    with plog.saving_on_interrupt(checkpoint, log=lambda *_: None):
        while learner.updates < cfg.updates:
            if cancel is not None and cancel.is_set():
                checkpoint()
                raise LearningCancelled(f"cancelled at update {learner.updates}; rerun to resume")
            deter, stoch = starts.sample(cfg.batch)
            metrics = learner.update(deter, stoch, source.sample(cfg.batch),
                                     train_actor=learner.updates >= learner.critic_warmup)
            t_a = metrics.pop("t_a")
            t_a_hist += np.bincount(t_a.cpu().numpy(), minlength=len(t_a_hist))
            plog.update(learner.updates, metrics)
            window_updates += 1
            if callback is not None and (learner.updates % cfg.log_every == 0 or learner.updates == cfg.updates):
                now = time.time()
                callback({"update": learner.updates, "updates": cfg.updates,
                          **{k: round(float(v), 5) for k, v in metrics.items()},
                          "t_a_hist": t_a_hist.tolist(), "elapsed": round(plog.elapsed, 2),
                          "updates_per_s": round(window_updates / max(now - window_start, 1e-9), 3)})
                t_a_hist[:] = 0
                window_start, window_updates = now, 0
            if cfg.max_minutes and plog.elapsed >= 60 * cfg.max_minutes:
                break
            if plog.checkpoint_due():
                checkpoint()
    return checkpoint(finished=True)
