"""Task registry: `body_task` -> vectorised true reward over named features.

Standard tasks replicate dm_control's own reward exactly (tests check it against
dm_control on random states); the env scores them with dm_control itself. Custom tasks
follow GenRL's extra tasks and are built from dm_control's `rewards.tolerance`.
Every reward takes a dict of feature arrays (see `bodies.features`) of any batch shape
and returns per-env-step rewards in [0, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from dm_control.utils.rewards import tolerance

from genrl_core.envs import stickman
from genrl_core.errors import ConfigError

Features = dict[str, np.ndarray]
INF = float("inf")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str  # body_task
    body: str
    reward: Callable[[Features], np.ndarray]
    doc: str  # one line: what scores high
    standard: bool  # a dm_control suite task (else our own)


def _tol(x, lo=-INF, hi=INF, margin=0.0, sigmoid="gaussian", value_at_margin=0.1):
    return tolerance(np.asarray(x, dtype=np.float64), bounds=(lo, hi), margin=margin, sigmoid=sigmoid,
                     value_at_margin=value_at_margin)


def _linear(x, lo=-INF, hi=INF, margin=1.0, value_at_margin=0.0):
    return _tol(x, lo, hi, margin, "linear", value_at_margin)


# ---------------------------------------------------------------- walker
_WALKER_STAND_HEIGHT = 1.2


def _planar_stand(height: float) -> Callable[[Features], np.ndarray]:
    """dm_control's walker stand reward, for a planar body whose standing torso is above `height`."""
    def reward(f: Features) -> np.ndarray:
        standing = _tol(f["torso_height"], height, margin=height / 2)
        upright = (1 + f["upright"]) / 2
        return (3 * standing + upright) / 4

    return reward


def _planar_move(height: float, speed: float) -> Callable[[Features], np.ndarray]:
    """dm_control's walker walk/run reward: standing (as above) times moving forward at `speed`."""
    stand = _planar_stand(height)

    def reward(f: Features) -> np.ndarray:
        move = _linear(f["speed"], speed, margin=speed / 2, value_at_margin=0.5)
        return stand(f) * (5 * move + 1) / 6

    return reward


_walker_stand = _planar_stand(_WALKER_STAND_HEIGHT)


def _walker_lying(f: Features) -> np.ndarray:
    return _tol(f["torso_height"], hi=0.25, margin=0.5) * _tol(f["upright"], -0.2, 0.2, margin=0.8)


def _walker_upright_standing(f: Features, height: float = 1.0) -> np.ndarray:
    return _tol(f["torso_height"], height, margin=0.5) * _tol(f["upright"], 0.9, margin=0.9)


def _walker_feet(f: Features) -> tuple[np.ndarray, np.ndarray]:
    return f["right_foot_height"], f["left_foot_height"]


def _walker_legs_up(f: Features) -> np.ndarray:
    lowest_foot = np.minimum(*_walker_feet(f))
    return _walker_lying(f) * _tol(lowest_foot, 0.7, margin=0.6)


def _walker_one_foot(f: Features) -> np.ndarray:
    r, lft = _walker_feet(f)
    raised = np.maximum(_tol(r, 0.35, margin=0.3) * _tol(lft, hi=0.1, margin=0.2),
                        _tol(lft, 0.35, margin=0.3) * _tol(r, hi=0.1, margin=0.2))
    return _walker_upright_standing(f) * raised


def _walker_high_kick(f: Features) -> np.ndarray:
    highest_foot = np.maximum(*_walker_feet(f))
    return _tol(f["torso_height"], 0.9, margin=0.5) * _tol(f["upright"], 0.8, margin=0.9) * _tol(
        highest_foot, 1.1, margin=0.8)


def _walker_sit_knees(f: Features) -> np.ndarray:
    shins_down = _tol(np.maximum(f["right_shin_height"], f["left_shin_height"]), hi=0.12, margin=0.3)
    return shins_down * _tol(f["upright"], 0.9, margin=0.9) * _tol(f["torso_height"], 0.55, 0.9, margin=0.3)


def _stickman_hands_up(f: Features) -> np.ndarray:
    lower_hand = np.minimum(f["right_hand_height"], f["left_hand_height"])
    return _walker_upright_standing(f) * _tol(lower_hand - f["head_height"], 0.15, margin=0.4)


_SPIN_SPEED = 5.0  # rad/s, as GenRL's flip tasks


def _flip(f: Features) -> np.ndarray:
    return _linear(np.abs(f["spin"]), _SPIN_SPEED, margin=_SPIN_SPEED)


# ---------------------------------------------------------------- cheetah
_CHEETAH_RUN_SPEED = 10.0


def _cheetah_run(f: Features) -> np.ndarray:
    return _linear(f["speed"], _CHEETAH_RUN_SPEED, margin=_CHEETAH_RUN_SPEED)


def _cheetah_run_backward(f: Features) -> np.ndarray:
    return _linear(-f["speed"], _CHEETAH_RUN_SPEED, margin=_CHEETAH_RUN_SPEED)


def _cheetah_standing(f: Features) -> np.ndarray:
    return _tol(np.abs(f["nose_up"]), 0.85, margin=0.85) * _tol(f["torso_height"], 0.75, margin=0.4)


def _cheetah_lying_down(f: Features) -> np.ndarray:
    return _tol(f["upright"], hi=-0.8, margin=1.0) * _tol(f["torso_height"], hi=0.3, margin=0.3)


# ---------------------------------------------------------------- quadruped
def _quadruped_upright(f: Features) -> np.ndarray:  # dm_control's _upright_reward(deviation 0)
    return _linear(f["upright"], 1.0, margin=2.0)


def _quadruped_move(speed: float) -> Callable[[Features], np.ndarray]:
    def reward(f: Features) -> np.ndarray:
        return _quadruped_upright(f) * _linear(f["speed"], speed, margin=speed, value_at_margin=0.5)

    return reward


def _quadruped_stand(f: Features) -> np.ndarray:
    return _quadruped_upright(f) * _tol(f["torso_height"], 0.5, margin=0.3)


def _quadruped_lie_down(f: Features) -> np.ndarray:
    return _tol(f["upright"], 0.8, margin=1.0) * _tol(f["torso_height"], hi=0.25, margin=0.25)


def _quadruped_two_legs(f: Features) -> np.ndarray:
    return _tol(f["nose_up"], 0.7, margin=0.7) * _tol(f["torso_height"], 0.7, margin=0.4)


def _quadruped_jump(f: Features) -> np.ndarray:
    return _quadruped_upright(f) * _tol(f["torso_height"], 1.0, margin=0.5)


def _planar_poses(body: str) -> list[TaskSpec]:
    """The custom tasks both planar bipeds (walker, stickman) have: the same torso and foot readings, the same
    thresholds (the stickman stands at about the walker's height)."""
    return [
        TaskSpec(f"{body}_lying_down", body, _walker_lying, "torso below 0.25 m and horizontal", False),
        TaskSpec(f"{body}_legs_up", body, _walker_legs_up, "lying on the ground with both feet above 0.7 m", False),
        TaskSpec(f"{body}_one_foot", body, _walker_one_foot,
                 "standing upright on one foot, the other foot above 0.35 m", False),
        TaskSpec(f"{body}_high_kick", body, _walker_high_kick, "torso up and upright while one foot is above 1.1 m",
                 False),
        TaskSpec(f"{body}_sit_knees", body, _walker_sit_knees,
                 "kneeling: both shins on the ground, torso upright at 0.55-0.9 m", False),
        TaskSpec(f"{body}_flip", body, _flip, "torso spinning at >= 5 rad/s in either direction", False),
    ]


_TASKS = [
    TaskSpec("walker_stand", "walker", _walker_stand, "torso above 1.2 m and upright (dm_control)", True),
    TaskSpec("walker_walk", "walker", _planar_move(_WALKER_STAND_HEIGHT, 1.0),
             "stand and move forward at >= 1 m/s (dm_control)", True),
    TaskSpec("walker_run", "walker", _planar_move(_WALKER_STAND_HEIGHT, 8.0),
             "stand and move forward at >= 8 m/s (dm_control)", True),
    *_planar_poses("walker"),
    TaskSpec("cheetah_run", "cheetah", _cheetah_run, "forward speed >= 10 m/s (dm_control)", True),
    TaskSpec("cheetah_run_backward", "cheetah", _cheetah_run_backward, "backward speed >= 10 m/s", False),
    TaskSpec("cheetah_standing", "cheetah", _cheetah_standing,
             "body pointing up (standing on front or back legs), torso above 0.75 m", False),
    TaskSpec("cheetah_lying_down", "cheetah", _cheetah_lying_down, "on its back: upside down, torso below 0.3 m",
             False),
    TaskSpec("cheetah_flip", "cheetah", _flip, "torso spinning at >= 5 rad/s in either direction", False),
    TaskSpec("quadruped_stand", "quadruped", _quadruped_stand, "upright with the torso above 0.5 m", False),
    TaskSpec("quadruped_walk", "quadruped", _quadruped_move(0.5), "upright, forward speed >= 0.5 m/s (dm_control)",
             True),
    TaskSpec("quadruped_run", "quadruped", _quadruped_move(5.0), "upright, forward speed >= 5 m/s (dm_control)",
             True),
    TaskSpec("quadruped_lie_down", "quadruped", _quadruped_lie_down, "belly down with the torso below 0.25 m",
             False),
    TaskSpec("quadruped_two_legs", "quadruped", _quadruped_two_legs,
             "reared up on the hind legs: nose up, torso above 0.7 m", False),
    TaskSpec("quadruped_jump", "quadruped", _quadruped_jump, "upright with the torso above 1 m", False),
    TaskSpec("quadruped_roll", "quadruped", _flip, "rolling about its long axis at >= 5 rad/s", False),
    # the stickman's standard tasks are the walker's, at its height (envs/stickman.py scores them)
    TaskSpec("stickman_stand", "stickman", _planar_stand(stickman.STAND_HEIGHT),
             f"torso above {stickman.STAND_HEIGHT} m and upright (walker-style)", True),
    TaskSpec("stickman_walk", "stickman", _planar_move(stickman.STAND_HEIGHT, stickman.WALK_SPEED),
             f"stand and move forward at >= {stickman.WALK_SPEED:g} m/s (walker-style)", True),
    TaskSpec("stickman_run", "stickman", _planar_move(stickman.STAND_HEIGHT, stickman.RUN_SPEED),
             f"stand and move forward at >= {stickman.RUN_SPEED:g} m/s (walker-style)", True),
    TaskSpec("stickman_hands_up", "stickman", _stickman_hands_up,
             "standing upright with both hands 0.15 m or more above the head", False),
    *_planar_poses("stickman"),
]
TASKS: dict[str, TaskSpec] = {t.name: t for t in _TASKS}

# one plain prompt per task: what the benchmarks learn and score it with, and what the app offers as a
# body's examples (the walker's are the shipped policies' prompts: changing one changes their slugs)
_PLANAR_PROMPTS = {"stand": "stand up straight", "walk": "walk forward", "run": "run fast",
                   "lying_down": "lie down on the ground", "legs_up": "lie on your back with your legs up",
                   "one_foot": "stand on one foot", "high_kick": "do a high kick", "sit_knees": "kneel on your knees",
                   "flip": "do a backflip", "hands_up": "raise both hands above your head"}
STOCK_PROMPTS: dict[str, str] = {
    **{f"{body}_{task}": prompt for body in ("walker", "stickman") for task, prompt in _PLANAR_PROMPTS.items()
       if f"{body}_{task}" in TASKS},
    "cheetah_run": "run fast", "cheetah_run_backward": "run backwards", "cheetah_flip": "do a flip",
    "cheetah_standing": "stand up on your back legs", "cheetah_lying_down": "lie on your back",
    "quadruped_stand": "stand still", "quadruped_walk": "walk forward", "quadruped_run": "run fast",
    "quadruped_lie_down": "lie down on your belly", "quadruped_two_legs": "stand up on your hind legs",
    "quadruped_jump": "jump high", "quadruped_roll": "roll over",
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def body_tasks(body: str) -> list[TaskSpec]:
    return [t for t in _TASKS if t.body == body]
