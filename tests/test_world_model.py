"""RSSM world model: learning, save/load, resume, errors, DDP, open-loop evaluation."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers_state import assert_same_state

from genrl_core.bundle import Bundle, BundleError, load_weights
from genrl_core.cli import main
from genrl_core.data import EpisodeStore, load_episode
from genrl_core.models.rssm import RSSM, RSSMConfig
from genrl_core.train.world_model import TrainingDiverged, train_world_model

TINY = RSSMConfig(deter=32, stoch=4, classes=4, hidden=32, depth=4)
QUIET = {"progress": False, "log": lambda *_: None}


def _log(bundle):
    return [json.loads(line) for line in (bundle / "logs" / "world_model.jsonl").read_text().splitlines()]


def test_observe_and_imagine_shapes():
    model = RSSM(TINY)
    images = torch.randint(0, 255, (2, 5, 64, 64, 3), dtype=torch.uint8)
    out = model.observe(images, torch.zeros(2, 5, 6), torch.zeros(2, 5, dtype=torch.bool))
    assert out["post"].shape == (2, 5, 4, 4) and out["deter"].shape == (2, 5, 32)
    assert torch.allclose(out["post"].sum(-1), torch.ones(2, 5, 4))
    assert out["post"].min() >= 0.01 / 4 - 1e-6  # unimix keeps every class possible
    img = model.imagine(out["deter"][:, -1], out["stoch"][:, -1], torch.zeros(2, 7, 6))
    assert img["stoch"].shape == (2, 8, 4, 4) and img["action"].shape == (2, 7, 6)  # the start state first
    assert torch.equal(img["stoch"][:, 0], out["stoch"][:, -1])
    assert model.decode(img["stoch"]).shape == (2, 8, 3, 64, 64)
    # a policy gives the same rollout as its actions given up front
    taken = model.imagine(out["deter"][:, -1], out["stoch"][:, -1], lambda d, s: d[:, :6].tanh(), steps=7,
                          sample=False)
    replay = model.imagine(out["deter"][:, -1], out["stoch"][:, -1], taken["action"], sample=False)
    assert torch.equal(taken["stoch"], replay["stoch"]) and torch.equal(taken["deter"], replay["deter"])


def test_is_first_resets_the_state():
    model = RSSM(TINY).eval()
    images = torch.randint(0, 255, (1, 6, 64, 64, 3), dtype=torch.uint8)
    actions = torch.randn(1, 6, 6)
    first = torch.zeros(1, 6, dtype=torch.bool)
    first[0, 3] = True
    a = model.observe(images, actions, first, sample=False)
    b = model.observe(images[:, 3:], actions[:, 3:], first[:, 3:], sample=False)
    torch.testing.assert_close(a["deter"][:, 3:], b["deter"])


def test_tiny_loss_falls_and_bundle_round_trips(tmp_path, walker_random_data):
    bundle = tmp_path / "bundle"
    res = train_world_model(walker_random_data, bundle, preset="tiny", **QUIET)
    rows = _log(bundle)
    assert rows[-1]["step"] == 60 and rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["world_model_preset"] == "tiny" and cfg["world_model_train"]["step"] == 60
    loaded = RSSM(RSSMConfig(**cfg["world_model"]))
    load_weights(loaded, bundle / "world_model.pt")
    images = torch.from_numpy(EpisodeStore(walker_random_data).load(EpisodeStore(walker_random_data).paths()[0])[
        "image"][:8])[None]
    post_a = res["model"].eval().posterior_probs(images)
    post_b = loaded.eval().posterior_probs(images)
    torch.testing.assert_close(post_a, post_b)
    torch.testing.assert_close(res["model"].decode(post_a), loaded.decode(post_b))


def test_resume_is_exact_20_plus_10_equals_30(tmp_path, walker_random_data):
    """README: a resume restores weights, optimizer, step, RNG and sampler state. So 20 updates, a
    fresh process-level start that resumes, and 10 more give bit-identical tensors to 30 straight."""
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    train_world_model(walker_random_data, resumed, preset="tiny", overrides=["train.steps=20"], **QUIET)
    assert torch.load(Bundle(resumed).train_state_file("world_model"), weights_only=True)["step"] == 20
    at_20 = torch.load(resumed / "world_model.pt", weights_only=True)
    res = train_world_model(walker_random_data, resumed, preset="tiny", overrides=["train.steps=30"], **QUIET)
    train_world_model(walker_random_data, straight, preset="tiny", overrides=["train.steps=30"], **QUIET)
    assert [r["step"] for r in _log(resumed)] == [10, 20, 30]  # the second run logged only step 30
    a = torch.load(Bundle(resumed).train_state_file("world_model"), weights_only=True)
    b = torch.load(Bundle(straight).train_state_file("world_model"), weights_only=True)
    assert a.keys() == b.keys() >= {"model", "optimizer", "torch_rng", "replay_rng", "step"}
    a.pop("elapsed"), b.pop("elapsed")  # wall-clock seconds: the only field allowed to differ
    assert_same_state(a, b)  # weights, Adam moments and step counts, torch and sampler RNG streams
    assert_same_state(torch.load(resumed / "world_model.pt", weights_only=True),
                      torch.load(straight / "world_model.pt", weights_only=True))
    assert_same_state(res["model"].state_dict(), b["model"])
    # the last 10 updates did change the weights (the equality above is not of two idle runs)
    assert not all(torch.equal(at_20[k], v) for k, v in b["model"].items())


def test_errors_are_clear(tmp_path, walker_random_data, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_world_model(tmp_path / "nope", tmp_path / "b", preset="tiny", **QUIET)
    bundle = tmp_path / "bundle"
    train_world_model(walker_random_data, bundle, preset="tiny", overrides=["train.steps=2"], **QUIET)
    with pytest.raises(BundleError, match="preset 'tiny', not 'small'"):
        train_world_model(walker_random_data, bundle, preset="small", **QUIET)
    with pytest.raises(BundleError, match="other sizes"):
        train_world_model(walker_random_data, bundle, preset="tiny", overrides=["model.deter=64"], **QUIET)
    with pytest.raises(ValueError, match="every episode is shorter than seq_len 600"):
        train_world_model(walker_random_data, tmp_path / "c", preset="tiny", overrides=["train.seq_len=600"],
                          **QUIET)
    assert main(["train-wm", "--data", str(walker_random_data), "--out", str(tmp_path / "d"), "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(["train-wm", "--data", str(walker_random_data), "--out", str(tmp_path / "d"), "--preset", "tiny",
                 "--set", "train.batch=zero"]) == 2
    assert "bad value for train.batch: expected int, got 'zero'" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, walker_random_data):
    bundle = tmp_path / "bundle"
    train_world_model(walker_random_data, bundle, preset="tiny", overrides=["train.steps=5"], **QUIET)
    before = (bundle / "world_model.pt").read_bytes()
    poisoned = EpisodeStore(tmp_path / "poisoned")  # actions with NaN make the loss NaN
    for path in EpisodeStore(walker_random_data).paths():
        ep = load_episode(path)
        ep["action"][:] = np.nan
        poisoned.save(path.stem, ep)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train_world_model(poisoned.root, bundle, preset="tiny", overrides=["train.steps=10"], **QUIET)
    assert (bundle / "world_model.pt").read_bytes() == before
    assert torch.load(Bundle(bundle).train_state_file("world_model"), weights_only=True)["step"] == 5


def test_ddp_two_processes_stay_in_sync_and_average_their_gradients(tmp_path, walker_random_data):
    bundle = tmp_path / "bundle"
    script = (
        "import sys, torch, torch.distributed as dist\n"
        "from genrl_core.train.world_model import train_world_model\n"
        "res = train_world_model(sys.argv[1], sys.argv[2], preset='tiny', overrides=['train.steps=6'], "
        "progress=False, log=lambda *_: None)\n"
        "flat = torch.cat([p.detach().flatten() for p in res['model'].parameters()])\n"
        "gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]\n"
        "dist.all_gather(gathered, flat)\n"
        "assert all(torch.equal(gathered[0], g) for g in gathered), 'replicas diverged'\n"
        "if dist.get_rank() == 0:\n"
        "    torch.save({n: p.detach() for n, p in res['model'].named_parameters()}, sys.argv[2] + '.params.pt')\n"
        "open(f'{sys.argv[2]}.rank{dist.get_rank()}', 'w').write(f\"in sync {res['step']}\")\n"
    )
    path = tmp_path / "ddp_check.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: the rendezvous binds a free port itself (no fixed port to collide with another run)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(path), str(walker_random_data), str(bundle)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # each rank reports in its own file (their stdout would interleave)
    assert [(tmp_path / f"bundle.rank{r}").read_text() for r in (0, 1)] == ["in sync 6", "in sync 6"]
    assert json.loads((bundle / "config.json").read_text())["world_model_train"]["world_size"] == 2
    ddp = torch.load(tmp_path / "bundle.params.pt", weights_only=True)
    shipped = torch.load(bundle / "world_model.pt", weights_only=True)
    assert all(torch.equal(shipped[name], p) for name, p in ddp.items())  # the bundle holds the replicas' weights
    # baseline: rank 0 alone (same seeds, so the same initial weights and batches) learns other weights;
    # the difference is the other rank's gradients averaged in, far above float reordering noise (~1e-7)
    alone = tmp_path / "alone"
    train_world_model(walker_random_data, alone, preset="tiny", overrides=["train.steps=6"], **QUIET)
    single = torch.load(alone / "world_model.pt", weights_only=True)
    gap = max(float((single[name] - p).abs().max()) for name, p in ddp.items())
    assert gap > 1e-4, gap


def test_open_loop_eval_writes_metrics_and_video_and_beats_a_grey_frame(tmp_path, walker_random_data):
    bundle = tmp_path / "bundle"
    train_world_model(walker_random_data, bundle, preset="tiny", **QUIET)  # the preset's 60 updates
    assert main(["eval-wm", "--bundle", str(bundle), "--data", str(walker_random_data), "--episodes", "1",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "open_loop.json").read_text())
    assert len(metrics["mse"]) == 50 and len(metrics["psnr"]) == 50
    assert np.isfinite(metrics["psnr"]).all()
    assert (tmp_path / "eval" / "open_loop.mp4").stat().st_size > 1000
    # baseline: a constant mid-grey guess of the same windows (5 starts x 50 frames of the episode)
    ep = load_episode(walker_random_data / metrics["episodes"][0])["image"].astype(np.float32)
    grey = np.mean([((ep[s: s + 50] - 127.5) / 255) ** 2 for s in (0, 100, 200, 300, 400)])
    # measured: 0.018 for the 45 predicted steps vs 0.083 for grey (an untrained model: 0.165)
    assert np.mean(metrics["mse"][5:]) < 0.5 * grey, (metrics["mse"], grey)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job (`nohup ... &`)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_a_checkpoint_and_exits(tmp_path, walker_random_data, stop):
    """SIGTERM as `kill PID` or a job scheduler sends; SIGINT as `kill -INT PID` to a run started in
    the background, which begins with SIGINT ignored."""
    bundle = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-m", "genrl_core.cli", "train-wm", "--data", str(walker_random_data),
                             "--out", str(bundle), "--preset", "tiny", "--set", "train.steps=100000",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ignore_sigint)
    log = bundle / "logs" / "world_model.jsonl"
    deadline = time.time() + 120
    try:
        while not log.exists() and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(getattr(signal, stop))
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a run the signal did not stop must not outlive the test
    assert proc.returncode == 130 and "interrupted at step" in out
    step = torch.load(Bundle(bundle).train_state_file("world_model"), weights_only=True)["step"]
    assert step >= 10 and json.loads((bundle / "config.json").read_text())["world_model_train"]["step"] == step


def test_a_new_world_model_starts_from_another_bundles(tmp_path, walker_random_data, tiny_bundle):
    """--init-from: step 0 and a fresh optimizer, but the other bundle's weights, so the first update's
    loss is the trained model's, far below a model started from nothing; other sizes are refused."""
    one_step = ["train.steps=1", "train.log_every=1"]
    started = tmp_path / "started"
    train_world_model(walker_random_data, started, preset="tiny", overrides=one_step, init_from=tiny_bundle, **QUIET)
    train_world_model(walker_random_data, tmp_path / "scratch", preset="tiny", overrides=one_step, **QUIET)
    assert _log(started)[0]["loss"] < 0.8 * _log(tmp_path / "scratch")[0]["loss"]
    cfg = json.loads((started / "config.json").read_text())
    assert cfg["world_model_train"]["step"] == 1 and cfg["world_model_init"].endswith(tiny_bundle.name)
    # resuming keeps the record and ignores --init-from (the bundle's own model wins)
    train_world_model(walker_random_data, started, preset="tiny", overrides=["train.steps=2"], **QUIET)
    assert json.loads((started / "config.json").read_text())["world_model_init"] == cfg["world_model_init"]
    with pytest.raises(BundleError, match="other sizes"):
        train_world_model(walker_random_data, tmp_path / "wide", preset="tiny", overrides=["model.deter=64"],
                          init_from=tiny_bundle, **QUIET)
    with pytest.raises(BundleError, match="no world_model.pt"):
        train_world_model(walker_random_data, tmp_path / "none", preset="tiny", init_from=tmp_path / "nope", **QUIET)


def test_adopting_another_bodys_model_keeps_all_but_its_action_inputs():
    """A 12-d-action model (quadruped) takes a 6-d one's (walker) weights: every tensor but the action
    columns of the dynamics' input layer, which keep their fresh values."""
    walker, quadruped = RSSM(TINY), RSSM(dataclasses.replace(TINY, action_dim=12))
    fresh = quadruped.img_in[0].weight.detach().clone()
    quadruped.adopt(walker.state_dict())
    stoch_dim = TINY.stoch * TINY.classes
    for key, value in walker.state_dict().items():
        if key != "img_in.0.weight":
            assert torch.equal(quadruped.state_dict()[key], value), key
    adopted = quadruped.img_in[0].weight
    assert torch.equal(adopted[:, :stoch_dim], walker.img_in[0].weight[:, :stoch_dim])
    assert torch.equal(adopted[:, stoch_dim:], fresh[:, stoch_dim:])
    assert not torch.equal(adopted[:, :stoch_dim], fresh[:, :stoch_dim])
