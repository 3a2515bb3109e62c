import os

import numpy as np
import pytest
from helpers_data import make_episode

from genrl_core.data import (
    FORMAT_VERSION,
    EpisodeFormatError,
    EpisodeStore,
    load_episode,
    save_episode,
    validate_episode,
)


def assert_episodes_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == b[key].dtype, key
            np.testing.assert_array_equal(value, b[key], err_msg=key)
        else:
            assert value == b[key], key


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    ep = make_episode(20, seed=3, policy="expert")
    path = save_episode(tmp_path / "ep.npz", ep)
    loaded = load_episode(path)
    assert_episodes_equal(ep, loaded)
    assert loaded["image"].dtype == np.uint8
    assert loaded["state"].dtype == np.float64
    assert loaded["action"].dtype == loaded["reward"].dtype == np.float32
    assert loaded["is_first"].dtype == bool
    assert type(loaded["body"]) is str and type(loaded["policy"]) is str
    assert type(loaded["seed"]) is int and loaded["format_version"] == FORMAT_VERSION
    assert loaded["task_names"].tolist() == ["run", "walk"]


def test_save_fills_missing_format_version(tmp_path):
    ep = make_episode(5)
    del ep["format_version"]
    assert load_episode(save_episode(tmp_path / "ep.npz", ep))["format_version"] == FORMAT_VERSION


def test_atomic_write_leaves_no_temp_file_and_overwrites(tmp_path):
    store = EpisodeStore(tmp_path / "eps")
    store.save("a", make_episode(5, seed=1))
    store.save("a", make_episode(7, seed=2))
    assert os.listdir(store.root) == ["a.npz"]
    assert store.load("a")["seed"] == 2
    assert oct(os.stat(store.root / "a.npz").st_mode & 0o777) == oct(0o644)


def test_invalid_episode_is_rejected_before_touching_existing_file(tmp_path):
    store = EpisodeStore(tmp_path)
    store.save("a", make_episode(5, seed=1))
    bad = make_episode(5, seed=2)
    bad["image"] = bad["image"].astype(np.float32)
    with pytest.raises(EpisodeFormatError, match="image"):
        store.save("a", bad)
    assert os.listdir(tmp_path) == ["a.npz"]
    assert store.load("a")["seed"] == 1


def test_temp_leftover_ignored_and_cleaned(tmp_path):
    store = EpisodeStore(tmp_path)
    store.save("a", make_episode(5))
    leftover = tmp_path / ".b.npz.x1y2.tmp"
    leftover.write_bytes(b"half-written")
    (tmp_path / ".hidden.npz").write_bytes(b"not an episode")
    assert store.paths() == [tmp_path / "a.npz"]
    assert len(store) == 1
    assert store.clean_temp() == 1
    assert not leftover.exists()
    assert store.clean_temp() == 0


def test_truncated_file_raises_naming_file(tmp_path):
    store = EpisodeStore(tmp_path)
    path = store.save("trunc", make_episode(10))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not store.exists("trunc")
    with pytest.raises(EpisodeFormatError, match="trunc.npz"):
        store.load("trunc")


def test_corrupted_bytes_raise_naming_file(tmp_path):
    path = save_episode(tmp_path / "corrupt.npz", make_episode(10))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(EpisodeFormatError, match="corrupt.npz"):
        load_episode(path)


def test_text_file_renamed_npz_raises_naming_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text\n")
    with pytest.raises(EpisodeFormatError, match="notes.npz"):
        load_episode(path)


def test_npy_file_raises_naming_file(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(EpisodeFormatError, match="single.npz"):
        load_episode(path)


def test_npz_without_episode_keys_raises_naming_file_and_keys(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(EpisodeFormatError, match=r"other\.npz.*missing keys.*image"):
        load_episode(path)


def test_wrong_format_version_says_found_and_supported(tmp_path):
    ep = make_episode(5)
    path = save_episode(tmp_path / "old.npz", ep)
    arrays = dict(np.load(path))
    arrays["format_version"] = np.array(FORMAT_VERSION + 1)
    np.savez_compressed(path, **arrays)
    with pytest.raises(EpisodeFormatError) as info:
        load_episode(path)
    msg = str(info.value)
    assert "old.npz" in msg
    assert f"format_version {FORMAT_VERSION + 1} found" in msg
    assert f"supports version {FORMAT_VERSION}" in msg


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_episode(tmp_path / "nope.npz")


def _drop_reward(ep):
    del ep["reward"]


def _short_action(ep):
    ep["action"] = ep["action"][:-1]


def _float_image(ep):
    ep["image"] = ep["image"].astype(np.float32)


def _gray_image(ep):
    ep["image"] = ep["image"][..., :1]


def _no_is_first(ep):
    ep["is_first"][0] = False


def _extra_is_first(ep):
    ep["is_first"][3] = True


def _not_last(ep):
    ep["is_last"][-1] = False


def _terminal_mid(ep):
    ep["is_terminal"][2] = True


def _task_count(ep):
    ep["task_names"] = np.array(["run"])


def _int_policy(ep):
    ep["policy"] = 3


@pytest.mark.parametrize(
    ("corrupt", "key"),
    [
        (_drop_reward, "reward"),
        (_short_action, "action"),
        (_float_image, "image"),
        (_gray_image, "image"),
        (_no_is_first, "is_first"),
        (_extra_is_first, "is_first"),
        (_not_last, "is_last"),
        (_terminal_mid, "is_terminal"),
        (_task_count, "task_names"),
        (_int_policy, "policy"),
    ],
)
def test_validate_episode_names_episode_and_key(corrupt, key):
    ep = make_episode(6)
    validate_episode(ep, name="my_ep")
    corrupt(ep)
    with pytest.raises(EpisodeFormatError, match=f"my_ep.*{key}"):
        validate_episode(ep, name="my_ep")


def test_store_names_exists_summary_and_episodes(tmp_path):
    store = EpisodeStore(tmp_path / "new" / "dir")
    assert len(store) == 0 and store.summary() == {"episodes": 0, "steps": 0, "policies": {}}
    store.save("b", make_episode(5, policy="random", seed=1))
    store.save("a", make_episode(7, policy="expert", seed=2))
    store.save("c", make_episode(9, policy="random", seed=3))
    assert [p.name for p in store.paths()] == ["a.npz", "b.npz", "c.npz"]
    assert store.exists("a") and not store.exists("zzz")
    assert store.load("a.npz")["seed"] == store.load(store.root / "a.npz")["seed"] == 2
    assert store.summary() == {"episodes": 3, "steps": 21, "policies": {"random": 2, "expert": 1}}
    assert [store.load(p)["seed"] for p in store.paths()] == [2, 1, 3]
    for bad in ("../x", ".hidden", ""):
        with pytest.raises(ValueError, match="invalid episode name"):
            store.save(bad, make_episode(3))
