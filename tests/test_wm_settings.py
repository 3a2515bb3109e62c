"""World-model training settings for long and GPU runs: compile/precision choice, snapshots, time budget."""

import json

import numpy as np
import pytest
import torch

from genrl_core.config import WMTrainConfig
from genrl_core.train.loop import TrainState, numpy_rng, resolve_amp, should_compile, torch_rng
from genrl_core.train.world_model import SNAPSHOT_DIR, train_world_model

QUIET = {"progress": False, "log": lambda *_: None}


def test_compile_is_automatic_only_for_long_cuda_runs():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert should_compile("auto", cuda, 50_000) and not should_compile("auto", cuda, 500)
    assert not should_compile("auto", cpu, 50_000)  # 200 s of compiling for ~20% on a CPU: opt in only
    assert should_compile("true", cpu, 1) and not should_compile("false", cuda, 10**6)
    with pytest.raises(ValueError, match="train.compile"):
        WMTrainConfig(compile="yes")


def test_precision_follows_what_measured_fastest():
    cuda = torch.device("cuda")
    assert resolve_amp("auto", cuda, large=False) is None  # small models on a GPU: fp32 (casts cost more)
    assert resolve_amp("none", cuda, large=True) is None and resolve_amp("bf16", cuda, large=False) == torch.bfloat16


def test_snapshots_and_a_time_budget_stop_with_a_checkpoint(walker_random_data, tmp_path):
    out = tmp_path / "wm"
    train_world_model(walker_random_data, out, preset="tiny",
                      overrides=["train.steps=6", "train.snapshot_every=2", "train.log_every=2"], **QUIET)
    assert sorted(p.name for p in (out / SNAPSHOT_DIR).iterdir()) == [
        "world_model-0000002.pt", "world_model-0000004.pt", "world_model-0000006.pt"]
    final = torch.load(out / "world_model.pt")
    snap = torch.load(out / SNAPSHOT_DIR / "world_model-0000006.pt")
    assert all(torch.equal(final[k], snap[k]) for k in final)
    # a budget far below one run's length: it stops early, saved and resumable, and says so in config.json
    budget = tmp_path / "budget"
    result = train_world_model(walker_random_data, budget, preset="tiny",
                               overrides=["train.steps=100000", "train.max_minutes=0.002"], **QUIET)
    assert 1 <= result["step"] < 100000
    saved = json.loads((budget / "config.json").read_text())["world_model_train"]
    assert saved["step"] == result["step"] and (budget / "train_state" / "world_model.pt").exists()


def test_a_train_state_restores_its_step_time_and_random_streams(tmp_path):
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(1)
    streams = {"torch_rng": torch_rng(), "rng": numpy_rng(rng), "gen": (gen.get_state, gen.set_state)}
    TrainState(tmp_path / "state.pt", streams).save(7, 12.5, model={"w": torch.ones(2)})
    want = (torch.rand(3), rng.random(3), torch.rand(3, generator=gen))
    run = TrainState(tmp_path / "state.pt", streams)
    state = run.load()
    assert (run.step, run.elapsed) == (7, 12.5) and torch.equal(state["model"]["w"], torch.ones(2))
    got = (torch.rand(3), rng.random(3), torch.rand(3, generator=gen))
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert TrainState(tmp_path / "none.pt", streams).load() is None
