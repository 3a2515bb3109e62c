"""`genrl pipeline`: a bundle from nothing, resumable in time-boxed chunks."""

from genrl_core.agent import GenRL
from genrl_core.cli import main
from genrl_core.data import EpisodeStore
from genrl_core.pipeline import run_pipeline, stage_status

QUIET = {"log": lambda *_: None}


def test_pipeline_in_chunks_then_complete_then_skips(tmp_path, capsys):
    out, data = tmp_path / "bundle", tmp_path / "data"
    # a budget far too short: it stops cleanly inside the first stage, keeping only whole files
    times = run_pipeline("walker", out, data, preset="tiny", recipe="tiny", budget_minutes=0.03, **QUIET)
    assert set(times) == {"collect"}
    assert not stage_status(out, data, "walker", "tiny", "tiny")["collect"]
    assert not list(data.glob(".*.tmp"))  # no torn episode files
    # the same command again finishes every stage
    times = run_pipeline("walker", out, data, preset="tiny", recipe="tiny", **QUIET)
    assert set(times) == {"collect", "world_model", "vlm", "connector", "start_states"}
    assert all(stage_status(out, data, "walker", "tiny", "tiny").values())
    assert len(EpisodeStore(data)) == 3
    assert GenRL.load(out).target("stand up straight", steps=8).shape[0] == 8
    # and a third run has nothing left to do
    assert main(["pipeline", "--body", "walker", "--out", str(out), "--data", str(data), "--preset", "tiny",
                 "--recipe", "tiny"]) == 0
    assert capsys.readouterr().out.count("finished, skipping") == 5


def test_pipeline_rejects_unknown_recipe(tmp_path, capsys):
    assert main(["pipeline", "--body", "walker", "--out", str(tmp_path), "--recipe", "huge"]) == 2
    assert "unknown recipe 'huge'" in capsys.readouterr().err
