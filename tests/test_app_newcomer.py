"""The UI as a newcomer sees it (issue 26 item 9), with the real app on the tiny bundle: a shipped
policy carries its real-env score and video (`genrl evaluate --record`), which *Learned policies*
and its replay show; rows of one prompt show the settings that tell them apart; a score after very
few updates says so; the Updates field names its default; a new action empties the old results.
The layout and the clearing in a real browser: tests/test_app_browser.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers_jobs import finished

from app.config import AppConfig, shipped_bundles
from app.main import create_app
from app.service import Services
from app.ui import build_ui
from genrl_core.agent import GenRL
from genrl_core.bundle import Bundle
from genrl_core.cli import main
from genrl_core.evaluate import RECORD_FILE, RECORD_KEYS, RECORD_VIDEO, read_record
from genrl_core.policies import read_meta

# gradio's own use of pandas, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def shipped(tiny_bundle, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the tiny bundle shipping one policy, recorded as the shipped walker's are."""
    bundle = tmp_path_factory.mktemp("shipped") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    policy = GenRL.load(bundle, behaviour_preset="tiny").learn("stand up straight", {"updates": 2})
    argv = ["evaluate", "--policy", policy.slug, "--task", "walker_stand", "--episodes", "2", "--seed", "1000",
            "--bundle", str(bundle)]
    assert main([*argv, "--record"]) == 0
    return bundle, policy.slug


def test_evaluate_record_keeps_the_score_and_episode_0_in_the_policys_folder(shipped, capsys):
    bundle, slug = shipped
    folder = bundle / "policies" / slug
    record = json.loads((folder / RECORD_FILE).read_text())
    assert set(record) == {*RECORD_KEYS, "episodes", "seeds"}
    assert record["task"] == "walker_stand" and record["episodes"] == 2 and record["seeds"] == [1000, 1001]
    assert len(record["returns"]) == 2 and isinstance(record["normalised"], float)
    assert "/" not in json.dumps(record)  # no path: the bundle moves
    assert (folder / RECORD_VIDEO).read_bytes()[4:8] == b"ftyp"
    # a part of an episode is no score to keep
    capsys.readouterr()
    assert main(["evaluate", "--policy", slug, "--max-steps", "5", "--record", "--bundle", str(bundle)]) == 2
    assert "--record keeps whole episodes" in capsys.readouterr().err


@pytest.mark.parametrize("bundle", shipped_bundles(), ids=lambda b: b.name)
def test_every_shipped_bundle_is_small_and_its_policies_carry_their_real_env_records(bundle):
    """What `genrl serve` serves by default: each bundle under 50 MB (its tracked files: no training
    state), its stock policies learned on its own world model, each with a 3-episode real score."""
    tracked = [f for f in bundle.rglob("*") if f.is_file() and "train_state" not in f.parts]
    assert sum(f.stat().st_size for f in tracked) < 50 << 20
    digest = Bundle(bundle).world_model_digest()
    folders = sorted(p for p in (bundle / "policies").iterdir() if (p / "meta.json").exists())
    assert len(folders) >= (5 if bundle.name == "walker" else 1)
    for folder in folders:
        assert read_meta(folder).world_model == digest, folder
        record = read_record(folder)
        assert record is not None and record["episodes"] == 3 and record["seeds"] == [1000, 1001, 1002], folder
        assert isinstance(record["normalised"], float) and record["expert_return"] is not None, folder
        assert (folder / RECORD_VIDEO).stat().st_size < 2 << 20, folder  # small: the bundle stays under 50 MB


@pytest.fixture(scope="module")
def svc(shipped, tmp_path_factory) -> Iterator[Services]:
    """The services of a real app (with its UI) on the bundle that ships a recorded policy; the small
    preset's defaults, so that a few updates are few."""
    root = tmp_path_factory.mktemp("app_newcomer")
    app = create_app(shipped[0], db=root / "jobs.sqlite", runs=root / "runs", eval_episodes=0)
    with TestClient(app):
        app.state.services.bodies.agent(None, wait=60)  # loaded: the tests read its policies at once
        yield app.state.services


def test_a_shipped_policy_shows_its_recorded_score_and_replays_its_real_env_video(svc, shipped):
    _, slug = shipped
    row = next(p for p in svc.policies(None) if p["slug"] == slug)
    assert row["job"] is None and row["evaluated"] == "record"
    assert row["task"] == "walker_stand" and isinstance(row["normalised"], float)
    fns = {f.name: f.fn for f in build_ui(svc).fns.values()}
    imagined, real, align, text = fns["replay"]("walker", slug, None)
    assert imagined.endswith(".mp4") and real.endswith("-real.mp4") and align is None
    assert Path(real).read_bytes() == (shipped[0] / "policies" / slug / RECORD_VIDEO).read_bytes()
    assert Path(real).is_relative_to(svc.cfg.runs.resolve() / "cache")  # a copy the UI may serve
    assert "Recorded (2 episode(s), seeds 1000-1001" in text and "walker_stand" in text
    assert "no real-env run recorded" not in text
    assert svc.replay(None, slug).real.name == f"walker-{slug}-real.mp4"  # no body named: the default's


def test_policies_of_one_prompt_show_the_settings_that_tell_them_apart(svc, shipped):
    jobs = [svc.submit(svc.learn_request(prompt="stand up straight", steps=8, updates=3, seed=seed, eval_episodes=0))
            for seed in (0, 1)]
    jobs = [finished(svc, job.id) for job in jobs]
    rows = {p["slug"]: p for p in svc.policies(None)}
    assert rows[jobs[0].slug]["changed"]["updates"] == 3 and "seed" not in rows[jobs[0].slug]["changed"]
    assert rows[jobs[1].slug]["changed"]["seed"] == 1
    # the tiny preset's policy the bundle ships differs from this server's (small) defaults too
    assert rows[shipped[1]]["changed"]["hidden"] == 64
    table, _ = build_ui_fn(svc, "_gallery")("walker")
    shown = {tuple(row[:2]) for row in table.value["data"]}
    assert ("stand up straight", "updates=3") in {(p, s.split(", ")[0]) for p, s in shown}
    assert any("seed=1" in s for _, s in shown) and len({s for p, s in shown if p == "stand up straight"}) == 3


def test_a_score_after_very_few_updates_says_they_are_too_few_and_what_the_default_is(svc):
    job = finished(svc, svc.submit(svc.learn_request(prompt="walk forward", steps=8, updates=3, eval_episodes=0)).id)
    score = build_ui_fn(svc, "poll")(job.id, "")[7]  # the score panel
    default = svc.behaviour_defaults
    assert "Only 3 updates" in score and f"learns for {default.updates} updates" in score, score


def test_the_updates_field_names_its_default(svc, shipped, tmp_path):
    def label(services: Services) -> str:
        blocks = build_ui(services)
        return next(b.label for b in blocks.blocks.values() if (getattr(b, "label", None) or "").startswith("Updates"))

    default = svc.behaviour_defaults  # the served preset's, not a number written in the UI
    assert label(svc) == f"Updates (empty: {default.updates}, at most {default.max_minutes:g} min)"
    app = create_app(shipped[0], db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", default_updates=30,
                     preload=False)
    assert label(app.state.services).startswith("Updates (empty: 30")


def test_each_action_first_empties_the_results_an_earlier_one_showed(svc):
    blocks = build_ui(svc)
    clears = [fn for fn in blocks.fns.values() if fn.name in ("clear_results", "clear_replay")]
    triggers = {blocks.blocks[block_id].elem_id for fn in clears for block_id, _event in fn.targets}
    assert {"target-btn", "prompt", "learn-btn", "instant-btn", "replay-btn"} <= triggers, triggers
    for fn in clears:  # every panel emptied: no video, no plot, no text
        assert all(not value for value in fn.fn()) and len(fn.fn()) == len(fn.outputs)


def build_ui_fn(svc: Services, name: str):
    return next(f.fn for f in build_ui(svc).fns.values() if f.name == name)


def test_serve_without_bundles_named_serves_every_shipped_one_walker_first(tmp_path, monkeypatch):
    for name in ("cheetah", "walker", "half_built"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "config.json").write_text("{}")
        if name != "half_built":  # a folder without a world model is no bundle yet
            (tmp_path / "checkpoints" / name / "world_model.pt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert AppConfig.from_env().bundles == [Path("checkpoints/walker"), Path("checkpoints/cheetah")]
    assert AppConfig.from_env(bundles="checkpoints/cheetah").bundles == [Path("checkpoints/cheetah")]
