"""dm_control pixel envs (64x64, action repeat 2) and the task registry."""

import contextlib

# Mesa's EGL/OSMesa drivers load their own LLVM when the first GL context is made; triton
# (which torch imports lazily, e.g. when an optimizer is built) bundles another LLVM and
# segfaults if it is loaded second. Loading triton's library first lets both coexist.
with contextlib.suppress(ImportError):
    import triton._C.libtriton  # noqa: F401

from genrl_core.envs.bodies import BODIES, EPISODE_ENV_STEPS, get_body
from genrl_core.envs.pixel_env import INIT_MODES, PixelEnv, StepResult, parse_target
from genrl_core.envs.tasks import STOCK_PROMPTS, TASKS, TaskSpec, body_tasks, get_task

__all__ = ["BODIES", "EPISODE_ENV_STEPS", "INIT_MODES", "STOCK_PROMPTS", "TASKS", "PixelEnv", "StepResult", "TaskSpec",
           "body_tasks", "get_body", "get_task", "parse_target"]
