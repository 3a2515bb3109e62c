"""The rewards a policy learns from, one registry of kinds (docs/GENRL.md section 6).

`make_reward(kind, wm, heads, align_states)` is the one place a reward kind is read: it returns
the reward function `(traj, target) -> (reward (B, I), t_a (B,))` of an imagined trajectory.

- trajectory matching (`max_cosine`, `cosine`, `kl`, `pose_motion`): the reward of imagined state i is its
  similarity to the target state max(0, i - t_a), where t_a is the offset at which the target's
  first `align_states` states best match the imagined trajectory. Everything is one batched
  similarity matrix per update; no loop over offsets. These are the kinds a request may pick.
- `oracle:TASK`: the task's true reward as a reward head on the latent predicts it (trained on
  the dataset's rewards: the score ladder's ceiling, not GenRL's method); no target, no alignment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import feature
from genrl_core.models.reward_heads import RewardHeads
from genrl_core.models.rssm import RSSM

if TYPE_CHECKING:  # the oracle loads its heads through a bundle it is handed; models never load files
    from genrl_core.bundle import Bundle

    # where the oracle's heads come from: the heads themselves, or the bundle that loads them
    HeadsSource = Bundle | RewardHeads | None

# (traj of RSSM.imagine, target) -> (reward (B, I) of every imagined state, offsets t_a (B,))
RewardFn = Callable[[dict[str, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (wm, imagined (B, I, stoch, classes), target (J | B, J, stoch, classes), prior probs) -> S (B, I, J)
Similarity = Callable[[RSSM, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


# ------------------------------------------------------------------ trajectory matching
def _max_cosine_of(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    dots = u @ v.mT
    norm_u, norm_v = u.norm(dim=-1), v.norm(dim=-1)
    return dots / torch.maximum(norm_u[..., :, None], norm_v[..., None, :]).clamp_min(1e-6) ** 2


def _cosine_of(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).mT


def _max_cosine(wm: RSSM, imagined: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
    """u.v / max(|u|, |v|)^2: a cosine that also penalises a norm mismatch (GenRL's default)."""
    return _max_cosine_of(wm.latent_features(imagined), wm.latent_features(target))


# Motion is compared over two agent steps: over one, a walking target's change is mostly noise.
MOTION_STEPS = 2
# A target state counts as moving when its change over MOTION_STEPS is large against this share of
# its squared norm; standing targets change ~1% of it, walking and running ones 40-90%.
MOTION_SCALE = 0.05


def _motion(x: torch.Tensor) -> torch.Tensor:
    """Change over MOTION_STEPS along the time axis (-2), the first change repeated at the front so
    that index i stays state i."""
    dx = x[..., MOTION_STEPS:, :] - x[..., :-MOTION_STEPS, :]
    return torch.cat([dx[..., :1, :].expand(*dx.shape[:-2], MOTION_STEPS, dx.shape[-1]), dx], -2)


def _pose_motion(wm: RSSM, imagined: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
    """max_cosine of the poses, times how well the imagined motion points where the target moves.

    Pose alone rewards standing still for a walking target: an upright pose is close to every
    phase of a gait. Where the target state moves (gate -> 1) the reward also asks for the same
    direction of change; where it stays put (gate -> 0, a standing target) it is max_cosine."""
    u, v = wm.latent_features(imagined), wm.latent_features(target)
    du, dv = _motion(u), _motion(v)
    moving = dv.pow(2).sum(-1)
    gate = (moving / (moving + MOTION_SCALE * v.pow(2).sum(-1)).clamp_min(1e-6))[..., None, :]  # (1 | B, 1, J)
    direction = _cosine_of(du, dv).clamp_min(0)
    return _max_cosine_of(u, v) * (1 - gate + gate * direction)


def _cosine(wm: RSSM, imagined: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
    return _cosine_of(wm.latent_features(imagined), wm.latent_features(target))


def _kl(wm: RSSM, imagined: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
    """-KL(one-hot target || prior) = mean over variables of log p_prior(target class)."""
    if probs is None:
        raise ValueError("the kl reward needs the imagined prior probabilities")
    logp = probs.clamp_min(1e-8).log().flatten(-2)  # (B, I, stoch*classes)
    return logp @ target.flatten(-2).mT / target.shape[-2]


SIMILARITIES: dict[str, Similarity] = {"max_cosine": _max_cosine, "cosine": _cosine, "kl": _kl,
                                       "pose_motion": _pose_motion}


def similarity_matrix(kind: str, wm: RSSM, imagined: torch.Tensor, target: torch.Tensor,
                      imagined_probs: torch.Tensor | None = None) -> torch.Tensor:
    """S[b, i, j] = sim(imagined state i of trajectory b, target state j).

    imagined (B, I, stoch, classes) one-hot; target (J, stoch, classes) one-hot, shared by every
    trajectory, or (B, J, stoch, classes), one target per trajectory (the generalist's batches);
    imagined_probs (B, I, stoch, classes) prior probabilities, needed for `kl`.
    """
    if kind not in SIMILARITIES:
        raise ValueError(f"{kind!r} is no trajectory-matching reward; valid: {', '.join(SIMILARITIES)}")
    return SIMILARITIES[kind](wm, imagined, target, imagined_probs)


def alignment_scores(sim: torch.Tensor, align_states: int) -> torch.Tensor:
    """(B, offsets): mean similarity of target states 0..b-1 placed at imagined steps k..k+b-1.

    GenRL slides the window over `imagined_len - b` offsets (9 for 17 states and b = 8): the last
    placement, which would leave no imagined step after the window, is not a candidate."""
    imagined_len = sim.shape[1]
    offsets = imagined_len - align_states
    if offsets < 1 or sim.shape[2] < align_states:
        raise ValueError(f"alignment over {align_states} states needs more imagined states "
                         f"({imagined_len}) and at least as many target states ({sim.shape[2]})")
    k = torch.arange(offsets, device=sim.device)[:, None]
    j = torch.arange(align_states, device=sim.device)[None, :]
    return sim[:, k + j, j.expand(offsets, -1)].mean(-1)


def aligned_reward(sim: torch.Tensor, align_states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward (B, I) = S[b, i, min(J-1, max(0, i - t_a))] and the chosen offsets t_a (B,)."""
    t_a = alignment_scores(sim, align_states).argmax(-1)
    i = torch.arange(sim.shape[1], device=sim.device)[None, :]
    j = (i - t_a[:, None]).clamp(0, sim.shape[2] - 1)
    return sim.gather(2, j[..., None])[..., 0], t_a


# ------------------------------------------------------------------ the registry
def _matching(similarity: Similarity, kind: str, wm: RSSM, arg: str, heads: HeadsSource,
              align_states: int) -> RewardFn:
    """Similarity to the target state after temporal alignment (one target, or one per trajectory)."""
    def reward(traj: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return aligned_reward(similarity(wm, traj["stoch"], target, traj["probs"]), align_states)

    return reward


def _oracle(kind: str, wm: RSSM, task: str, heads: HeadsSource, align_states: int) -> RewardFn:
    """The task's true reward as its head predicts it from [h, s]; t_a is 0 (nothing to align)."""
    if heads is None:
        raise ConfigError(f"reward {kind!r} needs the bundle's oracle reward heads")
    if not isinstance(heads, RewardHeads):
        heads = heads.load_reward_heads(wm)
    column = heads.column(task)  # an unknown task fails here, before any learning

    def reward(traj: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = heads(feature(traj["deter"], traj["stoch"]))[..., column]
        return value, torch.zeros(len(value), dtype=torch.long, device=value.device)

    return reward


@dataclasses.dataclass(frozen=True)
class RewardKind:
    """One registered kind: `build(kind, wm, arg, heads, align_states)` makes its reward function."""

    build: Callable[[str, RSSM, str, HeadsSource, int], RewardFn]
    arg: str = ""  # what the kind takes after a colon (oracle:TASK); "" for a kind that takes nothing
    matches_target: bool = True  # False: the reward ignores the prompt's target (a task's true reward)


# name -> kind, as dreamerv3 dispatches module kinds; a new reward is one entry here
REWARDS: dict[str, RewardKind] = {
    **{name: RewardKind(partial(_matching, sim)) for name, sim in SIMILARITIES.items()},
    "oracle": RewardKind(_oracle, arg="TASK", matches_target=False),
}
# the kinds a request may pick: trajectory matching against the prompt's target (an oracle needs
# a task's true reward, which a user's prompt does not have)
REWARD_KINDS = tuple(SIMILARITIES)


def parse_reward(kind: str) -> tuple[RewardKind, str]:
    """A reward kind's registry entry and its argument (`oracle:walker_walk` -> oracle, walker_walk)."""
    name, colon, arg = kind.partition(":")
    entry = REWARDS.get(name)
    if entry is None or bool(arg) != bool(entry.arg) or bool(colon) != bool(entry.arg):
        valid = ", ".join(f"{n}:{e.arg}" if e.arg else n for n, e in REWARDS.items())
        raise ConfigError(f"unknown reward {kind!r}; valid: {valid}")
    return entry, arg


def make_reward(kind: str, wm: RSSM, heads: HeadsSource, align_states: int) -> RewardFn:
    """The reward function of `kind` on this world model; `heads` (the reward heads, or the bundle
    that loads them) is read only by a kind that needs it (oracle:TASK)."""
    entry, arg = parse_reward(kind)
    return entry.build(kind, wm, arg, heads, align_states)
