"""Regression snapshots (in the manner of LeRobot's): fixed-seed outputs of the world model,
connector, aligner, reward and actor-critic at the tiny preset's sizes, compared with numbers
recorded in tests/snapshots/regression.json. A refactor that changes any number fails here.

The models are built from fixed seeds rather than trained, so the numbers do not depend on
how a training run's float sums happen to be ordered on one CPU. After a change that is meant
to change numbers, rewrite the file with `GENRL_UPDATE_SNAPSHOTS=1 pytest tests/test_regression.py`
and say why in the commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from genrl_core.config import preset
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.models.reward import aligned_reward, similarity_matrix
from genrl_core.models.rssm import RSSM
from genrl_core.train.behaviour import BehaviourLearner

SNAPSHOT = Path(__file__).parent / "snapshots" / "regression.json"
EMBED_DIM = 32


def summary(x: torch.Tensor) -> dict:
    """Enough of a tensor to catch any change: its shape, two sums and its first values."""
    x = x.detach().double()
    return {"shape": list(x.shape), "sum": x.sum().item(), "abs_sum": x.abs().sum().item(),
            "head": x.flatten()[:6].tolist()}


def outputs() -> dict[str, dict]:
    torch.manual_seed(0)
    model_cfg = preset("world_model", "tiny")["model"]
    wm = RSSM(model_cfg)
    connector, aligner = Connector(model_cfg, EMBED_DIM), Aligner(EMBED_DIM)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 6, 64, 64, 3), generator=gen, dtype=torch.uint8)
    actions = torch.rand(2, 6, model_cfg.action_dim, generator=gen) * 2 - 1
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[:, 0] = True
    out: dict[str, dict] = {}

    with torch.no_grad():
        obs = wm.observe(images, actions, is_first, sample=False)
        out.update({f"wm.observe.{k}": summary(v) for k, v in obs.items()})
        out["wm.decode"] = summary(wm.decode(obs["stoch"][:, :2]))
        rolled = wm.imagine(obs["deter"][:, -1], obs["stoch"][:, -1], actions[:, :4], sample=False)
        out.update({f"wm.imagine.{k}": summary(rolled[k][:, 1:]) for k in ("deter", "stoch")})

        emb = torch.nn.functional.normalize(torch.randn(3, EMBED_DIM, generator=gen), dim=-1)
        aligned = aligner(emb)
        out["aligner"] = summary(aligned)
        target = connector.rollout(aligned, 9)
        out["connector.rollout"] = summary(target)

        imagined = torch.nn.functional.one_hot(
            torch.randint(model_cfg.classes, (4, 9, model_cfg.stoch), generator=gen), model_cfg.classes).float()
        probs = torch.softmax(torch.randn(4, 9, model_cfg.stoch, model_cfg.classes, generator=gen), -1)
        for kind in ("max_cosine", "cosine", "kl", "pose_motion"):
            sim = similarity_matrix(kind, wm, imagined, target[0], probs)
            reward, t_a = aligned_reward(sim, 4)
            out[f"reward.{kind}"] = summary(reward)
            out[f"reward.{kind}.t_a"] = summary(t_a.float())

    torch.manual_seed(2)  # the world model's loss samples its posteriors
    loss, _ = wm.loss(images, actions, is_first)
    out["wm.loss"] = summary(loss)

    # two behaviour updates: imagination with the actor, the reward, returns, both optimisers
    wm.requires_grad_(False)
    cfg = dataclasses.replace(preset("behaviour", "tiny")["behaviour"], horizon=8, align_states=4, batch=8, amp="none")
    torch.manual_seed(3)
    learner = BehaviourLearner(wm, cfg, model_cfg.action_dim)
    starts = (obs["deter"][:, -1].repeat(4, 1), obs["stoch"][:, -1].repeat(4, 1, 1))
    for update in range(2):
        metrics = learner.update(*starts, target[0])
        out.update({f"behaviour.{update}.{k}": summary(v.float()) for k, v in metrics.items()})
    out["behaviour.actor_weights"] = summary(torch.cat([p.flatten() for p in learner.actor.parameters()]))
    out["behaviour.critic_weights"] = summary(torch.cat([p.flatten() for p in learner.critic.parameters()]))
    return out


def test_outputs_match_the_recorded_snapshot():
    got = outputs()
    if os.environ.get("GENRL_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"snapshot rewritten: {SNAPSHOT}")
    want = json.loads(SNAPSHOT.read_text())
    assert sorted(got) == sorted(want), "the set of snapshotted outputs changed"
    for name, expected in want.items():
        actual = got[name]
        assert actual["shape"] == expected["shape"], name
        for key in ("sum", "abs_sum", "head"):
            assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), f"{name}.{key}"
