"""64x64 pixel envs over dm_control bodies: action repeat, true rewards, physics state."""

from __future__ import annotations

import dataclasses

import numpy as np
from dm_control.rl import control
from dm_control.suite import cheetah, quadruped, walker

from genrl_core.envs import stickman
from genrl_core.envs.bodies import EPISODE_ENV_STEPS, SensorLayout, build_physics, features, get_body
from genrl_core.envs.tasks import TaskSpec, body_tasks, get_task
from genrl_core.errors import ConfigError

INIT_MODES = ("default", "random_pose")

# dm_control task objects that define the standard tasks' true reward and initial state
_STANDARD = {
    "walker_stand": lambda rng: walker.PlanarWalker(move_speed=0, random=rng),
    "walker_walk": lambda rng: walker.PlanarWalker(move_speed=walker._WALK_SPEED, random=rng),
    "walker_run": lambda rng: walker.PlanarWalker(move_speed=walker._RUN_SPEED, random=rng),
    "cheetah_run": lambda rng: cheetah.Cheetah(random=rng),
    "quadruped_walk": lambda rng: quadruped.Move(desired_speed=quadruped._WALK_SPEED, random=rng),
    "quadruped_run": lambda rng: quadruped.Move(desired_speed=quadruped._RUN_SPEED, random=rng),
    "stickman_stand": lambda rng: stickman.Stickman(0.0, random=rng),
    "stickman_walk": lambda rng: stickman.Stickman(stickman.WALK_SPEED, random=rng),
    "stickman_run": lambda rng: stickman.Stickman(stickman.RUN_SPEED, random=rng),
}


@dataclasses.dataclass
class StepResult:
    image: np.ndarray  # (H, W, 3) uint8
    reward: float  # true reward of the env's task, summed over the repeated env steps
    task_rewards: np.ndarray  # (K,) float32, the same for every task of the body
    is_first: bool
    is_last: bool
    is_terminal: bool  # dm_control bodies never terminate; episodes end by time limit
    state: np.ndarray  # (S,) float64 physics state: qpos, qvel, act


def parse_target(name: str) -> tuple[str, TaskSpec | None]:
    """'walker' -> (walker, None); 'walker_run' -> (walker, spec). Errors list valid names."""
    if "_" not in name:
        get_body(name)
        return name, None
    spec = get_task(name)
    return spec.body, spec


class PixelEnv:
    """One dm_control body rendered at `size` px, actions in [-1, 1], `action_repeat` env steps per step.

    `task` is `body_task` (reward = that task's true reward) or a bare body name (reward 0).
    Every step also reports the true reward of all the body's tasks, so data collected for
    one task can be scored on any other.
    """

    def __init__(self, task: str, size: int = 64, action_repeat: int = 2, seed: int | None = None,
                 episode_env_steps: int = EPISODE_ENV_STEPS, init: str = "default"):
        if init not in INIT_MODES:
            raise ConfigError(f"unknown init {init!r}; valid: {', '.join(INIT_MODES)}")
        if action_repeat < 1 or episode_env_steps % action_repeat:
            raise ConfigError(f"action_repeat {action_repeat} must be >= 1 and divide {episode_env_steps}")
        self.body_name, self.task = parse_target(task)
        self.body = get_body(self.body_name)
        self.name = task
        self.size, self.action_repeat, self.init = size, action_repeat, init
        self.episode_steps = episode_env_steps // action_repeat
        self.random = np.random.RandomState(seed)
        self.physics = build_physics(self.body_name)
        # Fast headless rendering: shadows and multisampling cost time on every frame and look nearly the
        # same at this size (benchmarks/collect_speed.py times the loop against dm_control's own settings).
        self.physics.model.vis.quality.shadowsize = 0
        self.physics.model.vis.quality.offsamples = 0
        make_task = _STANDARD.get(self.task.name if self.task else "")
        self._dm_task = make_task(self.random) if make_task else self.body.base_task(random=self.random)
        self._score_with_dm = make_task is not None
        self.layout = SensorLayout(self.physics.model.ptr, self.body_name)
        self.task_specs = body_tasks(self.body_name)
        self.task_names = [t.name for t in self.task_specs]
        self.action_dim = int(self.physics.model.nu)
        self.n_sub_steps = round(self.body.control_timestep / self.physics.model.opt.timestep)
        self._t = 0

    # ------------------------------------------------------------------ public
    def reset(self, init: str | None = None) -> StepResult:
        init = init or self.init
        if init not in INIT_MODES:
            raise ConfigError(f"unknown init {init!r}; valid: {', '.join(INIT_MODES)}")
        with self.physics.reset_context():
            self._dm_task.initialize_episode(self.physics)
        if init == "random_pose":
            self._random_pose()
        self.physics.data.time = 0.0
        self._t = 0
        return self._result(0.0, first=True)

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action shape {action.shape} != ({self.action_dim},)")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        action = np.clip(action, -1.0, 1.0)
        reward = 0.0
        totals = np.zeros(len(self.task_specs), np.float64)
        for _ in range(self.action_repeat):
            self._dm_task.before_step(action, self.physics)
            try:
                self.physics.step(self.n_sub_steps)
            except control.PhysicsError:  # diverged simulation: treat as the end of the episode
                self._t = self.episode_steps
                return self._result(reward, task_rewards=totals)
            task_rewards = self.task_rewards()
            totals += task_rewards
            if self._score_with_dm:
                reward += float(self._dm_task.get_reward(self.physics))
            elif self.task is not None:
                reward += float(task_rewards[self.task_names.index(self.task.name)])
        self._t += 1
        return self._result(reward, task_rewards=totals)

    def task_rewards(self) -> np.ndarray:
        """True reward of every task of the body in the current physics state."""
        feats = self.features()
        return np.array([float(t.reward(feats)) for t in self.task_specs])

    def features(self) -> dict[str, np.ndarray]:
        return features(self.layout, self.physics.data.sensordata.copy(), self.physics.data.qvel.copy())

    def render(self) -> np.ndarray:
        return self.physics.render(self.size, self.size, camera_id=self.body.camera)

    def get_state(self) -> np.ndarray:
        return self.physics.get_state().copy()

    # ---------------------------------------------------------------- internal
    def _result(self, reward: float, first: bool = False, task_rewards: np.ndarray | None = None) -> StepResult:
        if task_rewards is None:
            task_rewards = np.zeros(len(self.task_specs))
        return StepResult(
            image=self.render(), reward=reward, task_rewards=task_rewards.astype(np.float32), is_first=first,
            is_last=self._t >= self.episode_steps, is_terminal=False, state=self.get_state(),
        )

    def set_pose(self, qpos: dict[str, float | list[float]], qvel: dict[str, float | list[float]] | None = None,
                 drop: bool = True) -> None:
        """Set named joints (and velocities); with `drop`, lower/raise the body onto the floor.

        Used for random initial states and to check what each custom reward rewards.
        """
        with self.physics.reset_context():
            for name, value in qpos.items():
                self.physics.named.data.qpos[name] = value
            if drop:
                self._drop_to_floor()
        for name, value in (qvel or {}).items():
            self.physics.named.data.qvel[name] = value
        self.physics.forward()

    def _floor_contacts(self) -> int:
        """Contacts with the floor only: limbs touching each other must not count, or lifting never ends."""
        data, on_floor = self.physics.data, self.physics.model.geom_bodyid == 0
        con = data.contact[: data.ncon]
        return int(np.sum(on_floor[con.geom1] | on_floor[con.geom2]))

    def _drop_to_floor(self, max_lift: float = 5.0) -> None:
        """Put the root at the lowest height (1 cm steps) at which nothing touches the floor."""
        model, qpos = self.physics.model, self.physics.data.qpos
        root = model.joint(self.body.root_height_joint)
        z_adr = int(root.qposadr[0]) + (2 if root.type[0] == 0 else 0)  # free joint: x, y, z, quat
        qpos[z_adr] = 0.0 if root.type[0] == 0 else -model.body("torso").pos[2]  # torso centre at floor level
        self.physics.forward()
        for _ in range(int(max_lift / 0.01)):
            if not self._floor_contacts():
                return
            qpos[z_adr] += 0.01
            self.physics.forward()
        raise RuntimeError(f"{self.body_name}: no floor-free height found within {max_lift} m")

    def _random_pose(self) -> None:
        """Random joint angles and root orientation (lying, fallen, upside down), dropped onto
        the floor, with random velocities."""
        rng, model = self.random, self.physics.model
        pose: dict[str, float | list[float]] = {}
        for j in np.flatnonzero(model.jnt_limited == 1):
            pose[model.joint(j).name] = rng.uniform(*model.jnt_range[j])
        if self.body_name == "quadruped":
            quat = rng.randn(4)
            pose["root"] = [0.0, 0.0, 0.0, *(quat / np.linalg.norm(quat))]
        else:
            pose[self.body.root_spin_dof] = rng.uniform(-np.pi, np.pi)
        self.set_pose(pose)
        self.physics.data.qvel[:] = rng.normal(0.0, rng.uniform(0.0, 1.5), size=model.nv)
        self.physics.forward()
