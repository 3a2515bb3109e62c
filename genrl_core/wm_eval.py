"""Open-loop video prediction of a world model on held-out episodes.

Given `context` true frames (filtered by the posterior) and the true actions, the prior
predicts the next frames with no image input; we report per-step MSE and PSNR against the
truth and write a side-by-side video: truth | reconstruction | open-loop prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genrl_core.bundle import Bundle, read_config
from genrl_core.data.replay import load_training_arrays
from genrl_core.data.store import EpisodeStore
from genrl_core.errors import ConfigError, DataError, MissingFileError
from genrl_core.video import write_mp4


@torch.no_grad()
def open_loop(model, images: torch.Tensor, actions: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(recon, prediction) uint8 (B, T, H, W, 3) for windows images (B, T, H, W, 3), actions (B, T, A)."""
    first = torch.zeros(images.shape[:2], dtype=torch.bool)
    first[:, 0] = True
    obs = model.observe(images, actions, first, sample=False)
    recon = model.postprocess(model.decode(obs["stoch"]))
    ctx_deter, ctx_stoch = obs["deter"][:, context - 1], obs["stoch"][:, context - 1]
    imagined = model.imagine(ctx_deter, ctx_stoch, actions[:, context:], sample=False)
    pred = model.postprocess(model.decode(imagined["stoch"][:, 1:]))  # after the context state
    return recon, torch.cat([recon[:, :context], pred], 1)


def open_loop_scores(model, paths: list[Path], context: int = 5, horizon: int = 45,
                     starts: tuple[int, ...] = (0, 100, 200, 300, 400)) -> tuple[dict, tuple[torch.Tensor, ...]]:
    """Per-step MSE and PSNR of `horizon` frames predicted after `context` true ones, over windows
    starting at `starts` of each episode; and the windows' (truth, reconstruction, prediction)."""
    length = context + horizon
    windows_img, windows_act = [], []
    for path in paths:
        ep = load_training_arrays(path)
        for s in starts:
            if s + length <= len(ep["image"]):
                windows_img.append(ep["image"][s: s + length])
                windows_act.append(ep["action"][s: s + length])
    if not windows_img:
        raise DataError(f"episodes are shorter than context + horizon = {length} steps")
    images = torch.from_numpy(np.stack(windows_img))
    actions = torch.from_numpy(np.stack(windows_act))
    recon, pred = open_loop(model, images, actions, context)
    err = ((pred.float() - images.float()) / 255.0).pow(2).mean((0, 2, 3, 4))  # per step
    psnr = 10 * torch.log10(1.0 / err.clamp(min=1e-10))
    scores = {"episodes": [p.name for p in paths], "windows": len(images), "context": context, "horizon": horizon,
              "mse": err.tolist(), "psnr": psnr.tolist(), "psnr_context_mean": float(psnr[:context].mean()),
              "psnr_open_loop_mean": float(psnr[context:].mean()),
              "psnr_at": {str(k): float(psnr[context + k - 1]) for k in (1, 5, 15, 30, 45) if k <= horizon}}
    return scores, (images, recon, pred)


def evaluate_open_loop(bundle: str | Path, data: str | Path, out: str | Path, episodes: int = 5,
                       context: int = 5, horizon: int = 45, starts: tuple[int, ...] = (0, 100, 200, 300, 400),
                       log=print) -> dict:
    if context < 1 or horizon < 1:
        raise ConfigError(f"context ({context}) and horizon ({horizon}) must both be >= 1")
    model = Bundle(bundle).load_world_model()
    held = read_config(bundle).get("world_model_heldout", [])
    store = EpisodeStore(data)
    paths = [store.root / name for name in held if (store.root / name).exists()]
    source = "held-out"
    if not paths:  # e.g. a tiny dataset where nothing was held out
        paths, source = store.paths()[-episodes:], "last (not held-out)"
    if not paths:
        raise MissingFileError(f"no episodes in {data}")
    paths = paths[:episodes]
    scores, (images, recon, pred) = open_loop_scores(model, paths, context, horizon, starts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    video = torch.cat([images[0], recon[0], pred[0]], dim=2).numpy()  # side by side
    write_mp4(out / "open_loop.mp4", video, fps=10, upscale=3)
    result = {"source": source, **scores}
    (out / "open_loop.json").write_text(json.dumps(result, indent=1))
    log(f"[eval-wm] {len(images)} windows from {len(paths)} {source} episodes: PSNR context "
        f"{result['psnr_context_mean']:.1f} dB, open-loop mean {result['psnr_open_loop_mean']:.1f} dB; "
        + ", ".join(f"+{k}: {v:.1f}" for k, v in result["psnr_at"].items()) + f" -> {out}")
    return result
