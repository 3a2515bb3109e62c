"""mp4 writing that browsers play (H.264, yuv420p, moov atom first for streaming)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from genrl_core.prompt import PromptError


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 20, upscale: int = 1) -> Path:
    """Write uint8 frames (T, H, W, 3) to `path`; `upscale` repeats pixels so 64 px clips stay sharp."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected uint8 frames (T, H, W, 3) with T > 0, got {frames.dtype} {frames.shape}")
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp.mp4")  # writers never collide
    imageio.mimwrite(tmp, list(frames), fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                     ffmpeg_params=["-movflags", "+faststart"])
    tmp.replace(path)
    return path


AGENT_FPS = 20.0  # one frame per agent step (walker: 0.025 s x action repeat 2), as `genrl video` writes
MAX_PROMPT_FRAMES = 1200  # a minute of video at 20 fps: longer clips are read only this far


def read_video_prompt(path: str | Path, frames: int = 8, size: int = 64, rate: float = AGENT_FPS) -> np.ndarray:
    """A video prompt as `frames` consecutive agent steps (frames, size, size, 3) uint8.

    The VLM and connector learned from windows of 8 consecutive agent steps, so the clip is
    resampled to the agent's rate (`rate` frames per second, from the file's own fps) rather
    than squeezed: a 20 fps clip gives consecutive frames, a 60 fps one every third. The window
    is taken from the middle of the clip, past any start-up motion; frames are centre-cropped to
    a square and resized."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"video prompt {path} does not exist")
    try:
        reader = imageio.get_reader(path)
        fps = float(reader.get_meta_data().get("fps") or rate)
        clip = []
        for frame in reader:
            clip.append(np.asarray(frame))
            if len(clip) >= MAX_PROMPT_FRAMES:
                break
        reader.close()
    except Exception as exc:  # imageio raises many types for unreadable files; their text holds ffmpeg's
        # whole stderr (its build flags, the server's paths): say what happened, not that
        raise PromptError(f"cannot read video prompt {path.name}: it does not decode as a video "
                         f"({type(exc).__name__})") from None
    stride = max(fps / rate, 1e-9)
    span = (frames - 1) * stride  # source frames covered by the window
    if len(clip) < 1 or len(clip) - 1 < span - 1e-6:
        raise PromptError(f"video prompt {path.name} has {len(clip)} frames at {fps:g} fps; {frames} agent steps "
                         f"at {rate:g} per second need {int(np.ceil(span)) + 1}")
    first = (len(clip) - 1 - span) / 2
    picked = [clip[int(round(first + k * stride))] for k in range(frames)]
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
