"""`genrl pipeline`: a bundle from nothing, resumable in time-boxed chunks."""

import signal
import time

import pytest

from genrl_core.agent import GenRL
from genrl_core.cli import main
from genrl_core.data import EpisodeStore
from genrl_core.evaluate import read_record
from genrl_core.pipeline import BudgetExhausted, run_pipeline, stage_status, time_budget

QUIET = {"log": lambda *_: None}


def test_time_budget_turns_its_timer_into_a_clean_stop():
    handler = signal.getsignal(signal.SIGALRM)
    with pytest.raises(BudgetExhausted), time_budget(0.001):  # 60 ms
        time.sleep(60)  # the timer's SIGALRM ends the wait; without it the test would fail slowly, not pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed, and the old handler is back
    assert signal.getsignal(signal.SIGALRM) == handler


def test_pipeline_in_chunks_then_complete_then_skips(tmp_path, capsys):
    out, data = tmp_path / "bundle", tmp_path / "data"

    def budget_ends_after_the_first_episode(line):
        # the budget's own stop signal (what its timer sends), delivered at a known point instead of
        # after some seconds: once collection has written exactly one episode
        if line.startswith("[collect] 1/"):
            signal.raise_signal(signal.SIGALRM)

    # it stops cleanly inside the first stage, keeping only whole files
    times = run_pipeline("walker", out, data, preset="tiny", recipe="tiny", budget_minutes=10,
                         log=budget_ends_after_the_first_episode)
    assert set(times) == {"collect"}
    assert not stage_status(out, data, "walker", "tiny", "tiny")["collect"]
    assert [p.name for p in EpisodeStore(data).paths()] == ["random-00000.npz"]
    assert not list(data.glob(".*.tmp"))  # no torn episode files
    # the same command again finishes every stage
    times = run_pipeline("walker", out, data, preset="tiny", recipe="tiny", **QUIET)
    assert set(times) == {"collect", "world_model", "vlm", "connector", "start_states", "generalist", "stock_policies"}
    assert all(stage_status(out, data, "walker", "tiny", "tiny").values())
    assert len(EpisodeStore(data)) == 3
    agent = GenRL.load(out)
    assert agent.target("stand up straight", steps=8).shape[0] == 8
    assert agent.act("stand up straight").slug.startswith("instant-")  # the bundle's generalist acts at once
    # the standard tasks' stock prompts ship learned, each with its real-env score
    shipped = {p.meta.prompt: read_record(p.path) for p in agent.policies.list()}
    assert set(shipped) == {"stand up straight", "walk forward", "run fast"}
    assert all(r is not None and r["episodes"] == 1 and r["task"].startswith("walker_") for r in shipped.values())
    # and a third run has nothing left to do
    assert main(["pipeline", "--body", "walker", "--out", str(out), "--data", str(data), "--preset", "tiny",
                 "--recipe", "tiny"]) == 0
    assert capsys.readouterr().out.count("finished, skipping") == 7


def test_pipeline_rejects_unknown_recipe(tmp_path, capsys):
    assert main(["pipeline", "--body", "walker", "--out", str(tmp_path), "--recipe", "huge"]) == 2
    assert "unknown recipe 'huge'" in capsys.readouterr().err
