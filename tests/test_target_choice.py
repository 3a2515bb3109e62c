"""Best-of-N targets (genrl_core/target_choice.py) on a tiny real bundle: the VLM picks among
sampled connector rollouts, repeatably, and learning uses the target it picks."""

import dataclasses

import numpy as np
import pytest
import torch

from genrl_core.agent import GenRL
from genrl_core.cli import main
from genrl_core.config import BehaviourConfig, behaviour_identity
from genrl_core.data import EpisodeStore
from genrl_core.data.store import read_arrays
from genrl_core.errors import ConfigError
from genrl_core.policies import PolicyMeta
from genrl_core.target_choice import SCORED_STATES, best_of_samples, video_similarity

FAST = {"updates": 3, "batch": 8, "hidden": 32, "layers": 1, "log_every": 1}


def test_a_video_is_most_similar_to_its_own_embedding(tiny_bundle, walker_random_data):
    agent = GenRL.load(tiny_bundle)
    paths = EpisodeStore(walker_random_data).paths()[:2]
    clips = np.stack([read_arrays(p, ("image",))["image"][100:120] for p in paths])
    query = agent.vlm.embed_video(clips[:1, 4:12])[0]  # one window of the first clip
    scores = video_similarity(agent.vlm, clips, query)
    assert scores.shape == (2,)
    assert scores[0] > scores[1]
    with pytest.raises(ValueError, match="T >= 8"):
        video_similarity(agent.vlm, clips[:, :5], query)


def test_the_best_sample_is_the_one_the_vlm_scores_highest(tiny_bundle):
    agent = GenRL.load(tiny_bundle)
    emb, query = agent.embed_prompt("walk forward"), agent.embed_prompt("walk forward", use_aligner=False)
    target, scores = best_of_samples(agent.wm, agent.connector, agent.vlm, emb, query, 20, samples=6)
    assert target.shape == (20, agent.wm.cfg.stoch, agent.wm.cfg.classes)
    assert torch.all(target.sum(-1) == 1)  # one-hot states
    assert scores.shape == (6,) and len(set(scores.tolist())) > 1  # the samples differ
    frames = agent.decode(target[:SCORED_STATES])[None]
    assert float(video_similarity(agent.vlm, frames, query)[0]) == pytest.approx(float(scores.max()), abs=1e-5)
    with pytest.raises(ValueError, match="samples"):
        best_of_samples(agent.wm, agent.connector, agent.vlm, emb, query, 20, samples=0)


def test_sampled_targets_repeat_and_a_longer_one_extends_a_shorter_one(tiny_bundle):
    first, second = GenRL.load(tiny_bundle), GenRL.load(tiny_bundle)
    long = first.target("run fast", 32, samples=5)
    assert torch.equal(second.target("run fast", 32, samples=5), long)  # a new process gets the same
    assert torch.equal(second.target("run fast", 9, samples=5), long[:9])
    assert not torch.equal(first.target("run fast", 32), long)  # the mode rollout is another target


def test_learning_uses_the_chosen_target_and_names_the_policy_by_it(tiny_bundle, tmp_path):
    agent = GenRL.load(tiny_bundle, policies_dir=tmp_path)
    mode, best = agent.plan("run fast", FAST), agent.plan("run fast", {**FAST, "target_samples": 5})
    assert torch.equal(best.target, agent.target("run fast", best.cfg.horizon + 1, samples=5))
    assert torch.equal(mode.target, agent.target("run fast", mode.cfg.horizon + 1, samples=0))
    assert best.slug != mode.slug
    policy = agent.learn(best)
    assert policy.meta.config.target_samples == 5
    with pytest.raises(ConfigError, match="target_samples"):
        agent.plan("run fast", {**FAST, "target_samples": -1})


def test_cli_target_samples(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "t.mp4"
    args = ["target", "walk forward", "--bundle", str(tiny_bundle), "--steps", "8", "--out", str(out)]
    assert main([*args, "--samples", "4"]) == 0
    assert out.stat().st_size > 1000 and "decoded in" in capsys.readouterr().out
    assert main([*args, "--samples", "-2"]) == 2
    assert "--samples must be between 0 and" in capsys.readouterr().err


def test_a_policy_recorded_before_target_samples_learned_from_the_mode_rollout():
    """A meta without the setting means 0, whatever the default becomes, and keeps its name."""
    raw = {"slug": "sit-00000000", "prompt": "sit", "settings": {"updates": 5}, "body": "walker",
           "world_model": "wm", "vlm": "v", "created": 1.0}
    cfg = PolicyMeta.from_dict(raw).config
    assert cfg.target_samples == 0 and "target_samples" not in behaviour_identity(cfg)
    assert behaviour_identity(dataclasses.replace(cfg, target_samples=8))["target_samples"] == 8


def test_a_true_reward_ignores_how_the_target_is_chosen():
    """An oracle reward matches no target: target_samples cannot change what it learns, so it neither
    renames the policy nor costs a sampled target."""
    asked = BehaviourConfig(reward="oracle:walker_walk", target_samples=8)
    assert asked.target_samples == 0
    assert behaviour_identity(asked) == behaviour_identity(BehaviourConfig(reward="oracle:walker_walk"))
    with pytest.raises(ConfigError, match="target_samples"):  # still checked
        BehaviourConfig(reward="oracle:walker_walk", target_samples=-1)
    assert BehaviourConfig(target_samples=8).target_samples == 8


def test_the_generalist_keeps_to_mode_rollouts(tiny_bundle):
    """Its target pool is mode rollouts, so its own config (which `act` reads) says 0."""
    from genrl_core.generalist import train_generalist

    with pytest.raises(ConfigError, match="target_samples=4"):
        train_generalist(GenRL.load(tiny_bundle), {**FAST, "target_samples": 4}, log=lambda *_: None)
