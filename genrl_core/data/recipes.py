"""Dataset recipes: which policies, how many episodes each, per body.

GenRL trained each body on exploration data plus expert data for every standard task; we
mix uniformly random and random-pose episodes (diverse states: lying, fallen, upside down)
with MPC-expert episodes of the standard tasks and a few custom ones. The other custom tasks
(walker flip, high_kick, one_foot, legs_up; cheetah flip, run_backward, ...) get no expert
data on purpose: they are the held-out tasks of the evaluation, as in the paper.
"""

from __future__ import annotations

from genrl_core.errors import ConfigError

POLICY_HELP = ("random | reset | expert:TASK (e.g. expert:walker_run) | learned:POLICY_DIR (a policy learned "
               "on --bundle, e.g. checkpoints/walker/policies/walk-forward-900551a8)")

RECIPES: dict[str, dict[str, list[tuple[str, int]]]] = {
    "walker": {
        "default": [
            ("random", 40),
            ("reset", 40),
            ("expert:walker_stand", 16),
            ("expert:walker_walk", 16),
            ("expert:walker_run", 16),
            ("expert:walker_lying_down", 8),
            ("expert:walker_sit_knees", 8),
        ],
        "tiny": [("random", 2), ("reset", 1)],
    },
    "cheetah": {
        "default": [
            ("random", 40),
            ("reset", 40),
            ("expert:cheetah_run", 16),
            ("expert:cheetah_standing", 8),
            ("expert:cheetah_lying_down", 8),
        ],
        "tiny": [("random", 2), ("reset", 1)],
    },
    "quadruped": {
        "default": [("random", 60), ("reset", 60)],
        "tiny": [("random", 2), ("reset", 1)],
    },
    "stickman": {  # as the walker's; `genrl practice` oracle drivers add the gaits MPC does poorly
        "default": [
            ("random", 40),
            ("reset", 40),
            ("expert:stickman_stand", 16),
            ("expert:stickman_walk", 16),
            ("expert:stickman_run", 16),
            ("expert:stickman_lying_down", 8),
            ("expert:stickman_sit_knees", 8),
        ],
        "tiny": [("random", 2), ("reset", 1)],
    },
}


def get_recipe(body: str, name: str) -> list[tuple[str, int]]:
    if body not in RECIPES:
        raise ConfigError(f"no recipes for body {body!r}; bodies with recipes: {', '.join(RECIPES)}")
    if name not in RECIPES[body]:
        raise ConfigError(f"unknown recipe {name!r} for {body}; valid: {', '.join(RECIPES[body])}")
    return RECIPES[body][name]
