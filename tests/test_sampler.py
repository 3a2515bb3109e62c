import itertools

import numpy as np
import pytest
from helpers_data import make_episode

from genrl_core.data import EpisodeFormatError, EpisodeStore, SequenceSampler


def fill_store(root, lengths, size=16, **kwargs):
    """One episode per length; episode i has constant action value i + 1."""
    store = EpisodeStore(root)
    for i, T in enumerate(lengths):
        store.save(f"ep{i:03d}", make_episode(T, seed=i, size=size, action_value=i + 1.0, **kwargs))
    return store


def test_shapes_dtypes_and_counts(tmp_path):
    store = fill_store(tmp_path, [20, 15], size=64)
    sampler = SequenceSampler(store, seq_len=8, batch_size=4)
    assert sampler.num_episodes == 2 and sampler.num_steps == 35
    batch = sampler.sample()
    assert set(batch) == {"image", "action", "reward", "is_first", "is_terminal"}
    assert batch["image"].shape == (4, 8, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (4, 8, 6) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (4, 8) and batch["reward"].dtype == np.float32
    assert batch["is_first"].shape == (4, 8) and batch["is_first"].dtype == bool
    assert batch["is_terminal"].shape == (4, 8) and batch["is_terminal"].dtype == bool


def test_accepts_root_path_and_custom_keys(tmp_path):
    fill_store(tmp_path, [10])
    batch = SequenceSampler(tmp_path, seq_len=4, batch_size=3, keys=("state", "task_rewards")).sample()
    assert batch["state"].shape == (3, 4, 18) and batch["state"].dtype == np.float64
    assert batch["task_rewards"].shape == (3, 4, 2)
    with pytest.raises(ValueError, match="body"):
        SequenceSampler(tmp_path, seq_len=4, batch_size=3, keys=("image", "body"))


def test_is_first_set_at_window_start_without_touching_episodes(tmp_path):
    fill_store(tmp_path, [30, 25])
    sampler = SequenceSampler(tmp_path, seq_len=10, batch_size=16)
    for batch in itertools.islice(sampler, 20):
        assert batch["is_first"][:, 0].all()
        # Windows never contain a later episode start, and setting is_first on
        # a batch must not leak into the stored arrays (else later windows
        # starting elsewhere would see True inside them).
        assert not batch["is_first"][:, 1:].any()


def test_windows_never_cross_episode_boundaries(tmp_path):
    # Short episodes make boundary-crossing windows likely if starts were wrong.
    lengths = [6, 7, 8, 6, 9]
    fill_store(tmp_path, lengths)
    sampler = SequenceSampler(tmp_path, seq_len=5, batch_size=64, seed=1)
    seen = set()
    for batch in itertools.islice(sampler, 20):
        for window in batch["action"][..., 0]:
            value = window[-1]
            assert value in {1.0, 2.0, 3.0, 4.0, 5.0}
            # t=0 of an episode has a zero action and may only open a window.
            np.testing.assert_array_equal(window[1:], value)
            assert window[0] in (0.0, value)
            seen.add(value)
    assert seen == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_starts_are_uniform_over_all_windows(tmp_path):
    # 1 valid start in the first episode, 10 in the second.
    fill_store(tmp_path, [5, 14])
    sampler = SequenceSampler(tmp_path, seq_len=5, batch_size=11000, seed=2, keys=("action",))
    first = sampler.sample()["action"][:, -1, 0]
    share = np.mean(first == 1.0)
    assert 0.07 < share < 0.11


def test_same_seed_reproduces_and_other_seed_differs(tmp_path):
    fill_store(tmp_path, [20, 30, 25])
    a = SequenceSampler(tmp_path, seq_len=6, batch_size=8, seed=7)
    b = SequenceSampler(tmp_path, seq_len=6, batch_size=8, seed=7)
    c = SequenceSampler(tmp_path, seq_len=6, batch_size=8, seed=8)
    for _ in range(3):
        ba, bb, bc = a.sample(), b.sample(), c.sample()
        for key in ba:
            np.testing.assert_array_equal(ba[key], bb[key])
        assert not np.array_equal(ba["image"], bc["image"])


def test_short_episode_error_names_file(tmp_path):
    fill_store(tmp_path, [20, 4])
    with pytest.raises(ValueError, match=r"ep001\.npz.*4 steps.*seq_len=8"):
        SequenceSampler(tmp_path, seq_len=8, batch_size=2)


def test_skip_short(tmp_path):
    fill_store(tmp_path, [20, 4, 12])
    sampler = SequenceSampler(tmp_path, seq_len=8, batch_size=32, skip_short=True)
    assert sampler.num_episodes == 2 and sampler.num_steps == 32
    assert [p.name for p in sampler.skipped] == ["ep001.npz"]
    assert 2.0 not in sampler.sample()["action"]


def test_all_short_is_an_error_even_with_skip(tmp_path):
    fill_store(tmp_path, [3, 4])
    with pytest.raises(ValueError, match="shorter than seq_len=8"):
        SequenceSampler(tmp_path, seq_len=8, batch_size=2, skip_short=True)


def test_missing_or_empty_root_names_directory(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        SequenceSampler(missing, seq_len=4, batch_size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        SequenceSampler(tmp_path / "empty", seq_len=4, batch_size=2)


def test_corrupt_episode_is_reported(tmp_path):
    fill_store(tmp_path, [10])
    (tmp_path / "zz_bad.npz").write_text("garbage")
    with pytest.raises(EpisodeFormatError, match="zz_bad.npz"):
        SequenceSampler(tmp_path, seq_len=4, batch_size=2)


def test_mismatched_action_dims_are_reported(tmp_path):
    store = fill_store(tmp_path, [10])
    store.save("ep999", make_episode(10, action_dim=3, size=16))
    with pytest.raises(ValueError, match=r"ep999\.npz.*'action'"):
        SequenceSampler(tmp_path, seq_len=4, batch_size=2)
