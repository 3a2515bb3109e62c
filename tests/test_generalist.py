"""The generalist: a target-conditioned actor-critic, its target pool, training and zero-shot use."""

import pytest
import torch
import torch.nn.functional as F

from genrl_core.agent import GenRL
from genrl_core.generalist import GeneralistPlan, train_generalist
from genrl_core.models.actor_critic import feature
from genrl_core.models.generalist import target_condition
from genrl_core.models.reward import REWARD_KINDS, aligned_reward, similarity_matrix
from genrl_core.train.behaviour import StartStates
from genrl_core.train.generalist import REFINE_CRITIC_WARMUP, GeneralistLearner, TargetSampler
from genrl_core.train.generalist_targets import build_target_pool, prompt_bank

SMALL = {"batch": 8, "hidden": 32, "layers": 1}


@pytest.fixture(scope="module")
def agent(tiny_bundle, tmp_path_factory):
    return GenRL.load(tiny_bundle, policies_dir=tmp_path_factory.mktemp("policies"))


def one_hot(*shape, classes=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(classes, shape, generator=gen), classes).float()


@pytest.mark.parametrize("kind", REWARD_KINDS)
def test_one_target_per_trajectory_scores_each_row_against_its_own_target(agent, kind):
    wm = agent.wm
    stoch, classes = wm.cfg.stoch, wm.cfg.classes
    imagined = one_hot(3, 9, stoch, classes=classes, seed=1)
    probs = torch.softmax(torch.randn(3, 9, stoch, classes), -1)
    targets = one_hot(3, 9, stoch, classes=classes, seed=2)
    batched = similarity_matrix(kind, wm, imagined, targets, probs)
    for row in range(3):
        alone = similarity_matrix(kind, wm, imagined[row: row + 1], targets[row], probs[row: row + 1])
        torch.testing.assert_close(batched[row], alone[0])
    # and a row's reward really depends on its own target: another target gives another reward
    swapped = similarity_matrix(kind, wm, imagined, targets.roll(1, 0), probs)
    assert not torch.allclose(aligned_reward(batched, 4)[0], aligned_reward(swapped, 4)[0])


def test_condition_tells_a_still_target_from_a_moving_one_with_the_same_poses():
    poses = one_hot(4, 3, classes=4)
    still = poses[[0, 0, 1, 1]]  # two poses, each held: little change
    moving = poses[[0, 1, 0, 1]]  # the same two poses, alternating
    a, b = target_condition(still), target_condition(moving)
    half = a.shape[-1] // 2
    torch.testing.assert_close(a[:half], b[:half])  # same pose histogram
    assert b[half:].sum() > a[half:].sum()  # more motion


def test_prompt_bank_has_the_task_phrases_and_none_of_the_ladders_paraphrases():
    from benchmarks.score_ladder import PARAPHRASES

    bank = prompt_bank("walker", 300, seed=0)
    assert len(bank) == len(set(bank)) == 300
    assert "walking forward" in bank and "doing backflips" in bank
    held = {p for prompts in PARAPHRASES.values() for p in prompts}
    assert not held & set(bank)
    assert prompt_bank("walker", 300, seed=0) == bank  # reproducible


def test_target_pool_mixes_its_sources_and_its_targets_differ(agent):
    pool = build_target_pool(agent.vlm, agent.aligner, agent.connector, "walker", steps=9, prompts=12, random=6)
    stoch = pool["stoch"]
    assert stoch.shape == (18, 9, agent.wm.cfg.stoch) and stoch.dtype == torch.uint8
    assert sum(s.startswith("prompt:") for s in pool["source"]) == 12 and pool["source"].count("random") == 6
    assert len({tuple(t.flatten().tolist()) for t in stoch}) > 1


def test_conditioning_changes_the_imagined_rollout(agent):
    cfg = agent.behaviour_config({**SMALL, "horizon": 8, "align_states": 4})
    learner = GeneralistLearner(agent.wm, cfg, agent.wm.cfg.action_dim)
    starts = StartStates(agent.wm, agent.bundle, "auto", agent.connector, agent.aligner, agent.vlm.embed_dim,
                         torch.Generator().manual_seed(0))
    deter, stoch = starts.sample(4)
    cfg_wm = agent.wm.cfg
    a, b = (one_hot(9, cfg_wm.stoch, classes=cfg_wm.classes, seed=seed) for seed in (3, 4))
    rollouts = []
    for target in (a, b):
        actor = learner.policy(learner.condition(target.expand(4, -1, -1, -1)))
        traj = agent.wm.imagine(deter, stoch, lambda d, s, actor=actor: actor.act(feature(d, s)), 8, sample=False)
        rollouts.append(traj["action"])
    assert (rollouts[0] - rollouts[1]).abs().mean() > 1e-3


def test_a_tiny_generalist_learns_and_its_reward_rises_on_targets_it_never_saw(agent):
    cfg = agent.behaviour_config({**SMALL, "batch": 32, "hidden": 64, "horizon": 8, "align_states": 4,
                                  "actor_lr": 1e-3, "critic_lr": 1e-3})
    torch.manual_seed(0)
    learner = GeneralistLearner(agent.wm, cfg, agent.wm.cfg.action_dim)
    gen = torch.Generator().manual_seed(0)
    starts = StartStates(agent.wm, agent.bundle, "auto", agent.connector, agent.aligner, agent.vlm.embed_dim, gen)
    pool = build_target_pool(agent.vlm, agent.aligner, agent.connector, "walker", steps=9, prompts=0, random=96)
    train = TargetSampler({"stoch": pool["stoch"][:64]}, agent.wm.cfg.classes, agent.device, gen)
    held_out = TargetSampler({"stoch": pool["stoch"][64:]}, agent.wm.cfg.classes, agent.device,
                             torch.Generator().manual_seed(1))
    eval_starts, eval_targets = starts.sample(64), held_out.sample(64)

    def matching_reward() -> float:
        with torch.no_grad():
            actor = learner.policy(learner.condition(eval_targets))
            traj = agent.wm.imagine(*eval_starts, lambda d, s: actor.act(feature(d, s)), cfg.horizon, sample=False)
            sim = similarity_matrix(cfg.reward, agent.wm, traj["stoch"], eval_targets, traj["probs"])
            return float(aligned_reward(sim, cfg.align_states)[0][:, 1:].mean())

    before = matching_reward()
    for _ in range(150):
        learner.update(*starts.sample(cfg.batch), train.sample(cfg.batch))
    assert matching_reward() > before


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bundle, walker_random_data):
    """A copy of the tiny bundle with a generalist trained for a few updates (windows included)."""
    import shutil

    bundle = tmp_path_factory.mktemp("generalist") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    agent = GenRL.load(bundle)
    plan = GeneralistPlan(prompts=20, windows=8, random=8, episodes=2)
    meta = train_generalist(agent, {**SMALL, "updates": 6, "log_every": 1}, plan, walker_random_data,
                            log=lambda *_: None)
    return bundle, meta


def test_train_generalist_writes_a_generalist_that_acts_on_any_prompt(trained):
    bundle, meta = trained
    assert meta.finished and meta.updates_done == 6
    weights = (bundle / "generalist" / "policy.pt").read_bytes()
    again = train_generalist(GenRL.load(bundle), {**SMALL, "updates": 9}, log=lambda *_: None)
    assert again.updates_done == 6 and (bundle / "generalist" / "policy.pt").read_bytes() == weights  # kept
    pool = torch.load(bundle / "generalist" / "target.pt", weights_only=True)
    assert pool["source"].count("window") == 8 and len(pool["source"]) == 36
    values = torch.load(bundle / "generalist" / "values.pt", weights_only=True)  # what refinements start from
    assert set(values) == {"critic", "slow_critic", "norm"}
    agent = GenRL.load(bundle)
    policy = agent.act("do a cartwheel")  # a prompt it never trained on
    assert policy.slug.startswith("instant-") and policy.meta.prompt == "do a cartwheel"
    frames = agent.imagine(policy, steps=8)
    assert frames.shape == (8, 64, 64, 3)
    out = agent.evaluate(policy, "walker_stand", episodes=1, max_steps=5)
    assert out["task"] == "walker_stand" and out["env_steps"] == 10
    # two prompts, two conditions: the instant actors differ
    other = agent.act("lie down on your back")
    assert not torch.equal(policy.actor.cond, other.actor.cond) or torch.equal(policy.target, other.target)


def test_a_cancelled_generalist_resumes_to_the_same_weights_as_an_uninterrupted_one(trained, tmp_path):
    import shutil
    import threading

    from genrl_core.train.behaviour import LearningCancelled

    bundle, _ = trained
    settings = {**SMALL, "updates": 6, "log_every": 1}
    plan = GeneralistPlan(prompts=5, windows=0, random=3)
    weights = []
    for cancel_at in (None, 3):
        copy = tmp_path / f"bundle-{cancel_at}"
        shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("generalist"))
        agent = GenRL.load(copy)
        if cancel_at:
            cancel = threading.Event()
            with pytest.raises(LearningCancelled):
                train_generalist(agent, settings, plan, cancel=cancel, log=lambda *_: None,
                                 callback=lambda m, at=cancel_at, stop=cancel: m["update"] == at and stop.set())
            pool = torch.load(copy / "generalist" / "target.pt", weights_only=True)
            # the rerun asks for another pool: the saved one is kept, as the run began with it
            meta = train_generalist(agent, settings, GeneralistPlan(prompts=2, windows=0, random=1),
                                    log=lambda *_: None)
            assert torch.equal(torch.load(copy / "generalist" / "target.pt", weights_only=True)["stoch"],
                               pool["stoch"])
        else:
            meta = train_generalist(agent, settings, plan, log=lambda *_: None)
        assert meta.updates_done == 6
        weights.append(torch.load(copy / "generalist" / "policy.pt", weights_only=True))
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)


def test_act_without_a_generalist_names_the_command_to_train_one(agent):
    from genrl_core.bundle import BundleError

    with pytest.raises(BundleError, match="train-generalist"):
        agent.act("stand up straight")


def test_refining_starts_from_the_generalist_and_loads_as_a_policy(trained, tmp_path):
    bundle, _ = trained
    agent = GenRL.load(bundle, policies_dir=tmp_path / "policies")
    lr = 1e-4
    # the critic learns alone first, then the actor takes one step
    settings = {**SMALL, "updates": REFINE_CRITIC_WARMUP + 1, "log_every": 50, "actor_lr": lr, "init": "generalist"}
    refined = agent.learn("kneel on your knees", settings)
    assert refined.slug != agent.plan("kneel on your knees", {**settings, "init": "scratch"}).slug
    start = torch.load(bundle / "generalist" / "policy.pt", weights_only=True)
    after = torch.load(refined.policy_file, weights_only=True)
    # one Adam step from the generalist's weights moves each weight by at most the learning rate; the
    # critic-only updates before it move nothing
    moved = max(float((after[k] - start[k]).abs().max()) for k in start)
    assert 0 < moved <= lr * 1.01
    out = agent.evaluate(refined, "walker_sit_knees", episodes=1, max_steps=3)
    assert out["env_steps"] == 6
    frames = agent.imagine(refined, steps=8)
    assert frames.shape == (8, 64, 64, 3)


def test_a_warm_started_learner_takes_the_generalists_actor_and_values(trained, agent):
    from genrl_core.generalist import generalist_values
    from genrl_core.train.generalist import warm_started

    bundle, _ = trained
    folder = bundle / "generalist"
    actor = torch.load(folder / "policy.pt", weights_only=True)
    values = generalist_values(folder)
    cfg = agent.behaviour_config(SMALL)
    learner = warm_started(actor, values)(agent.wm, cfg, agent.wm.cfg.action_dim, None)
    for key, tensor in values["critic"].items():
        torch.testing.assert_close(learner.critic.state_dict()[key], tensor, rtol=0, atol=0)
    torch.testing.assert_close(learner.norm.state_dict(), values["norm"], rtol=0, atol=0)
    fresh = GeneralistLearner(agent.wm, cfg, agent.wm.cfg.action_dim)
    assert not all(torch.equal(fresh.critic.state_dict()[k], t) for k, t in values["critic"].items())


def test_a_generalist_on_a_newer_bundle_starts_from_the_last_one(trained, tmp_path):
    import shutil

    from genrl_core.bundle import BundleError

    bundle, _ = trained
    copy = tmp_path / "newer"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("generalist"))
    plan = GeneralistPlan(prompts=4, windows=0, random=2)
    # the first updates train the critic alone: the actor is still the last generalist's
    meta = train_generalist(GenRL.load(copy), {**SMALL, "updates": 3}, plan, log=lambda *_: None,
                            warm_from=bundle / "generalist")
    assert meta.finished
    start = torch.load(bundle / "generalist" / "policy.pt", weights_only=True)
    after = torch.load(copy / "generalist" / "policy.pt", weights_only=True)
    for key in start:
        torch.testing.assert_close(after[key], start[key], rtol=0, atol=0)
    other = tmp_path / "other"
    shutil.copytree(bundle, other, ignore=shutil.ignore_patterns("generalist"))
    with pytest.raises(BundleError, match="shape mismatch"):  # a generalist of another size does not fit
        train_generalist(GenRL.load(other), {**SMALL, "hidden": 48, "updates": 1}, plan, log=lambda *_: None,
                         warm_from=bundle / "generalist")
    with pytest.raises(BundleError, match="no trained generalist"):
        train_generalist(GenRL.load(other), {**SMALL, "updates": 1}, plan, log=lambda *_: None,
                         warm_from=tmp_path)


def test_refining_needs_a_generalist_and_a_matching_reward(agent):
    from genrl_core.bundle import BundleError
    from genrl_core.errors import ConfigError

    with pytest.raises(BundleError, match="train-generalist"):
        agent.learn("stand up straight", {**SMALL, "updates": 1, "init": "generalist"})
    with pytest.raises(ConfigError, match="init"):
        agent.behaviour_config({"init": "the moon"})
    with pytest.raises(ConfigError, match="oracle"):
        agent.behaviour_config({"init": "generalist", "reward": "oracle:walker_walk"})


def test_the_cli_refuses_bad_generalist_requests_with_a_message(generalist_bundle, tiny_bundle, capsys):
    from genrl_core.cli import main

    assert main(["act", "stand up straight", "--bundle", str(generalist_bundle), "--task", "walker_moon"]) == 2
    assert "unknown task 'walker_moon'" in capsys.readouterr().err
    assert main(["act", "stand up straight", "--bundle", str(tiny_bundle)]) == 2
    assert "train-generalist" in capsys.readouterr().err
    assert main(["train-generalist", "--bundle", str(tiny_bundle), "--prompts", "-1"]) == 2
    assert "must be >= 0" in capsys.readouterr().err
    assert main(["train-generalist", "--bundle", str(tiny_bundle), "--warm-from", str(tiny_bundle)]) == 2
    assert "no trained generalist" in capsys.readouterr().err
