"""Pixel envs and task rewards on the real dm_control physics."""

import numpy as np
import pytest

from genrl_core.envs import BODIES, TASKS, PixelEnv, body_tasks, get_task

D = np.deg2rad


@pytest.mark.parametrize("body", list(BODIES))
def test_shapes_dtypes_and_action_repeat(body):
    env = PixelEnv(body, seed=0)
    first = env.reset()
    assert first.image.shape == (64, 64, 3) and first.image.dtype == np.uint8
    assert first.is_first and not first.is_last and not first.is_terminal
    assert first.state.dtype == np.float64 and first.state.shape == (env.physics.get_state().size,)
    assert first.task_rewards.shape == (len(body_tasks(body)),)
    t0 = env.physics.data.time
    step = env.step(np.zeros(env.action_dim))
    # one agent step = action_repeat (2) env steps of the body's control timestep
    assert env.physics.data.time - t0 == pytest.approx(2 * BODIES[body].control_timestep)
    assert not step.is_first and step.image.std() > 0
    assert env.episode_steps == 500


def test_episode_ends_after_1000_env_steps():
    env = PixelEnv("walker_stand", seed=0, size=16)
    res, n = env.reset(), 0
    while not res.is_last:
        res, n = env.step(np.zeros(env.action_dim)), n + 1
    assert n == 500 and env.physics.data.time == pytest.approx(1000 * 0.025)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="walker_run"):
        PixelEnv("walker_jump")
    with pytest.raises(ValueError, match="cheetah, quadruped, stickman, walker"):
        PixelEnv("dog")
    env = PixelEnv("walker", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="action shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(env.action_dim, np.nan))


@pytest.mark.parametrize("name", [t.name for t in TASKS.values() if t.standard])
def test_standard_rewards_match_dm_control(name):
    """Our vectorised replica (used by the MPC experts and for relabelling) equals dm_control."""
    env = PixelEnv(name, seed=1, init="random_pose", size=16)
    env.reset()
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(25):
        env.step(rng.uniform(-1, 1, env.action_dim))
        ours.append(float(get_task(name).reward(env.features())))
        theirs.append(float(env._dm_task.get_reward(env.physics)))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.ptp(theirs) > 0  # the states visited do differ in reward


@pytest.mark.parametrize("task", ["walker_lying_down", "walker_walk"])
def test_step_reward_is_true_task_reward_summed_over_repeat(task):
    """An action-repeat-2 step earns what two single env steps earn, scored independently."""
    repeated = PixelEnv(task, seed=0, init="random_pose", size=16)
    single = PixelEnv(task, seed=0, init="random_pose", size=16, action_repeat=1)
    repeated.reset()
    single.reset()
    action = np.full(repeated.action_dim, 0.3)
    expected = 0.0
    for _ in range(2):
        single.step(action)
        expected += float(get_task(task).reward(single.features()))
    res = repeated.step(action)
    assert res.reward == pytest.approx(expected, rel=1e-5)
    assert res.task_rewards[repeated.task_names.index(task)] == pytest.approx(expected, rel=1e-5)


# (task, pose that should score high, pose that should not); poses are dropped onto the floor
HALF_PI = np.pi / 2
QUAD_LEGS_OUT = {f"pitch_{leg}": -1.0 for leg in ("front_left", "front_right", "back_left", "back_right")}
CUSTOM_POSES = [
    ("walker_lying_down", {"rooty": HALF_PI}, {}, {}),
    ("walker_legs_up", {"rooty": -HALF_PI, "right_hip": D(90), "left_hip": D(90)}, {"rooty": -HALF_PI}, {}),
    ("walker_one_foot", {"right_hip": D(90)}, {}, {}),
    ("walker_high_kick", {"left_hip": D(100)}, {"left_hip": D(45)}, {}),
    ("walker_sit_knees", {"right_knee": D(-90), "left_knee": D(-90), "right_hip": D(-10), "left_hip": D(-10)},
     {}, {}),
    ("cheetah_standing", {"rooty": -HALF_PI}, {}, {}),
    ("cheetah_lying_down", {"rooty": np.pi}, {}, {}),
    ("quadruped_stand", {}, QUAD_LEGS_OUT, {}),
    ("quadruped_lie_down", QUAD_LEGS_OUT, {}, {}),
    ("quadruped_two_legs", {"root": [0, 0, 0, np.cos(D(-40)), 0, np.sin(D(-40)), 0]},
     {"root": [0, 0, 0, np.cos(D(40)), 0, np.sin(D(40)), 0]}, {}),
    ("stickman_hands_up", {"right_shoulder": D(-180), "left_shoulder": D(-180)}, {}, {}),
    ("stickman_lying_down", {"rooty": HALF_PI}, {}, {}),
    ("stickman_legs_up", {"rooty": -HALF_PI, "right_hip": D(90), "left_hip": D(90)}, {"rooty": -HALF_PI}, {}),
    ("stickman_one_foot", {"right_hip": D(90)}, {}, {}),
    ("stickman_high_kick", {"left_hip": D(110)}, {"left_hip": D(45)}, {}),
    ("stickman_sit_knees", {"right_knee": D(-90), "left_knee": D(-90), "right_hip": D(-10), "left_hip": D(-10)},
     {}, {}),
]
# (task, velocities that should score high); the same pose at rest should not
CUSTOM_MOTIONS = [
    ("walker_flip", {"rooty": 8.0}),
    ("cheetah_flip", {"rooty": -7.0}),
    ("stickman_flip", {"rooty": 8.0}),
    ("cheetah_run_backward", {"rootx": -12.0}),
    ("quadruped_roll", {"root": [0, 0, 0, 6.0, 0, 0]}),
]


def _reward_at(task, qpos, qvel=None, drop=True):
    env = PixelEnv(task, seed=0, size=16)
    env.reset()
    env.set_pose(qpos, qvel, drop=drop)
    return float(get_task(task).reward(env.features()))


@pytest.mark.parametrize("task,good,bad,_", CUSTOM_POSES, ids=[p[0] for p in CUSTOM_POSES])
def test_custom_reward_poses(task, good, bad, _):
    assert _reward_at(task, good) > 0.7
    assert _reward_at(task, bad) < 0.2


@pytest.mark.parametrize("task,qvel", CUSTOM_MOTIONS, ids=[m[0] for m in CUSTOM_MOTIONS])
def test_custom_reward_motions(task, qvel):
    assert _reward_at(task, {}, qvel) > 0.7
    assert _reward_at(task, {}) < 0.2


def test_quadruped_jump_needs_height():
    assert _reward_at("quadruped_jump", {"root": [0, 0, 1.2, 1, 0, 0, 0]}, drop=False) > 0.7
    assert _reward_at("quadruped_jump", {}) < 0.2


def test_every_custom_task_is_covered():
    covered = {p[0] for p in CUSTOM_POSES} | {m[0] for m in CUSTOM_MOTIONS} | {"quadruped_jump"}
    assert covered == {t.name for t in TASKS.values() if not t.standard}


@pytest.mark.parametrize("body", list(BODIES))
def test_random_pose_init_is_diverse_and_on_the_floor(body):
    env = PixelEnv(body, seed=0, init="random_pose", size=16)
    root = env.physics.model.joint(env.body.root_height_joint)
    z_adr = int(root.qposadr[0]) + (2 if root.type[0] == 0 else 0)
    uprights = []
    for _ in range(15):  # includes poses whose limbs touch each other (cheetah, quadruped)
        env.reset()
        uprights.append(float(env.features()["upright"]))
        assert env._floor_contacts() == 0
        env.physics.data.qpos[z_adr] -= 0.02
        env.physics.forward()
        assert env._floor_contacts() > 0  # it rests just above the floor, not floating
    assert min(uprights) < -0.3 and max(uprights) > 0.3  # upside down and upright poses both occur
