"""GenRL core library: world model, VLM, connector, behaviour learning, envs and data."""

import os

# Headless MuJoCo rendering must be chosen before dm_control is first imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
