"""The behaviour-cloning prior: an actor fitted to the dataset's own actions on world-model latents.

    genrl train-bc-prior --data data/walker --bundle checkpoints/walker

A lever against an actor that exploits the world model's errors (docs/TRAINING.md, "Behaviour
learning"): with `bc_weight` > 0, behaviour learning adds
bc_weight * E[-log prior(a | s)] over its imagined actions to the actor's loss. With the actor's
own entropy bonus that is a reverse KL to the prior, as Dreamer 4 learns offline, so imagined
actions stay where the data has actions and the world model has seen their outcomes. The prior has
the policy's shape (`models.actor_critic.Actor`) and reads the posterior features [h, s] of the
frozen world model; the bundle stores it with that world model's digest (`Bundle.save_bc_prior`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genrl_core.bundle import Bundle
from genrl_core.data.replay import EpisodeReplay
from genrl_core.data.store import read_arrays
from genrl_core.models.actor_critic import Actor, feature
from genrl_core.models.rssm import RSSM
from genrl_core.train.loop import ProgressLog


def action_pairs(wm: RSSM, images: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor,
                 warmup: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features of the states, the actions taken in them), flattened, past `warmup` filtering steps.
    `actions[:, t]` led to frame t (RSSM.observe), so the action taken at state t is `actions[:, t + 1]`;
    a pair whose next step starts an episode is dropped (its action belongs to no state here)."""
    with torch.no_grad():
        obs = wm.observe(images, actions, is_first)
        feat = feature(obs["deter"], obs["stoch"])[:, warmup:-1]
    taken = actions[:, warmup + 1:]
    keep = ~is_first[:, warmup + 1:].bool()
    return feat[keep], taken[keep].float()


def train_bc_prior(wm: RSSM, data: str | Path, bundle: str | Path, steps: int = 2000, batch: int = 16,
                   seq_len: int = 32, hidden: int = 256, layers: int = 2, lr: float = 1e-3, seed: int = 0,
                   progress: bool = True, log=print) -> dict[str, Any]:
    """Fit the prior on the training split by maximum likelihood; report the held-out negative
    log-likelihood per action; save it to the bundle."""
    bundle = Bundle(bundle)
    device = next(wm.parameters()).device
    replay, held = EpisodeReplay.from_dir(data, seq_len, device, seed=seed, log=log)
    torch.manual_seed(seed)
    prior = Actor(wm.cfg.deter + wm.cfg.stoch_dim, wm.cfg.action_dim, hidden, layers).to(device)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    plog = ProgressLog(bundle.path / "logs" / "bc_prior.jsonl", steps, 0, max(1, min(100, steps // 10)), 1e9,
                       "train-bc-prior", progress)
    for step in range(1, steps + 1):
        sample = replay.sample(batch)
        feat, taken = action_pairs(wm, sample["image"], sample["action"], sample["is_first"], seq_len // 4)
        loss = -prior.log_prob(feat, taken).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        plog.update(step, {"nll": loss.detach()})
    plog.close()
    nll = heldout_nll(wm, prior, held, seq_len) if held else None
    bundle.save_bc_prior(prior, steps, nll)
    log(f"[bc-prior] {steps} steps; held-out negative log-likelihood per action "
        f"{'n/a' if nll is None else f'{nll:.3f}'} -> {bundle.bc_prior_file}")
    return {"heldout_nll": nll}


@torch.no_grad()
def heldout_nll(wm: RSSM, prior: Actor, paths: list[Path], seq_len: int) -> float:
    """Mean negative log-likelihood of the held-out episodes' actions under the prior."""
    device = next(wm.parameters()).device
    total, count = 0.0, 0
    for path in paths:
        ep = read_arrays(path, ("image", "action", "is_first"))
        feat, taken = action_pairs(wm, *(torch.from_numpy(ep[k])[None].to(device)
                                         for k in ("image", "action", "is_first")), seq_len // 4)
        total += float(-prior.log_prob(feat, taken).sum())
        count += len(taken)
    return round(total / max(count, 1), 4)
