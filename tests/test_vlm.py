"""VLM layer: interface contract, open_clip back end, embedded VLM training, dataset cache."""

import json
import math

import numpy as np
import open_clip
import pytest
import torch

from genrl_core.bundle import BundleError
from genrl_core.cli import main
from genrl_core.config import preset
from genrl_core.data import EpisodeStore
from genrl_core.prompt import PromptError, PromptTooLong
from genrl_core.train.vlm import train_vlm
from genrl_core.vlm import embed_dataset, load_vlm, load_window_embeddings, window_indices
from genrl_core.vlm.base import VLMError
from genrl_core.vlm.embedded import EmbeddedVLM, VideoCLIP
from genrl_core.vlm.open_clip_backend import OpenClipVLM

TINY_VLM = preset("vlm", "tiny")["model"]
QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def tiny_embedded():
    torch.manual_seed(0)
    return EmbeddedVLM(VideoCLIP(TINY_VLM))


@pytest.fixture(scope="module")
def tiny_open_clip_arch(tmp_path_factory):
    """A small randomly initialised open_clip config, registered under a test name."""
    cfg = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("oc") / "genrl-test-tiny.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "genrl-test-tiny"


def test_window_indices_pad_the_first_steps():
    idx = window_indices(10)
    assert idx.shape == (10, 8)
    assert idx[0].tolist() == [0] * 8
    assert idx[3].tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    assert idx[9].tolist() == list(range(2, 10))  # the window ends at its own step


def test_embedded_shapes_normalisation_and_batching(tiny_embedded):
    prompts = ["stand up straight", "run fast", "lie on your back", "do a flip", "kneel"]
    text = tiny_embedded.embed_text(prompts)
    assert text.shape == (5, 384)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(tiny_embedded.embed_text(prompts, batch=2), text)
    frames = torch.randint(0, 255, (3, 8, 64, 64, 3), dtype=torch.uint8)
    video = tiny_embedded.embed_video(frames)
    assert video.shape == (3, 384)
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(tiny_embedded.embed_video(frames, batch=1), video, atol=1e-5, rtol=1e-4)


def test_embed_windows_matches_window_embeddings(tiny_embedded):
    episode = torch.randint(0, 255, (12, 64, 64, 3), dtype=torch.uint8)
    per_step = tiny_embedded.embed_windows(episode, batch=5)
    assert per_step.shape == (12, 384)
    torch.testing.assert_close(per_step[11], tiny_embedded.embed_video(episode[None, 4:12])[0], atol=1e-5,
                               rtol=1e-4)
    torch.testing.assert_close(per_step[0], tiny_embedded.embed_video(episode[[0] * 8][None])[0], atol=1e-5,
                               rtol=1e-4)


def test_bad_inputs_are_rejected(tiny_embedded):
    for bad in ([], "a string"):
        with pytest.raises(VLMError, match="non-empty list of strings"):
            tiny_embedded.embed_text(bad)
    with pytest.raises(PromptError, match="empty"):  # the one prompt check (genrl_core/prompt.py)
        tiny_embedded.embed_text(["stand", " "])
    with pytest.raises(PromptTooLong):
        tiny_embedded.embed_text(["x" * 5000])
    with pytest.raises(VLMError, match="uint8"):
        tiny_embedded.embed_video(torch.zeros(1, 8, 64, 64, 3))
    with pytest.raises(VLMError, match="8 frames"):
        tiny_embedded.embed_video(torch.zeros(1, 5, 64, 64, 3, dtype=torch.uint8))


def test_open_clip_local_checkpoint_round_trip(tmp_path, tiny_open_clip_arch):
    torch.manual_seed(1)
    model = open_clip.create_model(tiny_open_clip_arch)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    vlm = OpenClipVLM(tiny_open_clip_arch, checkpoint=ckpt)
    frames = torch.randint(0, 255, (2, 8, 64, 64, 3), dtype=torch.uint8)
    emb = vlm.embed_video(frames)
    assert emb.shape == (2, 64) and vlm.embed_text(["walk"]).shape == (1, 64)
    # the same weights, loaded again through the CLI-facing factory, give the same embeddings
    again = load_vlm(backend="open_clip", arch=tiny_open_clip_arch, checkpoint=ckpt)
    torch.testing.assert_close(again.embed_video(frames), emb)


def test_open_clip_never_downloads_silently(tmp_path, tiny_open_clip_arch):
    with pytest.raises(VLMError, match="no weights for open_clip"):
        OpenClipVLM(tiny_open_clip_arch)
    with pytest.raises(VLMError, match="would download"):
        OpenClipVLM("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(VLMError, match="does not exist"):
        OpenClipVLM(tiny_open_clip_arch, checkpoint=tmp_path / "missing.pt")
    with pytest.raises(VLMError, match="unknown open_clip architecture"):
        OpenClipVLM("ViT-Nope", checkpoint=tmp_path / "missing.pt")


def test_tiny_contrastive_training_loss_falls_and_bundle_loads(tmp_path, walker_random_data):
    bundle = tmp_path / "bundle"
    res = train_vlm(walker_random_data, bundle, preset="tiny",
                    overrides=["train.steps=60", "train.batch=8", "train.log_every=20", "train.lr=1e-3"], **QUIET)
    rows = [json.loads(x) for x in (bundle / "logs" / "vlm.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 60
    # baseline: matching a batch of 8 clips to 8 captions at chance costs ln 8 = 2.08 (the first 20
    # steps averaged 2.17); measured 1.80 at the end (1.86 with seed 1)
    assert rows[-1]["loss"] < math.log(8) - 0.15 and rows[-1]["loss"] < rows[0]["loss"] - 0.2, rows
    vlm = load_vlm(bundle)
    frames = torch.from_numpy(EpisodeStore(walker_random_data).load(EpisodeStore(walker_random_data).paths()[0])[
        "image"][:8])[None]
    torch.testing.assert_close(vlm.embed_video(frames), res["vlm"].embed_video(frames), atol=1e-5, rtol=1e-4)
    assert not any(k.startswith("clip.text.") for k in torch.load(bundle / "vlm.pt", weights_only=True))


def test_a_new_vlm_starts_from_another_bundles(tmp_path, walker_random_data):
    """--init-from: one update away from the other bundle's VLM (a scratch start, of another seed, is
    far from it), recorded in config.json; a VLM of other sizes is refused."""
    one = ["train.steps=1", "train.batch=4"]
    other = tmp_path / "other"
    train_vlm(walker_random_data, other, preset="tiny", overrides=[*one, "train.seed=1"], **QUIET)
    source = torch.load(other / "vlm.pt", weights_only=True)

    def distance(bundle):
        trained = torch.load(bundle / "vlm.pt", weights_only=True)
        return max((trained[k].float() - v.float()).abs().max().item() for k, v in source.items())

    train_vlm(walker_random_data, tmp_path / "started", preset="tiny", overrides=one, init_from=other, **QUIET)
    train_vlm(walker_random_data, tmp_path / "scratch", preset="tiny", overrides=one, **QUIET)
    assert distance(tmp_path / "started") < 0.01 < distance(tmp_path / "scratch")
    assert json.loads((tmp_path / "started" / "config.json").read_text())["vlm_init"] == "../other"
    with pytest.raises(BundleError, match="other sizes"):
        train_vlm(walker_random_data, tmp_path / "wide", preset="tiny", overrides=[*one, "model.width=96"],
                  init_from=other, **QUIET)


def test_embed_dataset_caches_per_vlm(tmp_path, walker_random_data, tiny_embedded):
    data = tmp_path / "data"
    store = EpisodeStore(data)
    ep = EpisodeStore(walker_random_data).load(EpisodeStore(walker_random_data).paths()[0])
    store.save("one", ep)
    out = embed_dataset(data, tiny_embedded, log=lambda *_: None)
    emb = load_window_embeddings(data, tiny_embedded, "one")
    assert emb.shape == (501, 384)
    stamp = (out / "one.npy").stat().st_mtime_ns
    embed_dataset(data, tiny_embedded, log=lambda *_: None)  # cached: not recomputed
    assert (out / "one.npy").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(emb[20].numpy(), tiny_embedded.embed_video(ep["image"][None, 13:21])[0].numpy(),
                               atol=2e-3)


def test_cli_reports_missing_vlm(tmp_path, capsys, walker_random_data):
    assert main(["embed-dataset", "--data", str(walker_random_data), "--bundle", str(tmp_path)]) == 2
    assert "has no trained VLM" in capsys.readouterr().err
