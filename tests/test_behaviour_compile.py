"""The compiled behaviour update (`compile=true`; CUDA graphs on a GPU) learns exactly what the
eager one learns, and `compile=auto` compiles only where it pays."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch._inductor import config as inductor_config

from genrl_core.config import preset
from genrl_core.models.actor_critic import ReturnNorm, percentiles
from genrl_core.models.rssm import RSSM
from genrl_core.train.behaviour import BehaviourLearner, compile_update


def _learner(compile_setting: str, device: str = "cpu"
             ) -> tuple[BehaviourLearner, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    model_cfg = preset("world_model", "tiny")["model"]
    wm = RSSM(model_cfg).requires_grad_(False).to(device)
    cfg = dataclasses.replace(preset("behaviour", "tiny")["behaviour"], horizon=4, align_states=2, batch=8,
                              amp="none", compile=compile_setting)
    gen = torch.Generator().manual_seed(1)
    deter = torch.randn(8, model_cfg.deter, generator=gen)
    stoch = torch.nn.functional.one_hot(torch.randint(model_cfg.classes, (8, model_cfg.stoch), generator=gen),
                                        model_cfg.classes).float()
    target = torch.nn.functional.one_hot(torch.randint(model_cfg.classes, (5, model_cfg.stoch), generator=gen),
                                         model_cfg.classes).float()
    torch.manual_seed(3)
    return (BehaviourLearner(wm, cfg, model_cfg.action_dim), (deter.to(device), stoch.to(device)),
            target.to(device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_compiled_updates_replay_as_cuda_graphs():
    """A CUDA graph's outputs are overwritten by its next replay: gradients or metrics of one update
    kept past the next fail there (the actor's backward once accumulated into critic gradients that
    the last critic graph owned, on an H200), never on a CPU."""
    learner, starts, target = _learner("true", "cuda")
    assert learner.cuda_graphs
    metrics = [learner.update(*starts, target) for _ in range(5)]
    first = float(metrics[0]["critic_loss"])
    learner.update(*starts, target)
    assert float(metrics[0]["critic_loss"]) == first  # metrics survive later replays
    assert all(torch.isfinite(m[k]).all() for m in metrics for k in ("actor_loss", "critic_loss", "return"))
    assert learner.updates == 6


def test_compiled_updates_equal_eager_updates(monkeypatch):
    monkeypatch.setattr(inductor_config, "fallback_random", True)  # the same noise as eager
    runs = {}
    for setting in ("false", "true"):
        learner, starts, target = _learner(setting)
        assert learner.compiled == (setting == "true")
        metrics = [learner.update(*starts, target) for _ in range(3)]
        runs[setting] = (learner, metrics)
    (eager, eager_metrics), (compiled, compiled_metrics) = runs["false"], runs["true"]
    for a, b in zip(eager_metrics, compiled_metrics, strict=True):
        for key in ("reward", "actor_loss", "critic_loss", "return"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-5), key
    for part in ("actor", "critic"):
        for p, q in zip(getattr(eager, part).parameters(), getattr(compiled, part).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.norm.high, eager.norm.high)
    assert compiled.updates == eager.updates == 3


def test_auto_compiles_on_cuda_for_long_runs_only():
    cfg = preset("behaviour", "small")["behaviour"]
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert compile_update(cfg, cuda)
    assert not compile_update(cfg, cpu)  # measured: ~15% faster on this CPU after ~2 min of compiling
    assert not compile_update(dataclasses.replace(cfg, updates=200), cuda)
    assert not compile_update(dataclasses.replace(cfg, max_minutes=1.0), cuda)
    assert compile_update(dataclasses.replace(cfg, compile="true"), cpu)
    assert not compile_update(dataclasses.replace(cfg, compile="false"), cuda)


def test_return_percentiles_match_torch_quantile_and_the_ema_starts_at_the_first_batch():
    x = torch.randn(64, 16)
    torch.testing.assert_close(percentiles(x, (0.05, 0.95)), torch.quantile(x.flatten(), torch.tensor([0.05, 0.95])))
    norm = ReturnNorm(decay=0.5)
    norm.update(x)
    first = percentiles(x, (0.05, 0.95))
    torch.testing.assert_close(torch.stack([norm.low, norm.high]), first)
    norm.update(x + 10)
    torch.testing.assert_close(torch.stack([norm.low, norm.high]), first + 5)
    assert float(norm.scale()) == pytest.approx(max(1.0, float(first[1] - first[0])))
