"""mp4 writing that browsers play (H.264, yuv420p, moov atom first for streaming)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 20, upscale: int = 1) -> Path:
    """Write uint8 frames (T, H, W, 3) to `path`; `upscale` repeats pixels so 64 px clips stay sharp."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected uint8 frames (T, H, W, 3) with T > 0, got {frames.dtype} {frames.shape}")
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    imageio.mimwrite(tmp, list(frames), fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                     ffmpeg_params=["-movflags", "+faststart"])
    tmp.replace(path)
    return path
