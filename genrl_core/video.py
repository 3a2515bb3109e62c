"""mp4 writing that browsers play (H.264, yuv420p, moov atom first for streaming)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image


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


def read_video_prompt(path: str | Path, frames: int = 8, first: int = 32, size: int = 64) -> np.ndarray:
    """A video prompt as `frames` uint8 frames (frames, size, size, 3): the first `first` frames of the
    file (gif, mp4, webm...), evenly subsampled, centre-cropped to a square and resized."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video prompt {path} does not exist")
    try:
        reader = imageio.get_reader(path)
        clip = []
        for frame in reader:
            clip.append(np.asarray(frame))
            if len(clip) >= first:
                break
        reader.close()
    except Exception as exc:  # imageio raises many types for unreadable files
        raise ValueError(f"cannot read video prompt {path.name}: {exc}") from None
    if len(clip) < frames:
        raise ValueError(f"video prompt {path.name} has {len(clip)} frames; at least {frames} are needed")
    picked = [clip[i] for i in np.linspace(0, len(clip) - 1, frames).round().astype(int)]
    out = []
    for frame in picked:
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, -1)
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = Image.fromarray(frame[top: top + side, left: left + side].astype(np.uint8))
        out.append(np.asarray(square.resize((size, size), Image.BILINEAR)))
    return np.stack(out)
