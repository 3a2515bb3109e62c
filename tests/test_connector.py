"""Connector, aligner and the GenRL facade on a tiny real bundle."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrl_core.agent import GenRL, PromptError
from genrl_core.cli import main
from genrl_core.data import EpisodeStore
from genrl_core.models.aligner import Aligner
from genrl_core.video import read_video_prompt

QUIET = {"progress": False, "log": lambda *_: None}


def test_connector_loss_falls(tiny_bundle):
    rows = [json.loads(x) for x in (tiny_bundle / "logs" / "connector.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 40
    assert rows[-1]["connector_kl"] < 0.8 * rows[0]["connector_kl"]


def test_aligner_moves_noisy_embeddings_to_their_source():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(6, 64), dim=-1)  # "video embeddings" lie in a few clusters
    data = F.normalize(centres[torch.randint(6, (512,))] + 0.05 * torch.randn(512, 64), dim=-1)
    aligner = Aligner(64)
    opt = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    for _ in range(300):
        loss = aligner.loss(data[torch.randint(512, (64,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    noisy = Aligner.corrupt(data)
    with torch.no_grad():
        before = (noisy * data).sum(-1).mean()
        after = (aligner(noisy) * data).sum(-1).mean()
    assert after > before + 0.2


def test_text_and_video_prompts_give_targets(tiny_bundle, tmp_path, walker_random_data):
    agent = GenRL.load(tiny_bundle)
    latents = agent.target("stand up straight", steps=16)
    assert latents.shape == (16, 4, 4) and torch.all(latents.sum(-1) == 1)
    frames = agent.decode(latents)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    ep = EpisodeStore(walker_random_data).load(EpisodeStore(walker_random_data).paths()[0])
    clip = tmp_path / "clip.mp4"
    imageio.mimwrite(clip, list(np.repeat(ep["image"][:20], 2, axis=1).repeat(2, axis=2)), fps=20)
    video_target = agent.target(clip, steps=8)
    assert video_target.shape == (8, 4, 4) and torch.all(video_target.sum(-1) == 1)
    assert torch.equal(agent.target(clip, steps=8), video_target)  # deterministic
    gif = tmp_path / "clip.gif"
    imageio.mimwrite(gif, list(ep["image"][:10]))
    assert agent.target(str(gif), steps=8).shape == (8, 4, 4)
    # the aligner can be switched off for the ablation, and it changes the prompt embedding
    assert not torch.allclose(agent.embed_prompt("run fast"), agent.embed_prompt("run fast", use_aligner=False))


def test_a_video_prompt_is_read_as_the_clips_middle_8_agent_steps(tmp_path, walker_random_data):
    """What the VLM sees of a video prompt (the tiny test VLM embeds every clip about alike, so the
    frames are checked, against a baseline: every other 8-step window of the same clip)."""
    images = EpisodeStore(walker_random_data).load(EpisodeStore(walker_random_data).paths()[0])["image"][:20]
    big = images.repeat(2, axis=1).repeat(2, axis=2)  # 128 px, resized back to 64 when read
    at_20 = tmp_path / "at_20fps.mp4"
    imageio.mimwrite(at_20, list(big), fps=20)  # one frame per agent step
    at_60 = tmp_path / "at_60fps.mp4"
    imageio.mimwrite(at_60, list(big.repeat(3, axis=0)), fps=60)  # the same motion, 3 frames per agent step
    middle = (20 - 8) // 2
    for clip in (at_20, at_60):
        read = read_video_prompt(clip).astype(np.float32)
        assert read.shape == (8, 64, 64, 3)
        error = [np.abs(read - images[s: s + 8]).mean() for s in range(20 - 8 + 1)]
        # measured: 3.0 grey levels (H.264) at the middle window, >= 9.7 at any other
        assert int(np.argmin(error)) == middle and error[middle] < 0.5 * min(np.delete(error, middle)), error


def test_bad_prompts_are_rejected(tiny_bundle, tmp_path):
    agent = GenRL.load(tiny_bundle)
    with pytest.raises(PromptError, match="empty"):
        agent.target("   ")
    with pytest.raises(PromptError, match="10000 characters"):
        agent.target("x" * 10_000)
    with pytest.raises(PromptError, match="between 8 and 64"):
        agent.target("walk", steps=100)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(PromptError, match="cannot read video prompt"):
        agent.target(not_video)
    short = tmp_path / "short.gif"
    imageio.mimwrite(short, [np.full((32, 32, 3), 80 * i, np.uint8) for i in range(3)])
    with pytest.raises(PromptError, match="3 frames"):
        agent.target(short)


def test_cli_target_writes_video(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "t.mp4"
    assert main(["target", "lie on your back", "--bundle", str(tiny_bundle), "--steps", "8", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "decoded in" in capsys.readouterr().out
    assert main(["target", "--bundle", str(tiny_bundle)]) == 2
    assert "give a text prompt" in capsys.readouterr().err
    assert main(["target", "  ", "--bundle", str(tiny_bundle)]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_connector_warm_start_goes_on_from_the_bundles_weights(tiny_bundle, tmp_path, walker_random_data):
    import shutil

    from genrl_core.bundle import Bundle, load_torch
    from genrl_core.train.connector import train_connector

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    Bundle(bundle).train_state_file("connector").unlink()  # as a shipped bundle: weights, no optimizer state
    before = load_torch(bundle / "connector.pt")
    lines: list[str] = []
    result = train_connector(walker_random_data, bundle, preset="tiny", overrides=["train.steps=42", "train.lr=1e-3"],
                             progress=False, log=lines.append, warm_start=True)
    assert result["step"] == 42 and any("starting from its connector and aligner at step 40" in x for x in lines)
    # two small steps from the trained weights, not a fresh start: the weights stay close to them
    after = result["connector"].state_dict()
    fresh_gap = sum((v.float() - before[k].float()).norm() for k, v in after.items())
    assert 0 < fresh_gap < 0.05 * sum(v.float().norm() for v in before.values())
