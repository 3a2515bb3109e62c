"""Behaviour learning: alignment, the matching reward, learning, evaluation, cancellation."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_state import assert_same_state

from genrl_core.agent import GenRL, LearningCancelled, PromptError
from genrl_core.cli import main
from genrl_core.data import EpisodeStore
from genrl_core.data.collect import Policy, run_episode
from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.envs.tasks import TASKS
from genrl_core.errors import ConfigError
from genrl_core.evaluate import REFERENCE_RETURNS, normalised_score
from genrl_core.models.reward import (
    REWARD_KINDS,
    aligned_reward,
    alignment_scores,
    make_reward,
    parse_reward,
    similarity_matrix,
)
from genrl_core.train.behaviour import BehaviourConfig, lambda_returns
from genrl_core.train.generalist import GeneralistLearner
from genrl_core.video import write_mp4

FAST = {"updates": 6, "batch": 8, "hidden": 32, "layers": 1, "log_every": 1}


@pytest.fixture(scope="module")
def agent(tiny_bundle, tmp_path_factory):
    return GenRL.load(tiny_bundle, policies_dir=tmp_path_factory.mktemp("policies"))


@pytest.mark.parametrize("offsets", [(0, 5), (3, 8), (8, 1)])
def test_alignment_finds_each_rows_offset_and_clamps_to_the_last_target_state(offsets):
    imagined, target, b = 17, 12, 8  # a target shorter than the rollout
    # every entry its own background value (all below 0.31), so a reward read from the wrong target
    # state (wrapped, clamped elsewhere, or with another row's t_a) shows up as a different number
    i, j = torch.meshgrid(torch.arange(imagined), torch.arange(target), indexing="ij")
    sim = (0.1 + 0.001 * (i * target + j)).float().repeat(2, 1, 1)
    for row, offset in enumerate(offsets):  # target state j is matched by imagined state offset + j
        for jj in range(target):
            if offset + jj < imagined:
                sim[row, offset + jj, jj] = 1.0 + 0.01 * row
    # docs/GENRL.md: the 8-state window slides over imagined length - b = 9 offsets
    assert alignment_scores(sim, b).shape == (2, imagined - b)
    reward, t_a = aligned_reward(sim, b)
    assert t_a.tolist() == list(offsets)
    for row, offset in enumerate(offsets):
        # before t_a: the target's first state; then lockstep; past its end: its last state
        expected = torch.stack([sim[row, ii, min(target - 1, max(0, ii - offset))] for ii in range(imagined)])
        assert torch.equal(reward[row], expected)
        assert reward[row, offset: offset + target].eq(1.0 + 0.01 * row).all()
        assert torch.equal(reward[row, :offset], sim[row, :offset, 0])
        assert torch.equal(reward[row, offset + target:], sim[row, offset + target:, target - 1])


@pytest.mark.parametrize("kind", REWARD_KINDS)
def test_reward_is_highest_for_a_rollout_identical_to_the_target(agent, kind):
    torch.manual_seed(0)
    cfg = agent.wm.cfg
    target = F.one_hot(torch.randint(cfg.classes, (17, cfg.stoch)), cfg.classes).float()
    others = F.one_hot(torch.randint(cfg.classes, (5, 17, cfg.stoch)), cfg.classes).float()
    rollouts = torch.cat([target[None], others])
    probs = 0.9 * rollouts + 0.1 / cfg.classes  # a confident prior on each rollout's own states
    reward, t_a = make_reward(kind, agent.wm, None, 8)({"stoch": rollouts, "probs": probs}, target)
    assert torch.equal(reward, aligned_reward(similarity_matrix(kind, agent.wm, rollouts, target, probs), 8)[0])
    totals = reward.sum(1)
    assert int(totals.argmax()) == 0 and t_a[0] == 0
    assert totals[0] > totals[1:].max()


def test_pose_motion_asks_a_moving_target_for_its_motion_and_a_still_one_for_its_pose(agent):
    torch.manual_seed(0)
    cfg = agent.wm.cfg
    moving = F.one_hot(torch.randint(cfg.classes, (17, cfg.stoch)), cfg.classes).float()
    still = moving[:1].expand(17, -1, -1)  # one pose held
    rollouts = torch.stack([moving, still])
    targets = {"still": still, "moving": moving}
    pose = {name: similarity_matrix("max_cosine", agent.wm, rollouts, t) for name, t in targets.items()}
    both = {name: similarity_matrix("pose_motion", agent.wm, rollouts, t) for name, t in targets.items()}
    # a target that stays put is matched by pose alone, whatever the rollout does
    assert torch.allclose(both["still"], pose["still"])
    # a moving target: the rollout that moves as it does keeps its pose reward step for step...
    assert torch.allclose(both["moving"][0].diagonal(), pose["moving"][0].diagonal())
    # ...and holding a pose earns less of it (shrunk towards zero: no motion to match), all the
    # more where the target moves most
    held, posed = both["moving"][1].abs(), pose["moving"][1].abs()
    assert (held <= posed + 1e-6).all() and held.sum() < posed.sum() / 2
    # one target per trajectory (the generalist's batches) gives each row its own target's matrix
    per_row = similarity_matrix("pose_motion", agent.wm, rollouts, torch.stack([moving, still]))
    assert torch.allclose(per_row, torch.stack([both["moving"][0], both["still"][1]]))


def test_the_reward_registry_names_every_kind_and_what_each_needs(agent):
    assert REWARD_KINDS == ("max_cosine", "cosine", "kl", "pose_motion")  # what a request may pick: no oracle
    assert parse_reward("oracle:walker_walk")[1] == "walker_walk" and parse_reward("kl")[1] == ""
    for bad in ("euclid", "oracle", "oracle:", "cosine:walker_walk"):
        with pytest.raises(ConfigError, match="valid: max_cosine, cosine, kl, pose_motion, oracle:TASK"):
            BehaviourConfig(reward=bad)
    with pytest.raises(ConfigError, match="needs the bundle's oracle reward heads"):
        make_reward("oracle:walker_walk", agent.wm, None, 8)
    cfg = BehaviourConfig(reward="oracle:walker_walk")
    with pytest.raises(ConfigError, match="trajectory matching"):  # the generalist's reward needs a target
        GeneralistLearner(agent.wm, cfg, agent.wm.cfg.action_dim)


def test_lambda_returns_match_a_hand_computation():
    reward, value = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 10.0, 20.0]])
    gamma, lam = 0.9, 0.5
    ret1 = 2.0 + gamma * 20.0
    ret0 = 1.0 + gamma * ((1 - lam) * 10.0 + lam * ret1)
    assert torch.allclose(lambda_returns(reward, value, gamma, lam), torch.tensor([[ret0, ret1]]))


def test_tiny_learning_improves_the_matching_reward(agent):
    settings = {**FAST, "updates": 60, "batch": 32, "actor_lr": 1e-3, "critic_lr": 1e-3, "log_every": 10}
    seen = []
    policy = agent.learn("stand up straight", settings, callback=seen.append)
    assert policy.meta.finished and policy.meta.updates_done == 60 and not policy.reused
    rows = [json.loads(x) for x in open(policy.path / "log.jsonl")]
    assert rows[-1]["reward"] > rows[0]["reward"] + 0.02, rows
    assert [s["update"] for s in seen] == [10, 20, 30, 40, 50, 60]
    assert sum(seen[-1]["t_a_hist"]) == 10 * 32  # one t_a per trajectory per update
    again = agent.learn("  Stand up   straight ", settings)  # same prompt, reused
    assert again.reused and again.slug == policy.slug
    assert policy.slug in [p.slug for p in agent.policies.list()]


def test_imagine_and_alignment_of_the_policys_own_target(agent):
    slug = agent.learn("walk forward", FAST).slug
    frames = agent.imagine(slug, steps=12)
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    align = agent.alignment(None, slug, batch=4)
    assert len(align["similarity"]) == len(align["offsets"]) == 9  # 17 imagined states - b
    # the policy's stored target is the one its prompt decodes to (what it was learned against)
    assert agent.alignment("walk forward", slug, batch=4) == align


def test_alignment_finds_a_target_cut_from_the_policys_own_rollout(agent):
    """alignment(batch=1, seed=0) imagines one deterministic rollout R; a target made of R from step k
    on (padded with R's last state) matches R exactly at offset k, so t_a must be k. Only offsets
    whose 8-state window occurs once in R are unambiguous (a tiny model's rollout soon repeats)."""
    policy = agent.learn("walk forward", FAST)
    cfg = agent.behaviour_config(FAST)
    b, offsets = cfg.align_states, cfg.horizon + 1 - cfg.align_states
    with torch.no_grad():
        rollout = agent.rollout(policy, *agent.real_start(1, 0), cfg.horizon)["stoch"][0]
    windows = [rollout[k: k + b].argmax(-1) for k in range(offsets)]
    unambiguous = [k for k in range(offsets) if sum(torch.equal(windows[k], w) for w in windows) == 1]
    assert len(unambiguous) >= 2, [w.tolist() for w in windows]
    src = policy.path
    for k in unambiguous:
        target = torch.cat([rollout[k:], rollout[-1:].expand(k, -1, -1)])
        copy = src.with_name(f"{src.name}-from-{k}")
        shutil.copytree(src, copy, dirs_exist_ok=True)
        torch.save(target, copy / "target.pt")
        align = agent.alignment(None, copy.name, batch=1, seed=0)
        assert align["t_a"] == k, (k, align)
        assert align["similarity"][k] == pytest.approx(1.0, abs=1e-5)  # the window matched state for state


def test_normalised_score_on_a_full_episode_of_the_real_env(agent):
    policy = agent.learn("walk forward", FAST)
    result = agent.evaluate(policy, "walker_stand", episodes=1, seed=5, keep_actions=True)
    assert result["env_steps"] == 1000 and len(result["actions"]) == 500  # a whole episode, action repeat 2
    env = PixelEnv("walker_stand", seed=5)  # replay the actions: the env's own reward
    env.reset()
    true_return = sum(env.step(a).reward for a in result["actions"])
    assert result["returns"][0] == pytest.approx(true_return, abs=0.06)
    low, high, source = REFERENCE_RETURNS["walker_stand"]
    assert (result["random_return"], result["expert_return"], result["reference_source"]) == (low, high, source)
    # on the scale: 0 at the random reference, 1 at the expert's
    assert result["normalised"] == pytest.approx((true_return - low) / (high - low), abs=1e-3)
    assert normalised_score("walker_stand", low) == 0 and normalised_score("walker_stand", high) == 1


def test_reference_returns_name_real_tasks_and_a_random_policy_scores_near_zero(walker_random_data):
    for task, (low, high, source) in REFERENCE_RETURNS.items():
        assert task in TASKS and 0 <= low < high <= 1000 and source, task
    # three real random-policy episodes (full length) score about 0 on every walker task with a reference
    store = EpisodeStore(walker_random_data)
    episodes = [store.load(p) for p in store.paths()]
    assert all(len(ep["task_rewards"]) == 501 for ep in episodes)
    names = list(episodes[0]["task_names"])
    for task in (t for t in REFERENCE_RETURNS if t.startswith("walker_")):
        mean = float(np.mean([ep["task_rewards"][:, names.index(task)].sum() for ep in episodes]))
        assert abs(normalised_score(task, mean)) < 0.25, (task, mean)
    assert normalised_score("walker_nonexistent", 100.0) is None


def test_a_video_prompted_policy_is_evaluated_and_its_target_saved_alone(agent, tmp_path):
    clip = write_mp4(tmp_path / "clip.mp4", np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3), np.uint8),
                     fps=20)
    agent.target(clip, steps=64)  # a longer target of the same prompt is cached first
    policy = agent.learn(clip, FAST)
    assert policy.meta.prompt_kind == "video" and policy.meta.prompt == "video clip.mp4"
    saved = torch.load(policy.target_file)
    assert saved.shape[0] == 17 and saved.untyped_storage().nbytes() == saved.nbytes  # not the 64-state tensor
    result = agent.evaluate(policy, episodes=1, max_steps=3)  # no task given: a video names none in words
    assert result["task"] == agent.tasks()[0]


def test_a_truncated_run_reports_no_normalised_score(agent):
    policy = agent.learn("walk forward", FAST)
    result = agent.evaluate(policy, "walker_stand", episodes=1, seed=5, max_steps=15)
    assert result["env_steps"] == 30
    assert result["normalised"] is None and result["truncated"]


def learn_until(agent, prompt, settings, stop_at):
    """Learn with a cancel event set by the progress callback once update `stop_at` is reported.
    Returns (updates reported, the LearningCancelled message, or None if learning finished)."""
    cancel, seen = threading.Event(), []

    def on_progress(p):
        seen.append(p["update"])
        if p["update"] >= stop_at:
            cancel.set()

    try:
        agent.learn(prompt, settings, callback=on_progress, cancel=cancel)
    except LearningCancelled as exc:
        return seen, str(exc)
    return seen, None


def test_cancel_stops_at_the_next_update_and_resume_is_exact(agent, tiny_bundle, tmp_path):
    settings = {**FAST, "updates": 40}
    seen, stopped = learn_until(agent, "lie down", settings, 20)
    # cancel was set while update 20 was reported: learning stopped before update 21 and checkpointed
    assert seen == list(range(1, 21)) and stopped == "cancelled at update 20; rerun to resume"
    run_dir = agent.policies.run_dir(agent.plan("lie down", settings).slug)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["updates_done"] == 20 and not meta["finished"] and not (run_dir / "policy.pt").exists()
    seen, stopped = learn_until(agent, "lie down", settings, 30)
    assert seen == list(range(21, 31)) and stopped == "cancelled at update 30; rerun to resume"

    # the same 30 updates in one go, in another folder
    straight = GenRL.load(tiny_bundle, policies_dir=tmp_path / "straight")
    seen, stopped = learn_until(straight, "lie down", settings, 30)
    assert seen == list(range(1, 31)) and stopped == "cancelled at update 30; rerun to resume"
    other_dir = straight.policies.run_dir(run_dir.name)
    a = torch.load(run_dir / "state.pt", weights_only=True)
    b = torch.load(other_dir / "state.pt", weights_only=True)
    a.pop("elapsed"), b.pop("elapsed")  # wall-clock seconds: the only field allowed to differ
    # actor, critic, slow critic, return normaliser, both Adam states, torch and start-state RNGs
    assert a["learner"]["updates"] == b["learner"]["updates"] == 30
    assert_same_state(a, b)
    # both finish: the same policy, bit for bit
    assert learn_until(agent, "lie down", settings, 10**9) == (list(range(31, 41)), None)
    assert learn_until(straight, "lie down", settings, 10**9) == (list(range(31, 41)), None)
    assert_same_state(torch.load(run_dir / "policy.pt", weights_only=True),
                      torch.load(other_dir / "policy.pt", weights_only=True))


def test_bad_settings_and_policies_give_clear_errors(agent):
    with pytest.raises(ConfigError, match="unknown behaviour setting 'speed'"):
        agent.learn("run", {"speed": 3})
    with pytest.raises(ConfigError, match="reward"):
        agent.learn("run", {"reward": "euclid"})
    with pytest.raises(ConfigError, match="updates"):
        agent.learn("run", {"updates": "many"})
    with pytest.raises(PromptError, match="does not exist"):
        agent.learn("missing-clip.mp4")
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


def test_a_learned_policy_collects_episodes_from_pixels(agent, tiny_bundle, tmp_path, capsys):
    policy = agent.learn("stand up straight", FAST, progress=False)
    spec = f"learned:{policy.path}"
    out = tmp_path / "data"
    argv = ["collect", "--body", "walker", "--policy", spec, "--bundle", str(tiny_bundle), "--episodes", "2",
            "--out", str(out)]
    assert main(argv) == 0
    store = EpisodeStore(out)
    episodes = [store.load(p) for p in store.paths()]
    assert [p.name for p in store.paths()] == [f"learned_{policy.slug}-0000{i}.npz" for i in range(2)]
    assert all(len(ep["image"]) == 501 and str(ep["policy"]) == spec for ep in episodes)
    assert np.abs(episodes[0]["action"][1:]).max() > 0.0  # the actor acted, from its sampled actions
    assert not np.allclose(episodes[0]["action"], episodes[1]["action"])
    again = run_episode("walker", Policy.parse(spec, "walker", tiny_bundle), seed=int(episodes[0]["seed"]))
    np.testing.assert_array_equal(again["action"], episodes[0]["action"])  # reproducible from its seed
    capsys.readouterr()

    assert main([*argv, "--bundle", "checkpoints/walker"]) == 2  # the last --bundle counts
    assert "was not learned on the world model of checkpoints/walker" in capsys.readouterr().err
    assert main(["collect", "--body", "walker", "--policy", f"learned:{tmp_path}", "--bundle", str(tiny_bundle),
                 "--out", str(out)]) == 2
    assert "is not a finished policy folder" in capsys.readouterr().err
