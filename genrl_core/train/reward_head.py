"""Oracle reward heads: the true task rewards predicted from world-model latents (DreamerV3 style).

    genrl train-reward-heads --data data/walker --bundle checkpoints/walker

Not part of GenRL's method (which never sees a task reward): the ceiling rung of the score
ladder (`benchmarks/score_ladder.py`). A policy learned with `reward=oracle:walker_walk`
shows what the world model plus the actor-critic can reach when the reward is right, so a
gap between it and a prompt's score is the prompt's (VLM, aligner, connector, matching
reward), not the learner's. One MLP predicts every task reward column of the dataset from
the posterior features [h, s] of the frozen world model (`models.reward_heads`); the bundle
stores it with the digest of the world model it was trained on (`Bundle.save_reward_heads`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.bundle import Bundle
from genrl_core.data.replay import EpisodeReplay
from genrl_core.data.store import read_arrays
from genrl_core.models.actor_critic import feature
from genrl_core.models.reward_heads import RewardHeads
from genrl_core.models.rssm import RSSM
from genrl_core.train.loop import ProgressLog


def _task_names(path: Path) -> list[str]:
    return [str(t) for t in read_arrays(path, ("task_names",))["task_names"]]


def train_reward_heads(wm: RSSM, data: str | Path, bundle: str | Path, steps: int = 2000, batch: int = 16,
                       seq_len: int = 32, lr: float = 1e-3, seed: int = 0, progress: bool = True,
                       log=print) -> dict[str, Any]:
    """Fit the heads on the training split; report the held-out error per task; save to the bundle."""
    bundle = Bundle(bundle)
    device = next(wm.parameters()).device
    extras = {"task_rewards": lambda p: read_arrays(p, ("task_rewards",))["task_rewards"]}
    replay, held = EpisodeReplay.from_dir(data, seq_len, device, seed=seed, extras=extras, log=log)
    tasks = _task_names(next(Path(data).glob("*.npz")))
    torch.manual_seed(seed)
    heads = RewardHeads(wm.cfg.deter + wm.cfg.stoch_dim, tasks).to(device)
    opt = torch.optim.Adam(heads.parameters(), lr=lr)

    @torch.no_grad()
    def features(sample: dict[str, torch.Tensor]) -> torch.Tensor:
        obs = wm.observe(sample["image"], sample["action"], sample["is_first"])
        return feature(obs["deter"], obs["stoch"])[:, seq_len // 4:]  # past the warm-up steps

    plog = ProgressLog(bundle.path / "logs" / "reward_heads.jsonl", steps, 0, max(1, min(100, steps // 10)), 1e9,
                       "train-reward-heads", progress)
    for step in range(1, steps + 1):
        sample = replay.sample(batch)
        loss = F.mse_loss(heads(features(sample)), sample["task_rewards"][:, seq_len // 4:].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        plog.update(step, {"mse": loss.detach()})
    plog.close()
    errors = heldout_errors(wm, heads, held, seq_len) if held else {}
    bundle.save_reward_heads(heads, steps, errors)
    log(f"[reward-heads] {len(tasks)} tasks, {steps} steps; held-out mean abs error per step: "
        + ", ".join(f"{t} {e:.3f}" for t, e in errors.items()) + f" -> {bundle.reward_heads_file}")
    return {"tasks": tasks, "heldout_mae": errors}


@torch.no_grad()
def heldout_errors(wm: RSSM, heads: RewardHeads, paths: list[Path], seq_len: int) -> dict[str, float]:
    """Mean absolute error per task on whole held-out episodes (filtered from their first frame)."""
    device = next(wm.parameters()).device
    errs = []
    for path in paths:
        ep = read_arrays(path, ("image", "action", "is_first", "task_rewards"))
        obs = wm.observe(*(torch.from_numpy(ep[k])[None].to(device) for k in ("image", "action", "is_first")))
        pred = heads(feature(obs["deter"], obs["stoch"]))[0, seq_len // 4:]
        errs.append((pred - torch.from_numpy(ep["task_rewards"][seq_len // 4:]).to(device)).abs().mean(0).cpu())
    mae = torch.stack(errs).mean(0).numpy()
    return {t: round(float(e), 4) for t, e in zip(heads.tasks, np.asarray(mae), strict=True)}

