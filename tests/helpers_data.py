"""Synthetic episodes in the store format, for data-layer tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from genrl_core.data import FORMAT_VERSION


def make_episode(
    T: int,
    *,
    action_dim: int = 6,
    state_dim: int = 18,
    task_names: tuple[str, ...] = ("run", "walk"),
    task: str = "run",
    policy: str = "random",
    seed: int = 0,
    size: int = 64,
    action_value: float | None = None,
) -> dict[str, Any]:
    """A valid episode of ``T`` steps with random content.

    ``action_value`` fills every action after t=0 with that constant, so tests
    can tell which episode a sampled window came from.
    """
    rng = np.random.default_rng(seed)
    action = rng.uniform(-1, 1, (T, action_dim)).astype(np.float32)
    if action_value is not None:
        action[:] = action_value
    action[0] = 0.0  # no action led to the reset observation
    task_rewards = rng.uniform(0, 1, (T, len(task_names))).astype(np.float32)
    task_rewards[0] = 0.0
    is_first = np.zeros(T, bool)
    is_first[0] = True
    is_last = np.zeros(T, bool)
    is_last[-1] = True
    return {
        "image": rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8),
        "action": action,
        "reward": task_rewards[:, task_names.index(task)].copy(),
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": np.zeros(T, bool),
        "state": rng.normal(size=(T, state_dim)),
        "task_rewards": task_rewards,
        "task_names": np.array(task_names),
        "body": "cheetah",
        "task": task,
        "policy": policy,
        "seed": seed,
        "format_version": FORMAT_VERSION,
    }
