"""dm_control bodies with the extra sensors our task rewards read.

Every reward (standard and custom) is a function of a few named *features* (torso
height, uprightness, foot heights, speeds...). We add MuJoCo sensors for them to each
body's MJCF, so the same vectorised feature code serves the real env (one state) and the
MPC experts (a whole batch of `mujoco.rollout` results). Sensors do not change dynamics.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import mujoco
import numpy as np
from dm_control.suite import cheetah, common, quadruped, walker

from genrl_core.envs import stickman
from genrl_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BodySpec:
    """What differs between dm_control bodies."""

    name: str
    physics_cls: type
    xml: Callable[[], str]
    extra_sensors: tuple[str, ...]
    camera: str  # side view, as in GenRL
    control_timestep: float  # seconds per env step
    root_height_joint: str  # joint (or free joint) whose z we move to drop the body on the floor
    root_spin_dof: str  # joint whose velocity is the pitch/roll spin used by flip/roll rewards
    base_task: Callable[..., object]  # dm_control task class used for the default initial state


def _sensor_block(lines: tuple[str, ...]) -> str:
    return "\n".join(f"    {line}" for line in lines)


def _add_sensors(xml: str, lines: tuple[str, ...]) -> str:
    if "<sensor>" in xml:
        return xml.replace("<sensor>", "<sensor>\n" + _sensor_block(lines), 1)
    return xml.replace("</mujoco>", f"  <sensor>\n{_sensor_block(lines)}\n  </sensor>\n</mujoco>")


_TORSO = (
    '<framepos name="torso_pos" objtype="xbody" objname="torso"/>',
    '<framezaxis name="torso_zaxis" objtype="xbody" objname="torso"/>',
    '<framexaxis name="torso_xaxis" objtype="xbody" objname="torso"/>',
)

BODIES: dict[str, BodySpec] = {
    "walker": BodySpec(
        name="walker",
        physics_cls=walker.Physics,
        xml=lambda: walker.get_model_and_assets()[0].decode(),
        extra_sensors=_TORSO
        + (
            '<framepos name="right_foot_pos" objtype="geom" objname="right_foot"/>',
            '<framepos name="left_foot_pos" objtype="geom" objname="left_foot"/>',
            '<framepos name="right_shin_pos" objtype="xbody" objname="right_leg"/>',
            '<framepos name="left_shin_pos" objtype="xbody" objname="left_leg"/>',
        ),
        camera="side",
        control_timestep=0.025,
        root_height_joint="rootz",
        root_spin_dof="rooty",
        base_task=functools.partial(walker.PlanarWalker, move_speed=0),
    ),
    "cheetah": BodySpec(
        name="cheetah",
        physics_cls=cheetah.Physics,
        xml=lambda: cheetah.get_model_and_assets()[0].decode(),
        extra_sensors=_TORSO
        + (
            '<framepos name="bfoot_pos" objtype="geom" objname="bfoot"/>',
            '<framepos name="ffoot_pos" objtype="geom" objname="ffoot"/>',
            '<framepos name="head_pos" objtype="geom" objname="head"/>',
        ),
        camera="side",
        control_timestep=0.01,
        root_height_joint="rootz",
        root_spin_dof="rooty",
        base_task=cheetah.Cheetah,
    ),
    "quadruped": BodySpec(
        name="quadruped",
        physics_cls=quadruped.Physics,
        xml=lambda: quadruped.make_model(floor_size=100).decode(),
        extra_sensors=_TORSO
        + tuple(
            f'<framepos name="{toe}_pos" objtype="site" objname="{toe}"/>'
            for toe in ("toe_front_left", "toe_front_right", "toe_back_right", "toe_back_left")
        ),
        camera="y",
        control_timestep=0.02,
        root_height_joint="root",
        root_spin_dof="root",
        base_task=functools.partial(quadruped.Move, desired_speed=0.0),
    ),
    "stickman": BodySpec(
        name="stickman",
        physics_cls=stickman.Physics,
        xml=stickman.stickman_xml,
        extra_sensors=_TORSO
        + tuple(f'<framepos name="{side}_{part}_pos" objtype="{kind}" objname="{side}_{obj}"/>'
                for side in ("right", "left")
                for part, kind, obj in (("foot", "geom", "foot"), ("shin", "xbody", "leg"), ("hand", "geom", "hand")))
        + ('<framepos name="head_pos" objtype="geom" objname="head"/>',),
        camera="side",
        control_timestep=0.025,
        root_height_joint="rootz",
        root_spin_dof="rooty",
        base_task=stickman.Stickman,
    ),
}

EPISODE_ENV_STEPS = 1000  # env steps per episode for every body, as in GenRL


def get_body(name: str) -> BodySpec:
    if name not in BODIES:
        raise ConfigError(f"unknown body {name!r}; valid bodies: {', '.join(sorted(BODIES))}")
    return BODIES[name]


def build_physics(body: str):
    """A dm_control Physics of `body` with our feature sensors added."""
    spec = get_body(body)
    return spec.physics_cls.from_xml_string(_add_sensors(spec.xml(), spec.extra_sensors), common.ASSETS)


class SensorLayout:
    """Name -> slice into sensordata, plus qpos/qvel addresses, for vectorised feature reads."""

    def __init__(self, model: mujoco.MjModel, body: str):
        self.body = get_body(body)
        self.nq, self.nv = model.nq, model.nv
        self.slices: dict[str, slice] = {}
        for i in range(model.nsensor):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SENSOR, i)
            adr, dim = model.sensor_adr[i], model.sensor_dim[i]
            self.slices[name] = slice(adr, adr + dim)
        spin = model.joint(self.body.root_spin_dof)
        # planar bodies spin about a hinge; the quadruped's free joint has angular dofs 3..5
        self.spin_dof = int(spin.dofadr[0]) + (3 if spin.type[0] == mujoco.mjtJoint.mjJNT_FREE else 0)

    def sensor(self, sensordata: np.ndarray, name: str) -> np.ndarray:
        return sensordata[..., self.slices[name]]


def features(layout: SensorLayout, sensordata: np.ndarray, qvel: np.ndarray) -> dict[str, np.ndarray]:
    """Named scalar features, each with the leading (batch...) shape of the inputs."""
    s = functools.partial(layout.sensor, sensordata)
    f = {
        "torso_height": s("torso_pos")[..., 2],
        "torso_x": s("torso_pos")[..., 0],
        "upright": s("torso_zaxis")[..., 2],  # = xmat zz: 1 upright, -1 upside down
        "nose_up": s("torso_xaxis")[..., 2],  # z of the body's forward axis: 1 pointing up
        "spin": qvel[..., layout.spin_dof],  # pitch rate (planar) / roll rate (quadruped), rad/s
    }
    body = layout.body.name
    if body in ("walker", "cheetah", "stickman"):
        f["speed"] = s("torso_subtreelinvel")[..., 0]  # centre-of-mass forward speed, m/s
    if body in ("walker", "stickman"):
        for side in ("right", "left"):
            f[f"{side}_foot_height"] = s(f"{side}_foot_pos")[..., 2]
            f[f"{side}_shin_height"] = s(f"{side}_shin_pos")[..., 2]  # mid-shin
    if body == "stickman":
        for side in ("right", "left"):
            f[f"{side}_hand_height"] = s(f"{side}_hand_pos")[..., 2]
        f["head_height"] = s("head_pos")[..., 2]
    if body == "cheetah":
        f["bfoot_height"] = s("bfoot_pos")[..., 2]
        f["ffoot_height"] = s("ffoot_pos")[..., 2]
        f["head_height"] = s("head_pos")[..., 2]
    if body == "quadruped":
        f["speed"] = s("velocimeter")[..., 0]  # torso-frame forward speed, as dm_control's Move
        toes = [s(f"toe_{leg}_pos")[..., 2] for leg in ("front_left", "front_right", "back_right", "back_left")]
        f["front_toe_height"] = np.maximum(toes[0], toes[1])
        f["back_toe_height"] = np.maximum(toes[2], toes[3])
    return f
