"""mp4 writing that browsers play (H.264, yuv420p, moov atom first for streaming)."""

from __future__ import annotations

import collections
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
# What a video prompt may be. Decoding is bounded by these whatever the file claims: a frame is
# downscaled to the agent's size as soon as it is read, so memory is one full-size frame plus
# small ones; the limits bound the decoding time and that one frame.
MAX_PROMPT_FRAMES = 1200  # a minute of video at 20 fps
MAX_PROMPT_SECONDS = 60.0
MAX_PROMPT_PIXELS = 1920 * 1080  # per frame (1080p, either orientation)
MAX_PROMPT_SIDE = 3840


def _check_size(name: str, width: int, height: int) -> None:
    if width * height > MAX_PROMPT_PIXELS or max(width, height) > MAX_PROMPT_SIDE:
        raise PromptError(f"video prompt {name} is {width}x{height}; the limit is 1920x1080 (or as many pixels "
                          f"in another shape, at most {MAX_PROMPT_SIDE} on a side): scale it down")


def _agent_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """One decoded frame as the agent sees it: RGB, centre-cropped to a square, resized to `size`."""
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, -1)
    frame = frame[..., :3]
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(frame[top: top + side, left: left + side].astype(np.uint8))
    return np.asarray(square.resize((size, size), Image.BILINEAR))


def read_video_prompt(path: str | Path, frames: int = 8, size: int = 64, rate: float = AGENT_FPS) -> np.ndarray:
    """A video prompt as `frames` consecutive agent steps (frames, size, size, 3) uint8.

    The VLM and connector learned from windows of 8 consecutive agent steps, so the clip is
    resampled to the agent's rate (`rate` frames per second, from the file's own fps) rather
    than squeezed: a 20 fps clip gives consecutive frames, a 60 fps one every third. The window
    is taken from the middle of the clip, past any start-up motion; frames are centre-cropped to
    a square and resized.

    Decoded one frame at a time: each is reduced to `size` px at once, and only the frames that
    can still fall in the middle window are kept. A clip over MAX_PROMPT_FRAMES frames,
    MAX_PROMPT_SECONDS seconds or MAX_PROMPT_PIXELS pixels a frame is refused (PromptError),
    by its header where it has one, else as soon as decoding passes the limit."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"video prompt {path} does not exist")
    name = path.name
    try:
        if path.suffix.lower() == ".gif":  # Pillow decodes a whole GIF frame: check its size from the header first
            with Image.open(path) as im:
                _check_size(name, *im.size)
        reader = imageio.get_reader(path)
    except PromptError:
        raise
    except Exception as exc:  # imageio raises many types for unreadable files; their text holds ffmpeg's
        # whole stderr (its build flags, the server's paths): say what happened, not that
        raise PromptError(f"cannot read video prompt {name}: it does not decode as a video "
                          f"({type(exc).__name__})") from None
    try:
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or rate)
        if meta.get("plugin") == "ffmpeg":  # ffmpeg's header: size and duration before any frame is decoded
            _check_size(name, *meta["size"])
            duration = float(meta.get("duration") or 0)
            if duration > MAX_PROMPT_SECONDS:
                raise PromptError(f"video prompt {name} lasts {duration:.0f} s; the limit is "
                                  f"{MAX_PROMPT_SECONDS:.0f} s: trim it to the motion you mean")
        stride = max(fps / rate, 1e-9)
        span = (frames - 1) * stride  # source frames covered by the window
        kept: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        count = 0
        for frame in reader:
            frame = np.asarray(frame)
            _check_size(name, frame.shape[1], frame.shape[0])
            if count >= MAX_PROMPT_FRAMES or count / fps > MAX_PROMPT_SECONDS:
                raise PromptError(f"video prompt {name} has more than {MAX_PROMPT_FRAMES} frames or lasts over "
                                  f"{MAX_PROMPT_SECONDS:.0f} s: trim it to the motion you mean")
            kept.append((count, _agent_frame(frame, size)))
            count += 1
            # the window starts at (N - 1 - span) / 2 for the final count N >= count: no frame before
            # that can be picked (one frame's margin for rounding)
            while kept and kept[0][0] < (count - 1 - span) / 2 - 1:
                kept.popleft()
    except PromptError:
        raise
    except Exception as exc:
        raise PromptError(f"cannot read video prompt {name}: it does not decode as a video "
                          f"({type(exc).__name__})") from None
    finally:
        reader.close()
    if count < 1 or count - 1 < span - 1e-6:
        raise PromptError(f"video prompt {name} has {count} frames at {fps:g} fps; {frames} agent steps "
                          f"at {rate:g} per second need {int(np.ceil(span)) + 1}")
    first = (count - 1 - span) / 2
    by_index = dict(kept)
    return np.stack([by_index[int(round(first + k * stride))] for k in range(frames)])
