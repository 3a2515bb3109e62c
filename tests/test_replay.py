"""The training replay: fixed-length sequences drawn from a folder's episodes (torch)."""

import numpy as np
import pytest
import torch
from helpers_data import make_episode

from genrl_core.data import EpisodeFormatError, EpisodeStore
from genrl_core.data.replay import EpisodeReplay, split_episodes


def fill_store(root, lengths, size=16, **kwargs):
    """One episode per length; episode i has constant action value i + 1."""
    store = EpisodeStore(root)
    for i, length in enumerate(lengths):
        store.save(f"ep{i:03d}", make_episode(length, seed=i, size=size, action_value=i + 1.0, **kwargs))
    return store


def test_shapes_dtypes_and_counts(tmp_path):
    store = fill_store(tmp_path, [20, 15], size=64)
    replay = EpisodeReplay(store.paths(), seq_len=8)
    assert replay.num_episodes == 2 and replay.num_steps == 35 and replay.action_dim == 6
    batch = replay.sample(4)
    assert batch["image"].shape == (4, 8, 64, 64, 3) and batch["image"].dtype == torch.uint8
    assert batch["action"].shape == (4, 8, 6) and batch["action"].dtype == torch.float32
    assert batch["is_first"].shape == (4, 8) and batch["is_first"].dtype == torch.bool


def test_sequences_start_fresh_and_never_cross_episodes(tmp_path):
    store = fill_store(tmp_path, [6, 7, 8, 6, 9])  # short episodes make boundary errors likely
    replay = EpisodeReplay(store.paths(), seq_len=5, seed=1)
    seen = set()
    for _ in range(20):
        batch = replay.sample(64)
        assert batch["is_first"][:, 0].all() and not batch["is_first"][:, 1:].any()
        for window in batch["action"][..., 0].numpy():
            value = window[-1]
            np.testing.assert_array_equal(window[1:], value)  # one episode per window
            assert window[0] in (0.0, value)  # t=0 of an episode (zero action) may only open a window
            seen.add(float(value))
    assert seen == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert not replay.is_first[1:6].any()  # setting is_first in a batch leaves the stored flags alone


def test_starts_are_uniform_over_all_windows(tmp_path):
    store = fill_store(tmp_path, [5, 14])  # 1 valid start in the first episode, 10 in the second
    last = EpisodeReplay(store.paths(), seq_len=5, seed=2).sample(11000)["action"][:, -1, 0]
    assert 0.07 < float((last == 1.0).float().mean()) < 0.11


def test_same_seed_reproduces_and_state_restores(tmp_path):
    store = fill_store(tmp_path, [20, 30, 25])
    a, b = EpisodeReplay(store.paths(), 6, seed=7), EpisodeReplay(store.paths(), 6, seed=7)
    c = EpisodeReplay(store.paths(), 6, seed=8)
    torch.testing.assert_close(a.sample(8)["image"], b.sample(8)["image"])
    assert not torch.equal(a.sample(8)["image"], c.sample(8)["image"])
    state = a.get_state()
    first = a.sample(8)["action"]
    a.set_state(state)
    torch.testing.assert_close(a.sample(8)["action"], first)  # a resumed run draws the same batches


def test_short_episodes_are_skipped_with_a_message(tmp_path):
    store = fill_store(tmp_path, [20, 4, 12])
    said = []
    replay = EpisodeReplay(store.paths(), seq_len=8, log=said.append)
    assert replay.num_episodes == 2 and "ep001.npz" in said[0]
    assert 2.0 not in replay.sample(64)["action"]
    with pytest.raises(ValueError, match="every episode is shorter than seq_len 30"):
        EpisodeReplay(store.paths(), seq_len=30, log=said.append)


def test_bad_folders_and_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EpisodeReplay.from_dir(tmp_path / "missing", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no episodes"):
        EpisodeReplay.from_dir(tmp_path / "empty", 4)
    store = fill_store(tmp_path / "d", [10])
    (tmp_path / "d" / "zz_bad.npz").write_text("garbage")
    with pytest.raises(EpisodeFormatError, match="zz_bad.npz"):
        EpisodeReplay(store.paths(), 4)
    (tmp_path / "d" / "zz_bad.npz").unlink()
    store.save("ep999", make_episode(10, action_dim=3, size=16))
    with pytest.raises(ValueError, match=r"ep999\.npz.*'action' has 3 dims"):
        EpisodeReplay(store.paths(), 4)


def test_extras_are_sampled_alongside(tmp_path):
    store = fill_store(tmp_path, [12, 10])
    replay = EpisodeReplay(store.paths(), 4, extras={"step": lambda p: np.arange(12 if "000" in p.name else 10)})
    batch = replay.sample(32)
    steps = batch["step"]
    assert torch.all(steps[:, 1:] - steps[:, :-1] == 1)  # aligned with the frames they belong to


def test_holdout_split_is_stable(tmp_path):
    paths = [tmp_path / f"random-{i:05d}.npz" for i in range(200)]
    train, held = split_episodes(paths)
    assert 0 < len(held) < 25 and set(train).isdisjoint(held)
    train2, held2 = split_episodes(paths + [tmp_path / "new.npz"])
    assert set(held) <= set(held2)  # adding episodes never moves old ones
