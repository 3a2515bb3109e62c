"""Stickman: our own planar humanoid (torso, head, two arms, two legs), in the manner of
dm_control's walker, for GenRL's fourth body.

It moves in the x-z plane like the walker (root slide x and z, root hinge about y), so the same
side camera, random poses and spin features serve it. Arms give it what the walker lacks: hands
that can be raised, reach the floor or swing. Its standard tasks (stand, walk, run) score as the
walker's do, with the standing height scaled to its own, through a dm_control task that the
vectorised rewards in tasks.py are checked against.
"""

from __future__ import annotations

import numpy as np
from dm_control.suite import base, walker
from dm_control.suite.utils import randomizers
from dm_control.utils import rewards

# Standing, the torso's centre is 1.2 m up (legs 0.9 m, half a torso 0.25 m, a foot's radius);
# like the walker's 1.2 m of 1.3 m, standing counts from a little below that.
STAND_HEIGHT = 1.1
WALK_SPEED, RUN_SPEED = 1.0, 8.0

# one segment of a limb: body name, joint name, joint range (degrees), capsule length, capsule radius
Segment = tuple[str, str, str, float, float]


def _limb(side: str, pos: str, segments: list[Segment], end: str) -> str:
    """A chain of capsules hanging down from `pos`, each segment jointed to the end of the one above; `end`
    (a foot, a hand) goes inside the last segment. Names are prefixed with the side."""
    inner = end
    offsets = [pos] + [f"0 0 -{seg[3]}" for seg in segments[:-1]]
    for (body, joint, joint_range, length, radius), at in reversed(list(zip(segments, offsets, strict=True))):
        inner = f"""
      <body name="{side}_{body}" pos="{at}">
        <joint name="{side}_{joint}" range="{joint_range}"/>
        <geom name="{side}_{body}" fromto="0 0 0 0 0 -{length}" size="{radius}"/>{inner}
      </body>"""
    return inner


def _leg(side: str, y: float) -> str:
    foot = f"""
      <body name="{side}_foot" pos="0 0 -0.45">
        <joint name="{side}_ankle" range="-45 45"/>
        <geom name="{side}_foot" fromto="-0.04 0 0 0.14 0 0" size="0.045"/>
      </body>"""
    return _limb(side, f"0 {y} -0.25", [("thigh", "hip", "-30 120", 0.45, 0.05),
                                        ("leg", "knee", "-150 0", 0.45, 0.04)], foot)


def _arm(side: str, y: float) -> str:
    hand = f'\n      <geom name="{side}_hand" type="sphere" pos="0 0 -0.26" size="0.045"/>'
    return _limb(side, f"0 {y} 0.2", [("upper_arm", "shoulder", "-180 60", 0.28, 0.035),
                                      ("forearm", "elbow", "-150 0", 0.24, 0.03)], hand)


def stickman_xml() -> str:
    """The MJCF of the stickman (dm_control's shared skybox, visual and materials assets)."""
    legs = _leg("right", -0.05) + _leg("left", 0.05)
    arms = _arm("right", -0.1) + _arm("left", 0.1)
    motors = "\n".join(f'    <motor name="{side}_{joint}" joint="{side}_{joint}" gear="{gear}"/>'
                       for side in ("right", "left")
                       for joint, gear in (("hip", 100), ("knee", 50), ("ankle", 20), ("shoulder", 20), ("elbow", 10)))
    return f"""<mujoco model="planar stickman">
  <include file="./common/visual.xml"/>
  <include file="./common/skybox.xml"/>
  <include file="./common/materials.xml"/>
  <option timestep="0.0025"/>
  <statistic extent="2" center="0 0 1"/>
  <default>
    <joint damping=".1" armature="0.01" limited="true" solimplimit="0 .99 .01"/>
    <geom contype="1" conaffinity="0" friction=".7 .1 .1"/>
    <motor ctrlrange="-1 1" ctrllimited="true"/>
    <default class="stickman">
      <geom material="self" type="capsule"/>
      <joint axis="0 -1 0"/>
    </default>
  </default>
  <worldbody>
    <geom name="floor" type="plane" conaffinity="1" pos="248 0 0" size="250 .8 .2" material="grid" zaxis="0 0 1"/>
    <body name="torso" pos="0 0 1.2" childclass="stickman">
      <light name="light" pos="0 0 2" mode="trackcom"/>
      <camera name="side" pos="0 -2.4 .8" euler="60 0 0" mode="trackcom"/>
      <joint name="rootz" axis="0 0 1" type="slide" limited="false" armature="0" damping="0"/>
      <joint name="rootx" axis="1 0 0" type="slide" limited="false" armature="0" damping="0"/>
      <joint name="rooty" axis="0 1 0" type="hinge" limited="false" armature="0" damping="0"/>
      <geom name="torso" fromto="0 0 -0.25 0 0 0.25" size="0.07"/>
      <geom name="head" type="sphere" pos="0 0 0.38" size="0.1"/>{legs}{arms}
    </body>
  </worldbody>
  <sensor>
    <subtreelinvel name="torso_subtreelinvel" body="torso"/>
  </sensor>
  <actuator>
{motors}
  </actuator>
</mujoco>"""


class Physics(walker.Physics):
    """The stickman's physics: the walker's torso readings (height, upright, speed) serve it unchanged."""


class Stickman(base.Task):
    """Stand (move_speed 0) or move forward, rewarded as dm_control's walker is, at the stickman's height."""

    def __init__(self, move_speed: float = 0.0, random=None):
        self._move_speed = move_speed
        super().__init__(random=random)

    def initialize_episode(self, physics: Physics) -> None:
        # random joint angles and a random lean, then it falls and must get up, as the walker
        randomizers.randomize_limited_and_rotational_joints(physics, self.random)
        super().initialize_episode(physics)

    def get_observation(self, physics: Physics) -> dict[str, np.ndarray]:
        return {"orientations": physics.orientations(), "height": physics.torso_height(),
                "velocity": physics.velocity()}

    def get_reward(self, physics: Physics) -> float:
        standing = rewards.tolerance(physics.torso_height(), bounds=(STAND_HEIGHT, float("inf")),
                                     margin=STAND_HEIGHT / 2)
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        if self._move_speed == 0:
            return stand
        move = rewards.tolerance(physics.horizontal_velocity(), bounds=(self._move_speed, float("inf")),
                                 margin=self._move_speed / 2, value_at_margin=0.5, sigmoid="linear")
        return stand * (5 * move + 1) / 6

