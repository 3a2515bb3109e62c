"""Video prompts are read at the agent's rate from the middle of the clip, as the VLM learned
from windows of consecutive agent steps."""

import imageio.v2 as imageio
import numpy as np
import pytest

from genrl_core.video import read_video_prompt


def _clip(path, frames: int, fps: float):
    """Frame k is a flat grey of level 4k, so the level read back names the frame."""
    levels = np.arange(frames) * 4
    imageio.mimwrite(path, [np.full((64, 64, 3), v, np.uint8) for v in levels], fps=fps, codec="libx264",
                     macro_block_size=1, quality=10)
    return path


def _indices(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 4)) for f in frames]


def test_a_clip_at_the_agent_rate_gives_consecutive_frames_from_its_middle(tmp_path):
    got = _indices(read_video_prompt(_clip(tmp_path / "a.mp4", 60, 20)))
    assert got == list(range(26, 34))  # 8 consecutive steps, centred in 60 frames (not 8 spread over 32)


def test_a_faster_clip_is_resampled_to_the_agent_rate(tmp_path):
    got = _indices(read_video_prompt(_clip(tmp_path / "b.mp4", 60, 60)))
    steps = np.diff(got)
    assert (steps == 3).all(), got  # 60 fps -> every third frame is one agent step at 20 per second


def test_a_clip_too_short_for_eight_steps_names_what_it_needs(tmp_path):
    with pytest.raises(ValueError, match="need 22"):
        read_video_prompt(_clip(tmp_path / "c.mp4", 12, 60))  # 8 steps at 60 fps span 22 frames
