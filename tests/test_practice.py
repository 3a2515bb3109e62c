"""`genrl practice` on a tiny bundle and real episodes: the drivers collect into the run's data, the
world model and every learner train on the growing replay, the curve is scored in the simulator,
a rerun resumes without collecting again, a larger --frames continues, and the run ends with a
bundle whose world model, start states, reward heads and policies belong together."""

import dataclasses
import json

import numpy as np
import pytest

from genrl_core.agent import GenRL
from genrl_core.bundle import Bundle, file_digest, load_torch, save_torch
from genrl_core.cli import main
from genrl_core.data.store import EpisodeStore, read_arrays
from genrl_core.errors import ConfigError
from genrl_core.models.actor_critic import Actor
from genrl_core.practice import (
    FINISH_STAGES,
    PREFIX,
    TRAIN_STATE,
    EnvWorkers,
    PracticeDriver,
    PracticePlan,
    run_practice,
)

FAST = (("batch", "8"), ("hidden", "32"), ("layers", "1"), ("horizon", "8"), ("align_states", "4"))
DRIVERS = ("oracle:walker_stand", "stand up straight@walker_stand", "explore")


def plan(**changes) -> PracticePlan:
    base = PracticePlan(drivers=tuple(PracticeDriver.parse(d) for d in DRIVERS), frames=1, train_ratio=0.1,
                        warmup_updates=2, eval_every=1000, eval_episodes=1, connector_updates=2, settings=FAST)
    return dataclasses.replace(base, **changes)


def test_practice_collects_learns_scores_resumes_and_writes_a_bundle(tiny_bundle, walker_random_data, tmp_path):
    source_wm, source_episodes = file_digest(tiny_bundle / "world_model.pt"), EpisodeStore(walker_random_data).paths()
    out = tmp_path / "practice"
    state = run_practice(tiny_bundle, walker_random_data, out, plan(), log=lambda *_: None)

    # one cycle: one episode per driver, in the run's data only
    names = sorted(p.stem for p in EpisodeStore(out / "data").paths() if p.name.startswith(PREFIX))
    assert len(names) == 3 and [row["name"] for row in sorted(state["collected"], key=lambda r: r["name"])] == names
    assert EpisodeStore(walker_random_data).paths() == source_episodes
    assert file_digest(tiny_bundle / "world_model.pt") == source_wm
    frames = sum(r["frames"] for r in state["collected"])
    assert frames == 3 * 501
    # the curve: a score before collecting and one at the end, for both learning drivers with a task
    assert [row["frames"] for row in state["curve"]] == [0, frames]
    for row in state["curve"]:
        assert set(row["scores"]) == {"oracle:walker_stand", "stand up straight@walker_stand"}
        assert all(isinstance(s["normalised"], float) for s in row["scores"].values())
    updates = state["curve"][-1]["wm_updates"]
    assert updates == int(frames * 0.1 / (4 * 8)) > 0  # the tiny preset's batch 4 x seq_len 8
    assert json.loads((out / "practice.json").read_text()) == state

    # the bundle: a new world model, and everything in it built for that world model
    bundle = out / "bundle"
    wm = file_digest(bundle / "world_model.pt")
    assert wm != source_wm and state["finished"] == list(FINISH_STAGES)
    assert load_torch(Bundle(bundle).start_states_file)["world_model"] == wm
    assert load_torch(Bundle(bundle).reward_heads_file)["world_model"] == wm
    agent = GenRL.load(bundle)
    policies = {p.meta.prompt: p for p in agent.policies.list()}
    assert set(policies) == {"oracle walker_stand", "stand up straight"}
    ev = agent.evaluate(policies["stand up straight"], "walker_stand", episodes=1, max_steps=5)
    assert ev["env_steps"] == 10

    # a rerun resumes: nothing is collected or trained again
    state_file = (out / TRAIN_STATE).read_bytes()
    again = run_practice(tiny_bundle, walker_random_data, out, plan(), log=lambda *_: None)
    assert again["collected"] == state["collected"] and (out / TRAIN_STATE).read_bytes() == state_file

    # a larger --frames continues from the saved state and finishes the bundle again
    more = run_practice(tiny_bundle, walker_random_data, out, plan(frames=frames + 1), log=lambda *_: None)
    assert len(more["collected"]) == 6 and more["curve"][-1]["frames"] == 2 * frames
    assert more["curve"][-1]["wm_updates"] > updates
    assert file_digest(bundle / "world_model.pt") != wm


def test_bad_drivers_and_settings_are_refused_before_any_work(tiny_bundle, walker_random_data, tmp_path):
    with pytest.raises(ConfigError, match="held-out"):
        PracticeDriver.parse("oracle:walker_flip")
    with pytest.raises(ConfigError, match="learning --driver"):
        plan(drivers=(PracticeDriver.parse("explore"),))
    with pytest.raises(ConfigError, match="online-fraction"):
        plan(online_fraction=1.5)
    with pytest.raises(ConfigError, match="horizon"):
        plan(settings=(("horizon", "soon"),))
    out = tmp_path / "p"
    code = main(["practice", "--bundle", str(tiny_bundle), "--data", str(walker_random_data), "--out", str(out),
                 "--driver", "walk@walker_nope"])
    assert code == 2 and not out.exists()
    with pytest.raises(ConfigError, match="--env-workers"):  # from Python, where argparse does not check it
        run_practice(tiny_bundle, walker_random_data, out, plan(), env_workers="threads", log=lambda *_: None)
    assert not out.exists()


def test_a_rerun_with_other_settings_is_refused(tiny_bundle, walker_random_data, tmp_path):
    out = tmp_path / "p"
    run_practice(tiny_bundle, walker_random_data, out, plan(frames=0, connector_updates=0), log=lambda *_: None)
    with pytest.raises(ConfigError, match="train_ratio"):
        run_practice(tiny_bundle, walker_random_data, out, plan(frames=0, train_ratio=2.0), log=lambda *_: None)


def test_learners_warm_start_from_the_bundles_policy_for_their_prompt_or_task(tiny_bundle, walker_random_data,
                                                                              tmp_path):
    import shutil

    import torch

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    learned = GenRL.load(bundle).learn("stand up straight", {**dict(FAST), "updates": "3"})
    weights = load_torch(learned.policy_file)

    # no collecting and no world-model update: the warm-up trains only the warm-started critics
    state = run_practice(bundle, walker_random_data, tmp_path / "p", plan(frames=0, eval_episodes=0,
                                                                          connector_updates=0), log=lambda *_: None)
    assert state["collected"] == []
    policies = {p.meta.prompt: p for p in GenRL.load(tmp_path / "p" / "bundle").policies.list()}
    for prompt in ("stand up straight", "oracle walker_stand"):  # the oracle driver: from its task's prompt
        got = load_torch(policies[prompt].policy_file)
        assert all(torch.equal(got[k], weights[k]) for k in weights)
        assert policies[prompt].meta.updates_done == 3 + 2

    with pytest.raises(ConfigError, match="no-warm-start"):
        run_practice(bundle, walker_random_data, tmp_path / "q",
                     plan(frames=0, settings=(*FAST, ("hidden", "16"))), log=lambda *_: None)
    cold = run_practice(bundle, walker_random_data, tmp_path / "r", plan(frames=0, eval_episodes=0, warm_start=False,
                                                                         connector_updates=0), log=lambda *_: None)
    assert cold["collected"] == []
    policies = {p.meta.prompt: p for p in GenRL.load(tmp_path / "r" / "bundle").policies.list()}
    got = load_torch(policies["stand up straight"].policy_file)
    assert not all(torch.equal(got[k], weights[k]) for k in weights)


def test_minutes_end_the_practising_and_still_write_the_bundle(generalist_bundle, walker_random_data, tmp_path):
    lines = []
    state = run_practice(generalist_bundle, walker_random_data, tmp_path / "p",
                         plan(frames=10**6, eval_episodes=0, connector_updates=0), log=lines.append, minutes=1e-9)
    assert state["collected"] == [] and state["finished"] == list(FINISH_STAGES)
    assert any("minutes are up" in line for line in lines)
    assert (tmp_path / "p" / "bundle" / "world_model.pt").exists()
    # the source's generalist fits its old world model only: not copied, and the log says how to go on from it
    assert not (tmp_path / "p" / "bundle" / "generalist").exists()
    assert any(f"--warm-from {generalist_bundle / 'generalist'}" in line for line in lines)
    with pytest.raises(ConfigError, match="minutes"):
        run_practice(generalist_bundle, walker_random_data, tmp_path / "q", plan(), minutes=-1)


def test_ray_env_workers_roll_the_same_episodes_as_local_ones(tiny_bundle, tmp_path):
    """--env-workers ray: each episode is a Ray task that gets the weights as objects and hands the
    episode back (no shared disk needed); this process saves it. Same jobs, same episodes as the
    in-process path: same seeds, so the same resets and the same actions."""
    ray = pytest.importorskip("ray")
    wm = Bundle(tiny_bundle).load_world_model()
    actor = Actor(wm.cfg.deter + wm.cfg.stoch_dim, wm.cfg.action_dim, 32, 1)
    save_torch(tmp_path / "actor.pt", actor.state_dict())
    job = {"driver": "d", "env": "walker_stand", "init": "default", "policy": "practice:test", "hidden": 32,
           "layers": 1, "wm": str(tiny_bundle / "world_model.pt"), "wm_config": dataclasses.asdict(wm.cfg)}
    jobs = {where: [{**job, "data": str(tmp_path / where), "name": f"{PREFIX}ep-{i}", "seed": i,
                     "actor": str(tmp_path / "actor.pt") if i else None} for i in range(2)]  # one acts at random
            for where in ("local", "ray")}
    local = EnvWorkers(1).run(jobs["local"])
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20)
    try:
        workers = EnvWorkers(1, "ray")
        remote = workers.run(jobs["ray"])
        workers.close()
    finally:
        ray.shutdown()
    assert [r["frames"] for r in remote] == [r["frames"] for r in local] == [501, 501]
    for a, b in zip(EpisodeStore(tmp_path / "local").paths(), EpisodeStore(tmp_path / "ray").paths(), strict=True):
        ea, eb = (read_arrays(p, ("image", "action", "reward")) for p in (a, b))
        assert a.name == b.name and np.array_equal(ea["image"][0], eb["image"][0])  # the same reset
        np.testing.assert_allclose(ea["action"][:50], eb["action"][:50], atol=1e-4)  # the same policy acting
    with pytest.raises(ConfigError, match="--env-workers"):
        EnvWorkers(1, "threads")
