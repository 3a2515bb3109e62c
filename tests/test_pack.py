"""pack-data / unpack-data: a compact dataset copy that trains like the original, on real frames."""

import json
import subprocess
import sys

import numpy as np
import pytest

from genrl_core.cli import main
from genrl_core.data import EpisodeStore, load_episode
from genrl_core.data.replay import EpisodeReplay
from genrl_core.data.store import EpisodeFormatError


def _psnr(a, b):
    mse = np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("fields", ["all", "train"])
def test_pack_roundtrip_keeps_arrays_exact_and_frames_close(walker_random_data, tmp_path, fields):
    packed, out = tmp_path / "packed", tmp_path / "data"
    assert main(["pack-data", "--data", str(walker_random_data), "--out", str(packed), "--fields", fields,
                 "--crf", "20"]) == 0
    meta = json.loads((packed / "pack.json").read_text())
    original_bytes = sum(p.stat().st_size for p in EpisodeStore(walker_random_data).paths())
    assert meta["total_bytes"] < original_bytes / 3  # the point of packing
    assert main(["unpack-data", "--packed", str(packed), "--out", str(out)]) == 0
    for path in EpisodeStore(walker_random_data).paths():
        orig = load_episode(path)
        if fields == "all":
            back = load_episode(out / path.name)
            for key in ("action", "state", "task_rewards", "is_first", "reward"):
                np.testing.assert_array_equal(back[key], orig[key])
            assert back["policy"] == orig["policy"] and back["seed"] == orig["seed"]
        else:  # only what training reads; the full loader names what is missing
            with pytest.raises(EpisodeFormatError, match="missing keys"):
                load_episode(out / path.name)
            back = dict(np.load(out / path.name))
            np.testing.assert_array_equal(back["action"], orig["action"])
        assert back["image"].shape == orig["image"].shape and back["image"].dtype == np.uint8
        assert _psnr(back["image"], orig["image"]) > 30  # a few grey levels, far below the model's error
    replay = EpisodeReplay(EpisodeStore(out).paths(), seq_len=8)
    assert replay.num_steps == sum(len(load_episode(p)["image"]) for p in EpisodeStore(walker_random_data).paths())


def test_pack_rerun_skips_done_episodes_and_refuses_other_settings(walker_random_data, tmp_path, capsys):
    packed = tmp_path / "packed"
    assert main(["pack-data", "--data", str(walker_random_data), "--out", str(packed), "--fields", "train"]) == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in packed.glob("*.mp4")}
    assert main(["pack-data", "--data", str(walker_random_data), "--out", str(packed), "--fields", "train"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in packed.glob("*.mp4")} == stamp
    assert main(["pack-data", "--data", str(walker_random_data), "--out", str(packed), "--fields", "all"]) == 2
    assert "fields=train" in capsys.readouterr().err
    assert main(["unpack-data", "--packed", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


def test_training_commands_start_without_mujoco(walker_random_data, tmp_path):
    """A GPU box that only trains has torch and the data, not MuJoCo, dm_control or open_clip."""
    block = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('mujoco', 'dm_control', 'open_clip'):\n"
             "            raise ImportError(f'{name} is blocked in this test')\n"
             "sys.meta_path.insert(0, Block())\n"
             "from genrl_core.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "bundle"
    run = subprocess.run([sys.executable, "-c", block, "train-wm", "--data", str(walker_random_data), "--out",
                          str(out), "--preset", "tiny", "--no-progress", "--set", "train.steps=4"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (out / "world_model.pt").exists()
