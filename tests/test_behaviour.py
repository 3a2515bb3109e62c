"""Behaviour learning: alignment, the matching reward, learning, evaluation, cancellation."""

import json
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrl_core.agent import GenRL, LearningCancelled, PromptError
from genrl_core.cli import main
from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.models.reward import aligned_reward, alignment_scores, similarity_matrix
from genrl_core.train.behaviour import lambda_returns

FAST = {"updates": 6, "batch": 8, "hidden": 32, "layers": 1, "log_every": 1}


@pytest.fixture(scope="module")
def agent(tiny_bundle, tmp_path_factory):
    return GenRL.load(tiny_bundle, policies_dir=tmp_path_factory.mktemp("policies"))


@pytest.mark.parametrize("offsets", [(0, 5), (3, 8), (8, 1)])
def test_alignment_finds_each_rows_offset_and_clamps_to_the_last_target_state(offsets):
    imagined, target, b = 17, 12, 8  # a target shorter than the rollout
    sim = torch.full((2, imagined, target), 0.1)
    for row, offset in enumerate(offsets):  # target state j is matched by imagined state offset + j
        for j in range(target):
            if offset + j < imagined:
                sim[row, offset + j, j] = 1.0 + 0.01 * row
    # GENRL.md: the 8-state window slides over imagined length - b = 9 offsets
    assert alignment_scores(sim, b).shape == (2, imagined - b)
    reward, t_a = aligned_reward(sim, b)
    assert t_a.tolist() == list(offsets)
    for row, offset in enumerate(offsets):
        # before t_a: the target's first state; then lockstep; past its end: its last state
        expected = torch.tensor([sim[row, i, min(target - 1, max(0, i - offset))] for i in range(imagined)])
        assert torch.equal(reward[row], expected)
        assert reward[row, offset: offset + target].eq(1.0 + 0.01 * row).all()
        assert reward[row, offset + target:].eq(0.1).all()  # imagined steps past the target's end


@pytest.mark.parametrize("kind", ["max_cosine", "cosine", "kl"])
def test_reward_is_highest_for_a_rollout_identical_to_the_target(agent, kind):
    torch.manual_seed(0)
    cfg = agent.wm.cfg
    target = F.one_hot(torch.randint(cfg.classes, (17, cfg.stoch)), cfg.classes).float()
    others = F.one_hot(torch.randint(cfg.classes, (5, 17, cfg.stoch)), cfg.classes).float()
    rollouts = torch.cat([target[None], others])
    probs = 0.9 * rollouts + 0.1 / cfg.classes  # a confident prior on each rollout's own states
    reward, t_a = aligned_reward(similarity_matrix(kind, agent.wm, rollouts, target, probs), 8)
    totals = reward.sum(1)
    assert int(totals.argmax()) == 0 and t_a[0] == 0
    assert totals[0] > totals[1:].max()


def test_lambda_returns_match_a_hand_computation():
    reward, value = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 10.0, 20.0]])
    gamma, lam = 0.9, 0.5
    ret1 = 2.0 + gamma * 20.0
    ret0 = 1.0 + gamma * ((1 - lam) * 10.0 + lam * ret1)
    assert torch.allclose(lambda_returns(reward, value, gamma, lam), torch.tensor([[ret0, ret1]]))


def test_tiny_learning_improves_the_matching_reward(agent):
    settings = {**FAST, "updates": 60, "batch": 32, "actor_lr": 1e-3, "critic_lr": 1e-3, "log_every": 10}
    seen = []
    meta = agent.learn("stand up straight", settings, callback=seen.append)
    assert meta["finished"] and meta["updates_done"] == 60 and not meta["reused"]
    rows = [json.loads(x) for x in open(f"{meta['path']}/log.jsonl")]
    assert rows[-1]["reward"] > rows[0]["reward"] + 0.02, rows
    assert [s["update"] for s in seen] == [10, 20, 30, 40, 50, 60]
    assert sum(seen[-1]["t_a_hist"]) == 10 * 32  # one t_a per trajectory per update
    again = agent.learn("  Stand up   straight ", settings)  # same prompt, reused
    assert again["reused"] and again["slug"] == meta["slug"]
    assert meta["slug"] in [m["slug"] for m in agent.policies()]


def test_imagine_alignment_and_evaluation_on_the_real_env(agent):
    slug = agent.learn("walk forward", FAST)["slug"]
    frames = agent.imagine(slug, steps=12)
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    align = agent.alignment(None, slug)
    assert len(align["similarity"]) == len(align["offsets"]) == 9  # 17 imagined states - b
    assert align["t_a"] == int(np.argmax(align["similarity"]))

    result = agent.evaluate(slug, "walker_stand", episodes=2, seed=5, max_steps=15, keep_actions=True)
    assert result["env_steps"] == 30 and len(result["returns"]) == 2
    env = PixelEnv("walker_stand", seed=5)  # replay episode 0's actions: the env's own reward
    env.reset()
    true_return = sum(env.step(a).reward for a in result["actions"])
    assert result["returns"][0] == pytest.approx(true_return, abs=0.06)
    assert result["normalised"] == pytest.approx((result["mean_return"] - 150) / (970 - 150), abs=1e-3)


def test_cancel_stops_within_a_second_and_resume_continues(agent):
    cancel, updates, stop_at = threading.Event(), [], {}
    settings = {**FAST, "updates": 10_000}

    def on_progress(p):
        updates.append(p["update"])
        if p["update"] == 3:
            stop_at["t"] = time.time()
            cancel.set()

    with pytest.raises(LearningCancelled):
        agent.learn("lie down", settings, callback=on_progress, cancel=cancel)
    assert time.time() - stop_at["t"] < 1.0
    run_dir = agent.policies_dir / agent.policy_slug("lie down", settings)
    assert json.loads((run_dir / "meta.json").read_text())["updates_done"] == 3
    resumed = []
    with pytest.raises(LearningCancelled):
        cancel2 = threading.Event()
        agent.learn("lie down", settings, callback=lambda p: (resumed.append(p["update"]), cancel2.set()),
                    cancel=cancel2)
    assert resumed[0] == 4  # continued from the checkpoint, not from zero


def test_bad_settings_and_policies_give_clear_errors(agent):
    with pytest.raises(PromptError, match="unknown setting 'speed'"):
        agent.learn("run", {"speed": 3})
    with pytest.raises(PromptError, match="reward"):
        agent.learn("run", {"reward": "euclid"})
    with pytest.raises(PromptError, match="updates"):
        agent.learn("run", {"updates": "many"})
    with pytest.raises(PromptError, match="empty"):
        agent.learn("   ")
    with pytest.raises(PromptError, match="no finished policy"):
        agent.imagine("does-not-exist")
    with pytest.raises(PromptError, match="bad policy name"):
        agent.imagine("../../etc/passwd")


def test_cli_learn_and_evaluate(tiny_bundle, tmp_path, capsys):
    pol = tmp_path / "pols"
    args = ["--bundle", str(tiny_bundle), "--policies-dir", str(pol)]
    assert main(["learn", "kneel", *args, "--set", "updates=3", "batch=8", "hidden=32", "--no-progress"]) == 0
    slug = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["slug"]
    video = tmp_path / "eval.mp4"
    assert main(["evaluate", *args, "--policy", slug, "--task", "walker_sit_knees", "--episodes", "1",
                 "--max-steps", "10", "--video", str(video)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == "walker_sit_knees" and video.stat().st_size > 1000
    assert main(["learn", "kneel", *args, "--set", "updates=zero"]) == 2
    assert "updates" in capsys.readouterr().err
