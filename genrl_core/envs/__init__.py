"""dm_control pixel envs (64x64, action repeat 2) and the task registry."""

from genrl_core.envs.bodies import BODIES, EPISODE_ENV_STEPS, get_body
from genrl_core.envs.pixel_env import INIT_MODES, PixelEnv, StepResult, parse_target
from genrl_core.envs.tasks import TASKS, TaskSpec, body_tasks, get_task

__all__ = ["BODIES", "EPISODE_ENV_STEPS", "INIT_MODES", "TASKS", "PixelEnv", "StepResult", "TaskSpec",
           "body_tasks", "get_body", "get_task", "parse_target"]
