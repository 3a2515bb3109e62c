"""Training the generalist: one conditioned actor-critic over many targets (models.generalist).

Each update imagines from a batch of starting states, as per-prompt learning does, but every
trajectory has its own target, drawn from a pool of thousands (`generalist_targets`), and is
rewarded by its similarity to that target after temporal alignment; the actor and critic see
the target's summary beside the state. Everything else (the update, the critic, the return
normaliser, checkpoints, resume, cancel) is the per-prompt learner's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from genrl_core.config import BehaviourConfig
from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import Actor
from genrl_core.models.generalist import BoundActor, condition_dim, target_condition, with_condition
from genrl_core.models.reward import REWARD_KINDS, RewardFn
from genrl_core.models.rssm import RSSM
from genrl_core.train.behaviour import BehaviourLearner


class GeneralistLearner(BehaviourLearner):
    """`update(deter, stoch, targets)` with targets (B, J, stoch, classes): one per trajectory; or
    one prompt's target (J, stoch, classes) for all, when a per-prompt run refines the generalist
    (`init=generalist`)."""

    def __init__(self, wm: RSSM, cfg: BehaviourConfig, action_dim: int, reward: RewardFn | None = None,
                 bc_prior: Actor | None = None):
        if cfg.reward not in REWARD_KINDS:
            raise ConfigError(f"the generalist learns from trajectory matching ({', '.join(REWARD_KINDS)}); "
                              f"{cfg.reward!r} has no target")
        super().__init__(wm, cfg, action_dim, reward, bc_prior)

    def condition_dim(self) -> int:
        return condition_dim(self.wm.cfg.stoch, self.wm.cfg.classes)

    def condition(self, target: torch.Tensor) -> torch.Tensor:
        if target.dim() not in (3, 4):
            raise ValueError(f"the generalist needs targets (B, J, stoch, classes) or one (J, stoch, classes), "
                             f"got {tuple(target.shape)}")
        return target_condition(target if target.dim() == 4 else target[None])

    def policy(self, cond: torch.Tensor | None) -> Actor:
        return BoundActor(self.actor, cond)

    def critic_input(self, feat: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return with_condition(feat, cond)


class TargetSampler:
    """Batches of one-hot targets (B, J, stoch, classes) drawn uniformly from a target pool
    (`generalist_targets.build_target_pool`); `saved()` is the pool, kept beside the generalist."""

    def __init__(self, pool: dict, classes: int, device: torch.device | str,
                 generator: torch.Generator | None = None):
        self.pool, self.stoch = pool, pool["stoch"]
        self.classes, self.device, self.gen = classes, device, generator

    def __len__(self) -> int:
        return len(self.stoch)

    def sample(self, batch: int) -> torch.Tensor:
        idx = torch.randint(len(self.stoch), (batch,), generator=self.gen)
        return F.one_hot(self.stoch[idx].long(), self.classes).float().to(self.device)

    def saved(self) -> dict:
        return self.pool


# critic-only updates before a warm-started actor learns when its critic starts at zero: against a
# critic still at zero, the first actor updates undid the generalist's start (docs/EXPERIMENTS.md,
# "The generalist on the walker bundle")
REFINE_CRITIC_WARMUP = 200


def warm_started(actor_state: dict[str, torch.Tensor], values: dict[str, Any] | None = None
                 ) -> Callable[..., GeneralistLearner]:
    """A learner class for `learn_policy` that starts from a generalist's weights: its actor, and its
    critic and return normaliser when they were kept (`values`, VALUES_FILE). Per-prompt learning
    refines the generalist on one target this way, and a generalist on a newer world model starts
    from the last one. Without values the critic learns alone first (REFINE_CRITIC_WARMUP)."""

    def build(*args: Any) -> GeneralistLearner:
        learner = GeneralistLearner(*args)
        learner.actor.load_state_dict(actor_state)
        if values is not None:
            learner.load_values(values)
        learner.critic_warmup = REFINE_CRITIC_WARMUP
        return learner

    return build
