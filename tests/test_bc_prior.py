"""The behaviour-cloning prior (`genrl train-bc-prior`, behaviour setting `bc_weight`): it fits the
data's actions on world-model latents, the bundle keeps it for its world model only, and a learner
with bc_weight > 0 keeps its imagined actions nearer the prior's than one without."""

import shutil

import pytest
import torch

from genrl_core.agent import GenRL
from genrl_core.bundle import Bundle, BundleError, save_torch
from genrl_core.cli import main
from genrl_core.data import EpisodeStore
from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import Actor
from genrl_core.train.bc_prior import heldout_nll
from genrl_core.train.behaviour import BehaviourLearner, StartStates, actor_rollout

FAST = {"batch": 16, "hidden": 32, "layers": 1, "horizon": 8, "align_states": 4}


@pytest.fixture(scope="module")
def prior_bundle(tiny_bundle, walker_random_data, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("bc_prior") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert main(["train-bc-prior", "--data", str(walker_random_data), "--bundle", str(bundle), "--updates", "150",
                 "--no-progress"]) == 0
    return bundle


def test_the_prior_fits_the_datas_actions_better_than_an_untrained_one(prior_bundle, walker_random_data):
    agent = GenRL.load(prior_bundle)
    prior = Bundle(prior_bundle).load_bc_prior(agent.wm)
    assert not any(p.requires_grad for p in prior.parameters())
    episodes = EpisodeStore(walker_random_data).paths()[:3]
    torch.manual_seed(0)
    untrained = Actor(agent.wm.cfg.deter + agent.wm.cfg.stoch_dim, agent.wm.cfg.action_dim, prior.hidden,
                      prior.layers)
    assert heldout_nll(agent.wm, prior, episodes, 32) < heldout_nll(agent.wm, untrained, episodes, 32) - 0.1


def test_the_prior_belongs_to_its_world_model(prior_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prior_bundle, copy)
    bundle = Bundle(copy)
    wm = bundle.load_world_model()
    state = torch.load(bundle.bc_prior_file, weights_only=True)
    save_torch(bundle.bc_prior_file, {**state, "world_model": "0" * 12})
    with pytest.raises(BundleError, match="another world model"):
        bundle.load_bc_prior(wm)
    bundle.bc_prior_file.unlink()
    with pytest.raises(BundleError, match="genrl train-bc-prior"):
        bundle.load_bc_prior(wm)
    with pytest.raises(BundleError, match="genrl train-bc-prior"):  # learning with a weight needs one
        GenRL.load(copy, policies_dir=tmp_path / "p").learn("stand up", {**FAST, "updates": 1, "bc_weight": 0.5})


def test_bc_weight_keeps_imagined_actions_near_the_prior(prior_bundle):
    agent = GenRL.load(prior_bundle)
    prior = Bundle(prior_bundle).load_bc_prior(agent.wm)
    target = agent.target("stand up straight", steps=FAST["horizon"] + 1)
    starts = StartStates(agent.wm, agent.bundle, "auto", agent.connector, agent.aligner, agent.vlm.embed_dim,
                         torch.Generator().manual_seed(0))
    eval_starts = starts.sample(64)

    def prior_nll_after(weight: float) -> float:
        cfg = agent.behaviour_config({**FAST, "bc_weight": weight, "actor_lr": 1e-3})
        torch.manual_seed(0)
        learner = BehaviourLearner(agent.wm, cfg, agent.wm.cfg.action_dim, bc_prior=prior)
        for _ in range(40):
            metrics = learner.update(*starts.sample(cfg.batch), target)
        assert ("prior_nll" in metrics) == (weight > 0)
        with torch.no_grad():
            traj = actor_rollout(agent.wm, learner.actor, *eval_starts, cfg.horizon, prior)
        return float(-traj["prior_logp"].mean())

    assert prior_nll_after(5.0) < prior_nll_after(0.0) - 0.1


def test_bc_weight_is_checked_and_names_a_policy_only_when_set(prior_bundle, tmp_path):
    agent = GenRL.load(prior_bundle, policies_dir=tmp_path / "p")
    with pytest.raises(ConfigError, match="bc_weight"):
        agent.behaviour_config({"bc_weight": -1})
    with pytest.raises(ConfigError, match="train-bc-prior"):
        BehaviourLearner(agent.wm, agent.behaviour_config({"bc_weight": 0.3}), agent.wm.cfg.action_dim)
    plain = agent.plan("walk forward", {})
    assert agent.plan("walk forward", {"bc_weight": 0.0}).slug == plain.slug  # the default keeps old names
    assert agent.plan("walk forward", {"bc_weight": 0.3}).slug != plain.slug
    policy = agent.learn("walk forward", {**FAST, "updates": 2, "bc_weight": 0.3})
    assert policy.meta.updates_done == 2 and policy.config.bc_weight == 0.3


def test_the_cli_refuses_a_bad_update_count(prior_bundle, walker_random_data, capsys):
    assert main(["train-bc-prior", "--data", str(walker_random_data), "--bundle", str(prior_bundle),
                 "--updates", "0"]) == 2
    assert "--updates must be >= 1" in capsys.readouterr().err
