"""`genrl dyna` on a tiny bundle and real episodes: one round learns, scores, collects with the
policy, fine-tunes the world model and rebuilds the start states; a rerun resumes (does nothing);
the source bundle and dataset stay untouched."""

import dataclasses
import json

import pytest

from genrl_core.bundle import Bundle, file_digest, load_torch
from genrl_core.cli import DYNA_OWN_FLAGS, build_parser, main
from genrl_core.cli_flags import plan_values
from genrl_core.data.store import EpisodeStore
from genrl_core.dyna import STAGES, Driver, DynaPlan, report, run_dyna
from genrl_core.errors import ConfigError
from genrl_core.policies import read_meta

FAST = (("updates", "4"), ("batch", "8"), ("hidden", "32"), ("layers", "1"), ("log_every", "1"))


def test_one_round_collects_with_the_policy_fine_tunes_and_a_rerun_resumes(tiny_bundle, walker_random_data,
                                                                          tmp_path):
    source_wm, source_episodes = file_digest(tiny_bundle / "world_model.pt"), EpisodeStore(walker_random_data).paths()
    plan = DynaPlan(drivers=(Driver.parse("stand up straight@walker_stand"),), rounds=1, episodes=1, wm_updates=3,
                    eval_episodes=1, settings=FAST)
    out = tmp_path / "dyna"
    state = run_dyna(tiny_bundle, walker_random_data, out, plan, log=lambda *_: None)

    first, closing = state["rounds"]
    assert first["done"] == list(STAGES) and closing["done"] == ["learn"]
    assert first["wm_step_after"] == first["wm_step"] + 3 == closing["wm_step"]
    name = "stand up straight@walker_stand"
    for rec in (first, closing):
        row = rec["policies"][name]
        assert row["updates"] == 4 and len(row["returns"]) == 1 and isinstance(row["normalised"], float)
        assert row["imagined_return"] is None  # the tiny bundle has no reward heads
    # the closing policy learned in the fine-tuned world model, on start states rebuilt for it
    wm = file_digest(out / "bundle" / "world_model.pt")
    assert wm != source_wm
    assert read_meta(out / "round_01" / "policies" / closing["policies"][name]["slug"]).world_model == wm
    assert read_meta(out / "round_00" / "policies" / first["policies"][name]["slug"]).world_model == source_wm
    assert load_torch(Bundle(out / "bundle").start_states_file)["world_model"] == wm
    # round 0's policy collected its episode into the run's data, not into the source dataset
    new = [p.name for p in EpisodeStore(out / "data").paths() if p.name.startswith("learned_")]
    assert new == [f"learned_{first['policies'][name]['slug']}-00000.npz"]
    assert EpisodeStore(walker_random_data).paths() == source_episodes
    assert file_digest(tiny_bundle / "world_model.pt") == source_wm
    assert json.loads((out / "dyna.json").read_text()) == state

    logs = []
    assert run_dyna(tiny_bundle, walker_random_data, out, plan, log=logs.append) == state
    assert not [line for line in logs if line.startswith("[dyna] round")]  # every stage was recorded as done
    assert file_digest(out / "bundle" / "world_model.pt") == wm
    assert "| 1 |" in report(state) and name in report(state)

    # a larger --rounds continues: the closing round's policy is kept and collects, a new closing round follows
    more = run_dyna(tiny_bundle, walker_random_data, out, dataclasses.replace(plan, rounds=2),
                    log=lambda *_: None)
    assert [r["done"] for r in more["rounds"]] == [list(STAGES), list(STAGES), ["learn"]]
    assert more["rounds"][1]["policies"] == closing["policies"]
    assert more["rounds"][2]["wm_step"] == closing["wm_step"] + 3
    assert len([p for p in EpisodeStore(out / "data").paths() if p.name.startswith("learned_")]) == 2

    with pytest.raises(ConfigError, match="episodes was 1, now 2"):  # resuming with other settings is refused
        run_dyna(tiny_bundle, walker_random_data, out, dataclasses.replace(plan, episodes=2))
    with pytest.raises(ConfigError, match="data was"):  # another dataset would be mixed into the run's
        run_dyna(tiny_bundle, tmp_path, out, plan)


def test_bad_dyna_requests_are_named(tiny_bundle, walker_random_data, tmp_path, capsys):
    with pytest.raises(ConfigError, match="walker_fly"):
        Driver.parse("fly@walker_fly")
    with pytest.raises(ConfigError, match="at least one --prompt"):
        DynaPlan(drivers=())
    oracle = Driver.parse(" oracle:walker_run")
    assert oracle.settings == (("reward", "oracle:walker_run"),) and oracle.name == "oracle:walker_run"
    assert Driver.parse("walk forward @ walker_walk").name == "walk forward@walker_walk"
    assert Driver.parse("run fast").task is None
    # the tiny bundle has no reward heads: an oracle prompt is refused before anything is copied
    code = main(["dyna", "--bundle", str(tiny_bundle), "--data", str(walker_random_data), "--out", str(tmp_path / "x"),
                 "--prompt", "oracle:walker_run"])
    assert code == 2 and "reward heads" in capsys.readouterr().err and not (tmp_path / "x").exists()
    code = main(["dyna", "--bundle", str(tiny_bundle), "--data", str(walker_random_data), "--out", str(tmp_path / "y"),
                 "--prompt", "run", "--set", "speed=3"])
    assert code == 2 and "speed" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_dyna_flags_are_its_plans_fields_under_their_names():
    base = ["dyna", "--bundle", "b", "--data", "d", "--out", "o", "--prompt", "run"]
    args = build_parser().parse_args(base)
    assert plan_values(args, DynaPlan, DYNA_OWN_FLAGS) == {
        "rounds": 3, "episodes": 8, "wm_updates": 4000, "wm_minutes": 0.0, "connector_updates": 0, "eval_episodes": 3}
    args = build_parser().parse_args([*base, "--rounds", "2", "--episodes", "1", "--wm-updates", "5", "--wm-minutes",
                                      "1.5", "--connector-updates", "7", "--eval-episodes", "0"])
    assert plan_values(args, DynaPlan, DYNA_OWN_FLAGS) == {
        "rounds": 2, "episodes": 1, "wm_updates": 5, "wm_minutes": 1.5, "connector_updates": 7, "eval_episodes": 0}
