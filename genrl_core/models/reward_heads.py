"""Oracle reward heads: the true task rewards predicted from world-model latents (DreamerV3 style).

Not part of GenRL's method (which never sees a task reward): the ceiling rung of the score
ladder. One MLP predicts every task reward column of the dataset from the posterior features
[h, s] of the frozen world model (`train.reward_head` fits it; `Bundle` stores and loads it).
"""

from __future__ import annotations

import torch

from genrl_core.errors import BundleError
from genrl_core.models.nets import mlp


class RewardHeads(torch.nn.Module):
    """feature [h, s] -> one predicted reward per task (per agent step, as the dataset stores it)."""

    def __init__(self, feat_dim: int, tasks: list[str], hidden: int = 256):
        super().__init__()
        self.tasks = list(tasks)
        self.net = mlp(feat_dim, hidden, len(tasks), layers=2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def column(self, task: str) -> int:
        if task not in self.tasks:
            raise BundleError(f"no oracle reward head for {task!r}; the bundle has: {', '.join(self.tasks)}")
        return self.tasks.index(task)
