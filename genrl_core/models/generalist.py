"""The generalist: one actor and critic conditioned on the target, for any prompt at once.

Per-prompt learning (`train.behaviour`) gives each prompt its own actor. The generalist's actor
and critic take, beside the state features [h, s], a summary of the target latent sequence the
prompt decodes to, and learn over many targets at once with the same trajectory-matching reward;
a new prompt then has a policy as soon as it has a target.

The condition is a fixed, parameter-free summary of the target's one-hot states (J, stoch,
classes), so any target works (text, video, an expert's own latents) without a learned encoder:
- the mean one-hot over time: how often each latent class is on, i.e. the poses the target visits;
- the mean absolute change between consecutive states: which variables move, i.e. the motion.
A target that stands still and one that walks share poses but not motion, and the second half
tells them apart. The actor's first layer learns what to read from the summary.
"""

from __future__ import annotations

import torch
from torch import nn

from genrl_core.models.actor_critic import Actor


def condition_dim(stoch: int, classes: int) -> int:
    return 2 * stoch * classes


def conditioned_actor(wm, hidden: int, layers: int) -> Actor:
    """An actor taking [h, s] and the condition, for a world model of config `wm` (RSSMConfig):
    the generalist's, and a policy refined from it."""
    return Actor(wm.deter + wm.stoch_dim + condition_dim(wm.stoch, wm.classes), wm.action_dim, hidden, layers)


def target_condition(target: torch.Tensor) -> torch.Tensor:
    """(..., J, stoch, classes) one-hot target states -> (..., 2 * stoch * classes) summary."""
    flat = target.flatten(-2).float()
    motion = (flat[..., 1:, :] - flat[..., :-1, :]).abs().mean(-2)
    return torch.cat([flat.mean(-2), motion], -1)


def with_condition(feat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """[feat, cond] with cond (B, C) broadcast over any time axes of feat (B, ..., F)."""
    cond = cond.to(feat.dtype).reshape(cond.shape[0], *([1] * (feat.dim() - 2)), cond.shape[-1])
    return torch.cat([feat, cond.expand(*feat.shape[:-1], cond.shape[-1])], -1)


class BoundActor(nn.Module):
    """A conditioned actor with its condition fixed: acts on state features alone, as a
    per-prompt `Actor` does, so rollouts, evaluation and videos take it unchanged."""

    def __init__(self, actor: Actor, cond: torch.Tensor):
        super().__init__()
        self.actor = actor
        self.register_buffer("cond", cond if cond.dim() == 2 else cond[None])

    def _cond_for(self, feat: torch.Tensor) -> torch.Tensor:
        # one condition for the whole batch, or one per row
        return self.cond.expand(feat.shape[0], -1) if len(self.cond) == 1 else self.cond

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(with_condition(feat, self._cond_for(feat)))

    def sample(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor.sample(with_condition(feat, self._cond_for(feat)))

    @torch.no_grad()
    def act(self, feat: torch.Tensor, explore: bool = False) -> torch.Tensor:
        return self.actor.act(with_condition(feat, self._cond_for(feat)), explore)
