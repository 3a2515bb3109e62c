"""Scoring a learned policy in the real simulator with the task's true reward (docs/GENRL.md section 7).

The policy acts from 64x64 pixels only: each frame goes through the world model's posterior,
h is carried by the RSSM recurrence, the actor's mean action is applied with action repeat 2
for 1000 env steps. Normalised score = (return - random) / (expert - random).

A policy's folder may keep its real-env record (`genrl evaluate --record`): `real.json` (the score,
`RECORD_KEYS` of run_policy's result, no server paths) and `real.mp4` (episode 0), which the app
shows for a policy no job of its own has evaluated (the bundle's shipped policies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.fileio import atomic_write
from genrl_core.models.actor_critic import Actor, feature
from genrl_core.models.rssm import RSSM
from genrl_core.video import write_mp4

# (random, expert) returns per task, and where each number comes from.
#  paper: GenRL (Mazzaglia et al. 2024), the reference returns in docs/GENRL.md section 7.
#  ours-random: mean of the 40 random-policy episodes of the body's default dataset (seed 0).
#  ours-expert: best episode of our MPC expert on the true state (checkpoints/experts, dataset).
#  ceiling: no expert exists for a held-out task; 1000 is the most the reward can give.
_REFERENCES: dict[str, dict[str, tuple[float, float]]] = {  # source -> task -> (random, expert)
    "paper": {"walker_stand": (150.0, 970.0), "walker_walk": (45.0, 960.0), "walker_run": (30.0, 770.0),
              "cheetah_run": (9.0, 890.0), "quadruped_stand": (15.0, 990.0), "quadruped_walk": (10.0, 960.0),
              "quadruped_run": (10.0, 930.0),
              "stickman_stand": (70.0, 970.0), "stickman_walk": (35.0, 960.0), "stickman_run": (25.0, 830.0)},
    "ours-random / ours-expert": {"walker_lying_down": (769.0, 987.0), "walker_sit_knees": (28.0, 975.0),
                                  "cheetah_standing": (115.6, 975.6)},
    "ours-random / ceiling": {"walker_legs_up": (176.0, 1000.0), "walker_one_foot": (12.0, 1000.0),
                              "walker_high_kick": (9.0, 1000.0), "walker_flip": (399.0, 1000.0),
                              # the MPC expert cannot turn the cheetah over (returns below 1)
                              "cheetah_lying_down": (13.2, 1000.0), "cheetah_run_backward": (22.3, 1000.0),
                              "cheetah_flip": (211.6, 1000.0)},
}
REFERENCE_RETURNS: dict[str, tuple[float, float, str]] = {
    task: (*returns, source) for source, tasks in _REFERENCES.items() for task, returns in tasks.items()}

# Plain-language descriptions used to pick a default evaluation task for a prompt.
TASK_PHRASES: dict[str, str] = {
    "walker_stand": "standing up straight",
    "walker_walk": "walking forward",
    "walker_run": "running forward fast",
    "walker_lying_down": "lying down on the ground",
    "walker_legs_up": "lying on the back with the legs up in the air",
    "walker_one_foot": "standing on one foot",
    "walker_high_kick": "doing a high kick",
    "walker_sit_knees": "kneeling on the knees",
    "walker_flip": "doing backflips",
    "cheetah_run": "running forward fast",
    "cheetah_run_backward": "running backward",
    "cheetah_standing": "standing up on the back legs",
    "cheetah_lying_down": "lying on its back",
    "cheetah_flip": "doing flips",
    "stickman_stand": "standing up straight",
    "stickman_walk": "walking forward",
    "stickman_run": "running forward fast",
    "stickman_hands_up": "standing with both hands raised above the head",
    "stickman_lying_down": "lying down on the ground",
    "stickman_legs_up": "lying on the back with the legs up in the air",
    "stickman_one_foot": "standing on one foot",
    "stickman_high_kick": "doing a high kick",
    "stickman_sit_knees": "kneeling on the knees",
    "stickman_flip": "doing backflips",
}


def normalised_score(task: str, ret: float) -> float | None:
    if task not in REFERENCE_RETURNS:
        return None
    low, high, _ = REFERENCE_RETURNS[task]
    return (ret - low) / (high - low)


@torch.no_grad()
def random_returns(body: str, episodes: int, seed: int) -> dict[str, float]:
    """Mean true return of a uniform random policy for every task of the body, from the same
    episodes (each step reports all tasks' rewards; standard ones equal dm_control's)."""
    totals = []
    for i in range(episodes):
        env, rng = PixelEnv(body, seed=seed + i), np.random.default_rng(seed + i)
        step, total = env.reset(), 0.0
        while not step.is_last:
            step = env.step(rng.uniform(-1, 1, env.action_dim))
            total = total + step.task_rewards
        totals.append(total)
    return dict(zip(env.task_names, np.mean(totals, 0).tolist(), strict=True))


def run_policy(wm: RSSM, actor: Actor, task: str, episodes: int = 1, seed: int = 0,
               video: str | Path | None = None, max_steps: int | None = None, keep_actions: bool = False,
               keep_latents: bool = False) -> dict:
    """Roll `episodes` real episodes in lockstep (one batched model call per step). `keep_actions`:
    also return episode 0's actions; `keep_latents`: every episode's filtered states, actions and
    rewards per step, as tensors (episodes, steps, ...) under "latents"."""
    device = next(wm.parameters()).device
    envs = [PixelEnv(task, seed=seed + i) for i in range(episodes)]
    results = [env.reset() for env in envs]
    frames = [results[0].image]
    returns = np.zeros(episodes)
    deter = wm.initial_deter(episodes, device)
    stoch = torch.zeros(episodes, wm.cfg.stoch, wm.cfg.classes, device=device)
    action = torch.zeros(episodes, envs[0].action_dim, device=device)
    steps, actions, latents = 0, [], []
    while not results[0].is_last and (max_steps is None or steps < max_steps):
        images = torch.from_numpy(np.stack([r.image for r in results])).to(device)
        deter, stoch = wm.obs_step(deter, stoch, action, images)
        action = actor.act(feature(deter, stoch))
        results = [env.step(a) for env, a in zip(envs, action.cpu().numpy(), strict=True)]
        if keep_actions:
            actions.append(action[0].cpu().numpy())
        if keep_latents:
            latents.append({"deter": deter, "stoch": stoch, "action": action,
                            "reward": torch.tensor([r.reward for r in results], device=device)})
        returns += [r.reward for r in results]
        frames.append(results[0].image)
        steps += 1
    if video is not None:
        write_mp4(video, np.stack(frames), fps=30, upscale=2)
    mean = float(returns.mean())
    low, high, source = REFERENCE_RETURNS.get(task, (None, None, None))
    truncated = not results[0].is_last  # a part of an episode is not comparable with the references
    return {"task": task, "returns": [round(float(r), 1) for r in returns], "mean_return": round(mean, 1),
            "normalised": None if low is None or truncated else round(normalised_score(task, mean), 3),
            "truncated": truncated,
            "random_return": low, "expert_return": high, "reference_source": source,
            "video": str(video) if video is not None else None, "env_steps": steps * envs[0].action_repeat,
            **({"actions": np.stack(actions)} if keep_actions else {}),
            **({"latents": {key: torch.stack([row[key] for row in latents], 1) for key in latents[0]}}
               if keep_latents else {})}


# a policy folder's real-env record: its score and episode 0's video
RECORD_FILE = "real.json"
RECORD_VIDEO = "real.mp4"
# what the record keeps of a run_policy result (plus `episodes` and `seeds`); the references come
# from REFERENCE_RETURNS, which may be revised, so a record never stores them
RECORD_KEYS = ("task", "returns", "mean_return", "normalised")


def write_record(folder: str | Path, result: dict[str, Any], seed: int) -> Path:
    """Keep a whole-episode run_policy `result` (its episodes from `seed` on; episode 0's video
    already at `folder/RECORD_VIDEO`) as `folder/RECORD_FILE`."""
    if result.get("truncated"):
        raise ValueError("a record keeps whole episodes only: evaluate without max_steps")
    episodes = len(result["returns"])
    record = {**{key: result[key] for key in RECORD_KEYS}, "episodes": episodes,
              "seeds": list(range(seed, seed + episodes))}
    text = json.dumps(record, indent=1) + "\n"
    return atomic_write(Path(folder) / RECORD_FILE, lambda f: f.write(text.encode()))


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """A policy folder's real-env record, with the task's references (`random_return`,
    `expert_return`) where it has them; None when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(key in record for key in RECORD_KEYS):
        return None
    low, high, _ = REFERENCE_RETURNS.get(record["task"], (None, None, None))
    return {**record, "random_return": low, "expert_return": high}
