"""The stickman body: our own MJCF planar humanoid, its tasks, captions and recipe."""

import numpy as np

from genrl_core.data.experts import expert_settings
from genrl_core.data.recipes import get_recipe
from genrl_core.envs import PixelEnv, body_tasks
from genrl_core.vlm.captions import window_concepts

ARMS_UP = {"right_shoulder": -np.pi, "left_shoulder": -np.pi}


def _window(env: PixelEnv, steps: int = 8) -> dict[str, np.ndarray]:
    """Per-step features of a window, the body held in its pose (no actions, no time passing)."""
    feats = [env.features() for _ in range(steps)]
    return {k: np.array([f[k] for f in feats], dtype=np.float64) for k in feats[0]}


def test_it_stands_on_the_floor_with_arms_and_head():
    env = PixelEnv("stickman_stand", seed=0, size=64)
    assert env.action_dim == 10  # hips, knees, ankles, shoulders, elbows
    env.reset()
    env.set_pose({})
    f = env.features()
    assert 1.15 < f["torso_height"] < 1.25 and f["head_height"] > f["torso_height"] + 0.3
    assert max(f["right_foot_height"], f["left_foot_height"]) < 0.06  # feet on the floor
    # standing still upright is what the stand task rewards fully, as dm_control's walker does
    assert env._dm_task.get_reward(env.physics) > 0.99
    image = env.render()
    assert image.shape == (64, 64, 3) and image.std() > 10


def test_it_falls_without_control_and_the_stand_reward_drops():
    env = PixelEnv("stickman_stand", seed=0, size=16)
    env.reset()
    env.set_pose({})
    rewards = [env.step(np.zeros(env.action_dim)).reward for _ in range(60)]
    assert env.features()["torso_height"] < 0.6
    assert rewards[-1] < 0.5 * rewards[0]


def test_hands_up_is_a_caption_concept_only_with_both_hands_above_the_head():
    env = PixelEnv("stickman", seed=0, size=16)
    env.reset()
    env.set_pose(ARMS_UP)
    assert window_concepts(_window(env), "stickman")[:1] == ["standing"]
    assert "hands_up" in window_concepts(_window(env), "stickman")
    env.set_pose({"right_shoulder": -np.pi})  # one hand only
    assert "hands_up" not in window_concepts(_window(env), "stickman")


def test_every_expert_of_the_default_recipe_has_settings():
    experts = [p.split(":", 1)[1] for p, _ in get_recipe("stickman", "default") if p.startswith("expert:")]
    assert {"stickman_stand", "stickman_walk", "stickman_run"} <= set(experts)
    tasks = {t.name for t in body_tasks("stickman")}
    for task in experts:
        assert task in tasks and expert_settings(task)["task"] == task
