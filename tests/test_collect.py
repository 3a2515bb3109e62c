"""Collection into the episode store: real envs, real files, real interruption."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from genrl_core.cli import main
from genrl_core.data import EpisodeStore, load_episode
from genrl_core.data.collect import Policy, run_episode
from genrl_core.data.experts import MPCConfig, MPCExpert
from genrl_core.data.replay import EpisodeReplay
from genrl_core.envs import PixelEnv


def test_cli_collect_random_writes_full_episodes(tmp_path, capsys):
    assert main(["collect", "--body", "walker", "--episodes", "2", "--policy", "random", "--out", str(tmp_path)]) == 0
    store = EpisodeStore(tmp_path)
    assert len(store) == 2
    ep = store.load(store.paths()[0])
    assert ep["image"].shape == (501, 64, 64, 3) and ep["image"].dtype == np.uint8
    assert ep["action"].shape == (501, 6) and np.all(ep["action"][0] == 0)
    assert ep["body"] == "walker" and ep["policy"] == "random" and ep["task"] == "none"
    assert ep["is_first"][0] and ep["is_last"][-1] and not ep["is_last"][:-1].any()
    assert "walker_run" in list(ep["task_names"]) and ep["task_rewards"].shape == (501, 9)
    batch = EpisodeReplay(store.paths(), seq_len=32).sample(4)
    assert batch["image"].shape == (4, 32, 64, 64, 3)
    out = capsys.readouterr().out
    assert "2 episodes" in out
    progress = [line for line in out.splitlines() if line.startswith("[collect] 1/2 random-")]
    assert progress and "return" not in progress[0]  # a random episode has no task to have a return on
    # resuming the folder with another seed or frame size would mix data: refused, nothing written
    assert main(["collect", "--body", "walker", "--episodes", "3", "--seed", "1", "--out", str(tmp_path)]) == 2
    assert "collected with seed=0" in capsys.readouterr().err and len(store) == 2


def test_episodes_are_reproducible_and_policies_differ():
    a = run_episode("cheetah", Policy("random"), seed=3, size=16)
    b = run_episode("cheetah", Policy("random"), seed=3, size=16)
    c = run_episode("cheetah", Policy("reset"), seed=3, size=16)
    np.testing.assert_array_equal(a["action"], b["action"])
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.allclose(a["state"][0], c["state"][0])  # reset starts from a random pose


def test_interrupted_collection_resumes(tmp_path):
    cmd = [sys.executable, "-m", "genrl_core.cli", "collect", "--body", "walker", "--episodes", "3",
           "--policy", "reset", "--size", "16", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = EpisodeStore(tmp_path)
    deadline = time.time() + 120
    while len(store) < 1 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # a hard crash mid-episode
    proc.wait()
    first = store.paths()
    assert 1 <= len(first) < 3
    stamps = {p: os.stat(p).st_mtime_ns for p in first}
    for p in first:
        load_episode(p)  # every file on disk is complete
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert len(store) == 3
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items())  # finished files were not redone
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["collect", "--body", "walker", "--policy", "greedy", "--out", str(tmp_path)]) == 2
    assert "unknown policy 'greedy'" in capsys.readouterr().err
    assert main(["collect", "--body", "walker", "--policy", "expert:cheetah_run", "--out", str(tmp_path)]) == 2
    assert "not a task of body 'walker'" in capsys.readouterr().err
    assert main(["collect", "--body", "walker", "--recipe", "huge", "--out", str(tmp_path)]) == 2
    assert "valid: default, tiny" in capsys.readouterr().err


def test_mpc_expert_beats_doing_nothing():
    """A few planned steps of walker_stand from a fallen start earn more than zero actions."""
    def ret(policy):
        env = PixelEnv("walker_stand", seed=5, size=16)
        env.reset()
        act = policy(env)
        return sum(env.step(act()).reward for _ in range(25))

    cfg = MPCConfig(horizon=10, samples=32, knots=4, threads=1)
    planned = ret(lambda env: MPCExpert(env, "walker_stand", cfg, seed=0).act)
    idle = ret(lambda env: (lambda: np.zeros(env.action_dim)))
    assert planned > idle + 2.0


def test_expert_settings_must_exist():
    with pytest.raises(ValueError, match="no expert settings for task 'walker_flip'"):
        MPCConfig.load("walker_flip")


def test_cli_video_writes_a_playable_mp4(tmp_path, capsys):
    out = tmp_path / "ep.mp4"
    assert main(["video", "--body", "cheetah", "--policy", "random", "--out", str(out), "--upscale", "1"]) == 0
    import imageio.v2 as imageio

    frames = imageio.mimread(out)
    assert len(frames) == 501 and frames[0].shape == (64, 64, 3)
    assert "cheetah_run" in capsys.readouterr().out
