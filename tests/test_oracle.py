"""Oracle reward heads (the score ladder's ceiling) and the ladder's own inputs."""

import json
import shutil

import numpy as np
import pytest
import torch

from genrl_core.agent import GenRL, PromptError
from genrl_core.bundle import Bundle, BundleError
from genrl_core.cli import main
from genrl_core.data import EpisodeStore, load_episode
from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import feature
from genrl_core.models.nets import mode_onehot
from genrl_core.models.reward import make_reward
from genrl_core.train.behaviour import BehaviourLearner, actor_rollout
from genrl_core.vlm.captions import WORDINGS

FAST = {"updates": 4, "batch": 8, "hidden": 32, "layers": 1, "log_every": 1}


@pytest.fixture(scope="module")
def oracle_bundle(tiny_bundle, walker_random_data, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("oracle") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert main(["train-reward-heads", "--data", str(walker_random_data), "--bundle", str(bundle), "--updates", "300",
                 "--no-progress"]) == 0
    return bundle


def test_reward_heads_predict_true_rewards_better_than_their_mean(oracle_bundle, walker_random_data):
    agent = GenRL.load(oracle_bundle)
    heads = Bundle(oracle_bundle).load_reward_heads(agent.wm)
    ep = load_episode(EpisodeStore(walker_random_data).paths()[0])
    with torch.no_grad():
        obs = agent.wm.observe(*(torch.from_numpy(ep[k])[None] for k in ("image", "action", "is_first")))
        pred = heads(feature(obs["deter"], obs["stoch"]))[0, 8:].numpy()
    true = ep["task_rewards"][8:]
    col = heads.tasks.index("walker_stand")
    model_err = np.abs(pred[:, col] - true[:, col]).mean()
    mean_err = np.abs(true[:, col].mean() - true[:, col]).mean()
    assert model_err < 0.97 * mean_err, (model_err, mean_err)  # beats the best constant, from a 20-update model
    rows = [json.loads(x) for x in (oracle_bundle / "logs" / "reward_heads.jsonl").read_text().splitlines()]
    assert rows[-1]["mse"] < 0.9 * rows[0]["mse"], rows


def test_oracle_reward_is_the_heads_prediction_on_imagined_states(oracle_bundle):
    agent = GenRL.load(oracle_bundle)
    heads = Bundle(oracle_bundle).load_reward_heads(agent.wm)
    cfg = agent.behaviour_config({**FAST, "reward": "oracle:walker_walk"})
    learner = BehaviourLearner(agent.wm, cfg, agent.wm.cfg.action_dim,
                               make_reward(cfg.reward, agent.wm, heads, cfg.align_states))
    torch.manual_seed(0)
    deter = torch.zeros(8, agent.wm.cfg.deter)
    stoch = torch.nn.functional.one_hot(torch.randint(agent.wm.cfg.classes, (8, agent.wm.cfg.stoch)),
                                        agent.wm.cfg.classes).float()
    with torch.no_grad():
        traj = actor_rollout(agent.wm, learner.actor, deter, stoch, cfg.horizon)
        reward, t_a = learner.rewards(traj, torch.zeros(0))
        expected = heads(feature(traj["deter"], traj["stoch"]))[..., heads.tasks.index("walker_walk")]
    assert torch.equal(reward, expected) and t_a.eq(0).all()
    policy = agent.learn("oracle walker_walk", {**FAST, "reward": "oracle:walker_walk"})
    assert policy.meta.finished and policy.config.reward == "oracle:walker_walk"


def test_imagined_return_sums_the_heads_over_the_policys_own_dream(oracle_bundle, tiny_bundle, tmp_path):
    agent = GenRL.load(oracle_bundle, policies_dir=tmp_path)
    policy = agent.learn("walk forward", FAST)
    actor, _ = agent.load_policy(policy)
    heads = Bundle(oracle_bundle).load_reward_heads(agent.wm)
    deter, stoch = agent.real_start(2, seed=5)
    total = torch.zeros(2)
    with torch.no_grad():  # three steps by hand, from the same real reset frames
        for _ in range(3):
            deter = agent.wm.step(deter, stoch, actor.act(feature(deter, stoch)))
            stoch = mode_onehot(agent.wm.prior_probs(deter))
            total += heads(feature(deter, stoch))[:, heads.column("walker_walk")]
    assert agent.imagined_return(policy, "walker_walk", episodes=2, seed=5, steps=4) == round(float(total.mean()), 1)
    no_heads = GenRL.load(tiny_bundle, policies_dir=tmp_path / "other")
    assert no_heads.imagined_return(no_heads.learn("walk forward", FAST), "walker_walk") is None


def test_oracle_errors_name_the_fix(oracle_bundle, tiny_bundle, tmp_path):
    agent = GenRL.load(oracle_bundle, policies_dir=tmp_path)
    with pytest.raises(BundleError, match="no oracle reward head for 'walker_moonwalk'"):
        agent.learn("x", {**FAST, "reward": "oracle:walker_moonwalk"})
    with pytest.raises(ConfigError, match="oracle:TASK"):
        agent.learn("x", {**FAST, "reward": "oracles"})
    bare = GenRL.load(tiny_bundle, policies_dir=tmp_path)
    if not Bundle(tiny_bundle).reward_heads_file.exists():
        with pytest.raises(BundleError, match="genrl train-reward-heads"):
            bare.learn("x", {**FAST, "reward": "oracle:walker_walk"})
    stale = tmp_path / "stale"
    shutil.copytree(oracle_bundle, stale)
    weights = Bundle(stale).world_model_file
    torch.save({k: v + 0.01 for k, v in torch.load(weights).items()}, weights)
    with pytest.raises(BundleError, match="another world model"):
        Bundle(stale).load_reward_heads(GenRL.load(stale).wm)


def test_an_explicit_target_is_learned_and_named_by_its_states(oracle_bundle, tmp_path):
    agent = GenRL.load(oracle_bundle, policies_dir=tmp_path)
    cfg = agent.wm.cfg
    target = torch.nn.functional.one_hot(torch.randint(cfg.classes, (17, cfg.stoch)), cfg.classes).float()
    first = agent.learn("expert latents", FAST, target=target)
    assert torch.equal(torch.load(first.target_file), target)
    other = agent.learn("expert latents", FAST, target=target.roll(1, 0))
    assert other.slug != first.slug and agent.learn("expert latents", FAST, target=target).reused
    with pytest.raises(PromptError, match="shape"):
        agent.learn("expert latents", FAST, target=target[:5])


def test_ladder_paraphrases_are_in_no_caption_template():
    from benchmarks.score_ladder import PARAPHRASES, TEXT_PROMPTS

    templates = {t.replace("{b} ", "").lower() for phrases in WORDINGS.values() for t in phrases}
    for task, phrases in PARAPHRASES.items():
        assert task in TEXT_PROMPTS and len(phrases) == 3
        for p in phrases:
            assert p.lower() not in templates and not any(t in p.lower() for t in templates if len(t) > 12), p


def test_ladder_takes_its_expert_episode_from_unseen_data_first(tmp_path, tiny_bundle):
    from helpers_data import make_episode

    from benchmarks.score_ladder import expert_episode

    data, unseen = EpisodeStore(tmp_path / "data"), EpisodeStore(tmp_path / "unseen")
    data.save("expert_walker_run-00000", make_episode(10))
    # the tiny bundle holds out no expert episode: the trained-on one is used, and said to be
    assert expert_episode(tiny_bundle, data.root, "walker_run") == (data.root / "expert_walker_run-00000.npz", False)
    assert expert_episode(tiny_bundle, data.root, "walker_run", unseen.root)[1] is False  # nothing there yet
    unseen.save("expert_walker_run-00003", make_episode(10, seed=3))
    assert expert_episode(tiny_bundle, data.root, "walker_run", unseen.root) == (
        unseen.root / "expert_walker_run-00003.npz", True)


def test_ladder_takes_the_best_expert_episode_not_a_failed_one(tmp_path, tiny_bundle):
    """The walker stand expert failed in 5 of its 16 episodes (sitting, returns 186-275), and the ladder
    once took one of them as its stand target: the expert and video rungs then learned to sit."""
    from helpers_data import make_episode

    from benchmarks.score_ladder import expert_episode

    data = EpisodeStore(tmp_path / "data")
    for i, scale in enumerate((0.2, 1.0, 0.5)):  # the middle one has the highest return
        ep = make_episode(10, seed=i)
        ep["reward"] = ep["reward"] * scale
        data.save(f"expert_walker_run-{i:05d}", ep)
    assert expert_episode(tiny_bundle, data.root, "walker_run") == (data.root / "expert_walker_run-00001.npz", False)


def test_imagination_gap_scores_the_same_real_episode_as_evaluate(oracle_bundle, tmp_path):
    from benchmarks.imagination_gap import gaps

    agent = GenRL.load(oracle_bundle, policies_dir=tmp_path)
    policy = agent.learn("oracle walker_walk", {**FAST, "reward": "oracle:walker_walk"})
    row = gaps(agent, policy.slug, "walker_walk", seed=7, window=4)
    assert row["true return"] == pytest.approx(agent.evaluate(policy, "walker_walk", episodes=1, seed=7)["mean_return"],
                                               abs=0.1)
    assert row["true reward on posterior steps"] <= row["true return"] + 1e-6
    assert all(np.isfinite(v) for v in row.values()) and len(row) == 6
