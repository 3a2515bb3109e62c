"""Video prompts are read at the agent's rate from the middle of the clip, as the VLM learned
from windows of consecutive agent steps,
one frame at a time within limits on length and size (issue 26, finding 1)."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import imageio.v2 as imageio
import numpy as np
import pytest
from helpers_serve import served
from helpers_video import ffmpeg_clip
from PIL import Image

from genrl_core.video import AGENT_FPS, MAX_PROMPT_FRAMES, read_video_prompt

ROOT = Path(__file__).resolve().parents[1]


def _clip(path, frames: int, fps: float):
    """Frame k is a flat grey of level 4k, so the level read back names the frame."""
    levels = np.arange(frames) * 4
    imageio.mimwrite(path, [np.full((64, 64, 3), v, np.uint8) for v in levels], fps=fps, codec="libx264",
                     macro_block_size=1, quality=10)
    return path


def _indices(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 4)) for f in frames]


def _whole_clip_reader(path, frames: int = 8, size: int = 64, rate: float = AGENT_FPS) -> np.ndarray:
    """How video prompts were read before issue 26: every frame kept at full size, then the window
    picked. The bounded reader must give exactly this for any clip within its limits."""
    reader = imageio.get_reader(path)
    fps = float(reader.get_meta_data().get("fps") or rate)
    clip = [np.asarray(f) for f in reader]
    reader.close()
    stride = max(fps / rate, 1e-9)
    span = (frames - 1) * stride
    first = (len(clip) - 1 - span) / 2
    out = []
    for k in range(frames):
        frame = clip[int(round(first + k * stride))]
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, -1)
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = Image.fromarray(frame[top: top + side, left: left + side].astype(np.uint8))
        out.append(np.asarray(square.resize((size, size), Image.BILINEAR)))
    return np.stack(out)


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


def test_the_frame_by_frame_reader_gives_what_reading_the_whole_clip_gave(tmp_path):
    clips = [ffmpeg_clip(tmp_path / "wide.mp4", "320x180", 30, 3),  # cropped, resampled 30 -> 20 fps
             ffmpeg_clip(tmp_path / "tall.mkv", "90x160", 20, 2),
             ffmpeg_clip(tmp_path / "long.mp4", "64x64", 60, 19.5)]  # 1170 frames: near the frame limit
    gif = tmp_path / "grey.gif"
    imageio.mimwrite(gif, [np.full((40, 50, 3), 9 * k, np.uint8) for k in range(25)], duration=50)
    for clip in [*clips, gif]:
        assert np.array_equal(read_video_prompt(clip), _whole_clip_reader(clip)), clip.name


def test_clips_over_the_length_or_size_limits_are_refused_with_the_limit(tmp_path):
    cases = [(ffmpeg_clip(tmp_path / "uhd.mp4", "3840x2160", 20, 0.5), "3840x2160; the limit is 1920x1080"),
             (ffmpeg_clip(tmp_path / "strip.mp4", "4000x100", 20, 0.5), "4000x100"),
             (ffmpeg_clip(tmp_path / "hour.mp4", "32x32", 1, 61), "lasts 61 s; the limit is 60 s"),
             (ffmpeg_clip(tmp_path / "many.mp4", "32x32", 100, 12.1), f"more than {MAX_PROMPT_FRAMES} frames")]
    big_gif = tmp_path / "big.gif"  # GIF has no header ffmpeg reads: Pillow's size is checked before decoding
    Image.new("RGB", (2000, 1200)).save(big_gif, save_all=True,
                                        append_images=[Image.new("RGB", (2000, 1200), "white")] * 8)
    cases.append((big_gif, "2000x1200"))
    for clip, message in cases:
        with pytest.raises(ValueError, match=message):
            read_video_prompt(clip)


MEASURE = """
import json, sys
from genrl_core.video import read_video_prompt


def status_mb(field):  # /proc's VmRSS (now) and VmHWM (peak); getrusage's peak would count what the
    # forking test process held before exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


read_video_prompt(sys.argv[1])  # warm up: imports, the ffmpeg plugin, numpy's and Pillow's buffers
idle = status_mb("VmRSS")
frames = read_video_prompt(sys.argv[2])
print(json.dumps({"grew_mb": status_mb("VmHWM") - idle, "shape": list(frames.shape)}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from Linux's /proc")
def test_decoding_a_long_720p_clip_keeps_the_process_within_100_mb_of_idle(tmp_path):
    """Issue 26: 1,300 frames at 1280x720 took the server from 1.9 to 5.0 GB (every frame held at full
    size). Measured in a fresh process: the peak resident size while decoding, over its size at rest."""
    small = ffmpeg_clip(tmp_path / "small.mp4", "64x64", 20, 1)
    long = ffmpeg_clip(tmp_path / "long720.mp4", "1280x720", 20, 15)  # 300 frames, 0.8 GB as full frames
    out = subprocess.run([sys.executable, "-c", MEASURE, str(small), str(long)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [8, 64, 64, 3]
    assert result["grew_mb"] < 100, result


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets and reads Linux's peak resident size")
def test_a_long_720p_upload_keeps_the_server_within_100_mb_of_idle(tiny_bundle, tmp_path):
    """Issue 26, as the probe saw it: the same clip sent to a running `genrl serve` (POST /target).
    The server's peak resident size is reset once it has served a first small clip, then read after
    the long one: what decoding an accepted upload costs the server process itself."""
    small = ffmpeg_clip(tmp_path / "small.mp4", "64x64", 20, 1)
    long = ffmpeg_clip(tmp_path / "long720.mp4", "1280x720", 20, 15)  # 300 frames, 0.8 GB as full frames
    with served(tiny_bundle, tmp_path / "runs", tmp_path / "serve.log") as (proc, url):
        def target(clip: Path) -> None:
            r = httpx.post(f"{url}/target", files={"video": (clip.name, clip.read_bytes(), "video/mp4")},
                           data={"steps": "8"}, timeout=300)
            assert r.status_code == 200 and r.content[4:8] == b"ftyp", r.text[:500]

        target(small)  # warm: the decoder, the connector's first rollout, the mp4 writer
        try:
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the peak (VmHWM) restarts from now
        except OSError as exc:
            pytest.skip(f"cannot reset the server's peak resident size: {exc}")
        idle = _status_mb(proc.pid, "VmRSS")
        target(long)
        grew = _status_mb(proc.pid, "VmHWM") - idle
    assert grew < 100, f"the server's peak grew {grew:.0f} MB over {idle:.0f} MB at rest"
