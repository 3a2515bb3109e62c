"""Trajectory-matching reward with temporal alignment (docs/GENRL.md section 6).

The reward of imagined state i is its similarity to the target state max(0, i - t_a), where
t_a is the offset at which the target's first `align_states` states best match the imagined
trajectory. Everything is one batched similarity matrix per update; no loop over offsets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# the trajectory-matching similarities; `oracle:TASK` (a reward head on the latent, trained on the
# dataset's true reward: the score ladder's ceiling) is the one other kind a policy may use
REWARD_KINDS = ("max_cosine", "cosine", "kl")
ORACLE_PREFIX = "oracle:"


def oracle_task(reward: str) -> str | None:
    """`oracle:walker_walk` -> `walker_walk`; any other reward kind -> None."""
    return reward[len(ORACLE_PREFIX):] if reward.startswith(ORACLE_PREFIX) else None


def latent_features(wm, stoch: torch.Tensor) -> torch.Tensor:
    """One-hot stoch (..., stoch, classes) through the decoder's first linear layer (no bias)."""
    return stoch.flatten(-2) @ wm.decoder.proj.weight.t()


def similarity_matrix(kind: str, wm, imagined: torch.Tensor, target: torch.Tensor,
                      imagined_probs: torch.Tensor | None = None) -> torch.Tensor:
    """S[b, i, j] = sim(imagined state i of trajectory b, target state j).

    imagined (B, I, stoch, classes) one-hot; target (J, stoch, classes) one-hot, shared by every
    trajectory, or (B, J, stoch, classes), one target per trajectory (the generalist's batches);
    imagined_probs (B, I, stoch, classes) prior probabilities, needed for `kl`.
    """
    if kind == "kl":
        if imagined_probs is None:
            raise ValueError("the kl reward needs the imagined prior probabilities")
        # -KL(one-hot target || prior) = mean over variables of log p_prior(target class)
        logp = imagined_probs.clamp_min(1e-8).log().flatten(-2)  # (B, I, stoch*classes)
        return logp @ target.flatten(-2).mT / target.shape[-2]
    u, v = latent_features(wm, imagined), latent_features(wm, target)
    if kind == "cosine":
        return F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).mT
    if kind == "max_cosine":  # u.v / max(|u|, |v|)^2: also penalises a norm mismatch
        dots = u @ v.mT
        norm_u, norm_v = u.norm(dim=-1), v.norm(dim=-1)
        return dots / torch.maximum(norm_u[..., :, None], norm_v[..., None, :]).clamp_min(1e-6) ** 2
    raise ValueError(f"unknown reward {kind!r}; valid: {', '.join(REWARD_KINDS)}")


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
