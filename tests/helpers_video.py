"""Video clips made by ffmpeg itself, for the video-prompt tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg


def ffmpeg_clip(path: Path, size: str, fps: float, seconds: float) -> Path:
    """A moving test pattern (ffmpeg's testsrc2) of `size` (WxH) at `fps` for `seconds`: small files
    however many frames or pixels, made in about the time they play."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "45", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path
