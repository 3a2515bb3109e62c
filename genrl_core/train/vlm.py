"""Contrastive training of the embedded VLM on a dataset's 8-frame windows and state captions.

    genrl train-vlm --data data/walker --out checkpoints/walker

Windows are labelled with concepts read off the simulator state (`vlm.captions`), every
batch holds windows of distinct concept sets (so no positive pair is pushed apart), each
gets a random wording, and open_clip's own `ClipLoss` pulls video and caption together.
The MiniLM text tower is frozen, so caption embeddings are cached. Rerunning resumes from
`train_state/vlm.pt`; the bundle ships `vlm.pt` (all but the text tower) and
config.json['vlm'].
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from genrl_core.bundle import Bundle, BundleError, load_torch, relative_to_bundle
from genrl_core.config import EmbeddedVLMConfig, VLMTrainConfig, apply_overrides
from genrl_core.config import preset as get_preset
from genrl_core.data.replay import split_episodes
from genrl_core.data.store import EpisodeStore, load_episode
from genrl_core.errors import DataError, MissingFileError
from genrl_core.train.loop import DeviceChoice, ProgressLog, TrainState, numpy_rng
from genrl_core.vlm.base import WINDOW, window_indices
from genrl_core.vlm.captions import caption, window_concepts
from genrl_core.vlm.embedded import EmbeddedVLM, VideoCLIP, make_tokenizer

LOG_FILE = Path("logs") / "vlm.jsonl"
LARGE_VIT_WIDTH = 768


def episode_features(body: str, states: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step reward features (T,) of an episode, recomputed from its stored physics states."""
    from genrl_core.envs import PixelEnv

    env = PixelEnv(body, size=16)
    rows = []
    for state in states:
        env.physics.set_state(state)
        env.physics.forward()
        rows.append(env.features())
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


class WindowSet:
    """Frames of a set of episodes and the concept labels of their windows."""

    def __init__(self, paths: list[Path], stride: int, log=print):
        self.frames: list[torch.Tensor] = []
        self.items: dict[tuple[str, ...], list[tuple[int, int]]] = defaultdict(list)
        self.body = ""
        for e, path in enumerate(paths):
            ep = load_episode(path)
            self.body = ep["body"]
            feats = episode_features(ep["body"], ep["state"])
            self.frames.append(torch.from_numpy(ep["image"]))
            for t in range(WINDOW - 1, len(ep["image"]), stride):
                window = {k: v[t - WINDOW + 1: t + 1] for k, v in feats.items()}
                self.items[tuple(window_concepts(window, ep["body"]))].append((e, t))
        if not self.items:
            raise DataError("no windows to train on")
        self.keys = sorted(self.items)
        common = sorted(self.keys, key=lambda k: -len(self.items[k]))[:8]
        log(f"[train-vlm] {len(paths)} episodes, {sum(map(len, self.items.values()))} windows, "
            f"{len(self.keys)} concept sets; most common: "
            + ", ".join(f"{'+'.join(k)} ({len(self.items[k])})" for k in common))

    def window(self, e: int, t: int) -> torch.Tensor:
        return self.frames[e][torch.from_numpy(window_indices(t + 1)[t])]

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[tuple[str, ...]]]:
        keys = rng.choice(len(self.keys), size=min(size, len(self.keys)), replace=False)
        picked = [self.keys[k] for k in keys]
        windows = [self.window(*self.items[k][rng.integers(len(self.items[k]))]) for k in picked]
        return torch.stack(windows), picked


class CaptionCache:
    """Frozen-text-tower embeddings of captions, computed once per distinct string."""

    def __init__(self, model: VideoCLIP, device: torch.device):
        self.model, self.device, self.tok = model, device, make_tokenizer(model.cfg)
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            emb = F.normalize(self.model.encode_text(self.tok(new).to(self.device)).float(), dim=-1)
            self.cache.update(zip(new, emb, strict=True))
        return torch.stack([self.cache[t] for t in texts])


def _init_state(source: Path, model_cfg: EmbeddedVLMConfig) -> dict[str, torch.Tensor]:
    """The trainable VLM weights of bundle `source`, checked to be of the sizes of `model_cfg`."""
    files = Bundle(source)
    saved = files.config().get("vlm", {})
    if not files.vlm_file.is_file() or saved.get("backend") != "embedded":
        raise BundleError(f"--init-from {source}: no embedded VLM there")
    if saved.get("config") != dataclasses.asdict(model_cfg):
        raise BundleError(f"--init-from {source}: its VLM has other sizes ({saved.get('config')})")
    return load_torch(files.vlm_file)


def train_vlm(data: str | Path, out: str | Path, preset: str = "small", overrides: list[str] | None = None,
              device: str = "cpu", progress: bool = True, init_from: str | Path | None = None,
              log=print) -> dict[str, Any]:
    """Train (or resume) the embedded VLM of bundle `out`. `overrides`: `model.KEY=VALUE` and
    `train.KEY=VALUE` over the preset; without model overrides, a resumed bundle keeps its sizes.
    `init_from`: a bundle whose VLM (same sizes) a new one starts from, as a new body's model starts
    from a trained body's words and frames (step 0, fresh optimizer; ignored when resuming)."""
    overrides = list(overrides or [])
    sections = apply_overrides(get_preset("vlm", preset), overrides)
    out, dev = Path(out), torch.device(device)
    cfg: VLMTrainConfig = sections["train"]
    model_cfg: EmbeddedVLMConfig = sections["model"]
    files = Bundle(out)
    bundle = files.config()
    saved = bundle.get("vlm", {}).get("config")
    if saved and not any(item.startswith("model.") for item in overrides):
        model_cfg = EmbeddedVLMConfig(**saved)
    if "vlm" in bundle and bundle["vlm"].get("config") != dataclasses.asdict(model_cfg):
        raise BundleError(f"{out} holds a VLM of other sizes: {bundle['vlm'].get('config')}")
    paths = EpisodeStore(data).paths()
    if not paths:
        raise MissingFileError(f"dataset folder {data} holds no episodes (create them with `genrl collect`)")
    train_paths, held = split_episodes(paths)
    windows = WindowSet(train_paths, cfg.stride, log)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = VideoCLIP(model_cfg).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
    step = 0
    run = TrainState(files.train_state_file("vlm"), {"rng": numpy_rng(rng)})
    if (state := run.load()) is not None:
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = run.step
        log(f"[train-vlm] resumed {out} at step {step}")
    elif init_from is not None:
        model.load_state_dict(_init_state(Path(init_from), model_cfg), strict=False)
        bundle["vlm_init"] = relative_to_bundle(Path(init_from), out)
        log(f"[train-vlm] new VLM initialised from {Bundle(init_from).vlm_file}")
    loss_fn = open_clip.ClipLoss()
    captions = CaptionCache(model, dev)
    meta = {"body": bundle.get("body") or windows.body, "vlm": {
        "backend": "embedded", "config": dataclasses.asdict(model_cfg), "data": relative_to_bundle(data, out),
        "heldout": [p.name for p in held]}, **({"vlm_init": bundle["vlm_init"]} if "vlm_init" in bundle else {})}

    def checkpoint(elapsed: float) -> None:
        run.save(step, elapsed, model=model.trainable_state(), optimizer=opt.state_dict())
        files.save_vlm(model.trainable_state())
        files.update_config({**meta, "vlm_train": {
            **dataclasses.asdict(cfg), "step": step, "train_seconds": round(elapsed, 1), "device": str(dev),
            **choice.record()}})

    plog = ProgressLog(out / LOG_FILE, cfg.steps, step, cfg.log_every, cfg.checkpoint_minutes, "train-vlm",
                       progress, run.elapsed)
    # ViT-B width and up counts as large (bf16 on CUDA), by analogy with the world model, where small
    # models are launch-bound on a GPU and the casts cost more than they save
    choice = DeviceChoice.choose(dev, cfg.amp, cfg.compile, model_cfg.width >= LARGE_VIT_WIDTH, cfg.steps - step)

    def batch_loss(frames: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with choice.autocast():
            video = F.normalize(model.encode_video(frames).float(), dim=-1)
        return loss_fn(video, text, model.logit_scale.exp()), video

    batch_loss = choice.compile(batch_loss)
    log(f"[train-vlm] {choice}")
    model.train()
    with plog.saving_on_interrupt(lambda: checkpoint(plog.elapsed), log):
        while step < cfg.steps:
            frames, keys = windows.batch(cfg.batch, rng)
            texts = [caption(list(k), windows.body, rng) for k in keys]
            text = captions(texts)
            loss, video = batch_loss(frames.to(dev), text)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # temperature >= 0.01, as CLIP
                acc = (video @ text.T).argmax(1).eq(torch.arange(len(keys), device=dev)).float().mean()
            step += 1
            plog.update(step, {"loss": loss.detach(), "batch_acc": acc, "logit_scale": model.logit_scale.exp()})
            if plog.checkpoint_due():
                checkpoint(plog.elapsed)
    checkpoint(plog.elapsed)
    log(f"[train-vlm] done: step {step} -> {out}")
    return {"step": step, "vlm": EmbeddedVLM(model, dev)}
