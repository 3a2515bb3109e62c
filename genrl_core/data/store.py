"""On-disk episode store: one compressed ``.npz`` file per episode.

Files are written atomically (temp file + fsync + ``os.replace``) so an
interrupted collection run never leaves a half-written episode under its
final name; only dot-prefixed ``.tmp`` leftovers, which readers ignore and
:meth:`EpisodeStore.clean_temp` removes.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrl_core.errors import ConfigError, GenRLError, MissingFileError
from genrl_core.fileio import atomic_write

FORMAT_VERSION = 1

# Arrays indexed by time step: all share the same leading length T.
TIME_KEYS = (
    "image",
    "action",
    "reward",
    "is_first",
    "is_last",
    "is_terminal",
    "state",
    "task_rewards",
)
STR_META_KEYS = ("body", "task", "policy")
INT_META_KEYS = ("seed", "format_version")
META_KEYS = ("task_names", *STR_META_KEYS, *INT_META_KEYS)
ALL_KEYS = TIME_KEYS + META_KEYS

# key -> (required ndim, required dtype)
_ARRAY_SPECS: dict[str, tuple[int, np.dtype]] = {
    "image": (4, np.dtype(np.uint8)),
    "action": (2, np.dtype(np.float32)),
    "reward": (1, np.dtype(np.float32)),
    "is_first": (1, np.dtype(bool)),
    "is_last": (1, np.dtype(bool)),
    "is_terminal": (1, np.dtype(bool)),
    "state": (2, np.dtype(np.float64)),
    "task_rewards": (2, np.dtype(np.float32)),
}

# Errors that np.load / zipfile raise for corrupt, truncated or foreign files.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError)

PathLike = str | os.PathLike[str]


class EpisodeFormatError(GenRLError, ValueError):
    """An episode (in memory or on disk) does not follow the store format."""


def validate_episode(ep: Mapping[str, Any], name: str = "episode") -> None:
    """Check keys, shapes, dtypes and episode-boundary flags of ``ep``.

    Raises :class:`EpisodeFormatError` naming ``name`` and the offending key.
    An episode is one complete trajectory: ``is_first`` is set only at t=0,
    ``is_last`` only at the final step, and ``is_terminal`` implies ``is_last``.
    """

    def err(msg: str) -> EpisodeFormatError:
        return EpisodeFormatError(f"{name}: {msg}")

    if not isinstance(ep, Mapping):
        raise err(f"expected a dict of arrays, got {type(ep).__name__}")
    missing = [k for k in ALL_KEYS if k not in ep]
    if missing:
        raise err(f"missing keys {missing}")

    for key, (ndim, dtype) in _ARRAY_SPECS.items():
        arr = ep[key]
        if not isinstance(arr, np.ndarray):
            raise err(f"'{key}' must be a numpy array, got {type(arr).__name__}")
        if arr.ndim != ndim:
            raise err(f"'{key}' must be {ndim}-D, got shape {arr.shape}")
        if arr.dtype != dtype:
            raise err(f"'{key}' must have dtype {dtype}, got {arr.dtype}")
    if ep["image"].shape[-1] != 3:
        raise err(f"'image' must have 3 channels (T,H,W,3), got shape {ep['image'].shape}")

    length = ep["is_first"].shape[0]
    if length < 1:
        raise err("episode has no time steps")
    for key in TIME_KEYS:
        if ep[key].shape[0] != length:
            raise err(f"'{key}' has length {ep[key].shape[0]}, expected {length} (length of 'is_first')")

    task_names = np.asarray(ep["task_names"])
    if task_names.ndim != 1 or (task_names.size and task_names.dtype.kind != "U"):
        raise err(f"'task_names' must be a 1-D array of str, got {task_names.dtype} shape {task_names.shape}")
    if ep["task_rewards"].shape[1] != task_names.shape[0]:
        raise err(
            f"'task_rewards' has {ep['task_rewards'].shape[1]} columns but there are {task_names.shape[0]} task_names"
        )
    for key in STR_META_KEYS:
        if not isinstance(ep[key], str):
            raise err(f"'{key}' must be a str, got {type(ep[key]).__name__}")
    for key in INT_META_KEYS:
        value = ep[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise err(f"'{key}' must be an int, got {type(value).__name__}")
    if ep["format_version"] != FORMAT_VERSION:
        raise err(f"format_version {ep['format_version']} found, this code supports version {FORMAT_VERSION}")

    is_first, is_last, is_terminal = ep["is_first"], ep["is_last"], ep["is_terminal"]
    if not is_first[0] or is_first[1:].any():
        raise err("'is_first' must be True at t=0 and False elsewhere")
    if not is_last[-1] or is_last[:-1].any():
        raise err("'is_last' must be True at the final step and False elsewhere")
    if (is_terminal & ~is_last).any():
        raise err("'is_terminal' is True at a step that is not the last")


def save_episode(path: PathLike, ep: Mapping[str, Any]) -> Path:
    """Validate ``ep`` and write it atomically to ``path`` (compressed npz).

    ``format_version`` is filled in when absent. The parent directory must
    exist. Returns the path written.
    """
    path = Path(path)
    ep = {"format_version": FORMAT_VERSION, **ep}
    validate_episode(ep, name=str(path))
    arrays = {key: ep[key] for key in TIME_KEYS}
    arrays["task_names"] = np.asarray(ep["task_names"], dtype=str)
    for key in STR_META_KEYS:
        arrays[key] = np.array(ep[key], dtype=str)
    for key in INT_META_KEYS:
        arrays[key] = np.array(ep[key], dtype=np.int64)

    # The parent must exist (EpisodeStore.save creates it); a stray path should fail loudly.
    if not path.parent.is_dir():
        raise MissingFileError(f"directory {path.parent} does not exist")
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.exists():
        raise MissingFileError(f"episode file not found: {path}")
    # Checked up front because np.load would report a foreign file as
    # "pickled data" and a .npy file would load as a plain array.
    if not zipfile.is_zipfile(path):
        raise EpisodeFormatError(f"{path}: not an npz (zip) archive; the file is truncated, corrupt or foreign")
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise EpisodeFormatError(f"{path}: not a readable episode npz file ({e})") from e


def _read(npz: np.lib.npyio.NpzFile, path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in npz.files]
    if missing:
        raise EpisodeFormatError(f"{path}: missing keys {missing}")
    try:
        return {k: npz[k] for k in keys}
    except _READ_ERRORS as e:
        raise EpisodeFormatError(f"{path}: corrupt episode file ({e})") from e


def read_arrays(path: PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read only ``keys`` from an episode file, without validation.

    npz members are decompressed lazily, so this is cheap for small keys
    (e.g. ``policy``, ``reward``) even when the images are large.
    Raises :class:`EpisodeFormatError` naming the file if it is unreadable
    or lacks one of ``keys``.
    """
    path = Path(path)
    with _open_npz(path) as npz:
        return _read(npz, path, keys)


def load_episode(path: PathLike) -> dict[str, Any]:
    """Load and validate an episode file fully into memory.

    0-d metadata (``body``, ``task``, ``policy``, ``seed``,
    ``format_version``) come back as Python ``str``/``int``.
    """
    path = Path(path)
    with _open_npz(path) as npz:
        # Check the version before the other keys so that files of another
        # format version report the version rather than a confusing key list.
        if "format_version" in npz.files:
            version = _read(npz, path, ("format_version",))["format_version"]
            if version.ndim != 0 or version.dtype.kind not in "iu":
                raise EpisodeFormatError(
                    f"{path}: 'format_version' must be a 0-d int, got {version.dtype} {version.shape}"
                )
            if int(version) != FORMAT_VERSION:
                raise EpisodeFormatError(
                    f"{path}: format_version {int(version)} found, this code supports version {FORMAT_VERSION}"
                )
        ep: dict[str, Any] = _read(npz, path, ALL_KEYS)
    for key in STR_META_KEYS + INT_META_KEYS:
        if ep[key].ndim == 0:
            ep[key] = ep[key].item()
    validate_episode(ep, name=str(path))
    return ep


class EpisodeStore:
    """A directory of episode files ``<root>/<name>.npz``."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """File path of episode ``name`` (given without extension)."""
        if not name or name.startswith(".") or Path(name).name != name:
            # Dot-names would be hidden from paths(); separators escape root.
            raise ConfigError(f"invalid episode name {name!r}: must be a plain file name not starting with '.'")
        return self.root / f"{name}.npz"

    def paths(self) -> list[Path]:
        """Sorted episode files; dot-files (e.g. temp files) are ignored."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.npz") if not p.name.startswith(".") and p.is_file())

    def __len__(self) -> int:
        return len(self.paths())

    def save(self, name: str, ep: Mapping[str, Any]) -> Path:
        """Validate and atomically write ``ep`` as ``<root>/<name>.npz``."""
        path = self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        return save_episode(path, ep)

    def load(self, name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load an episode by name (``"ep1"`` or ``"ep1.npz"``, in root) or by path."""
        if isinstance(name_or_path, str) and Path(name_or_path).name == name_or_path:
            return load_episode(self.path(name_or_path.removesuffix(".npz")))
        return load_episode(name_or_path)

    def exists(self, name: str) -> bool:
        """Whether a complete zip file exists for ``name`` (cheap; not a full validation)."""
        return zipfile.is_zipfile(self.path(name))

    def clean_temp(self) -> int:
        """Remove temp files left by crashed writes; returns how many were removed.

        Only call this while no writer is active, or it may remove a file
        that is still being written.
        """
        if not self.root.is_dir():
            return 0
        leftovers = [p for p in self.root.glob(".*.tmp") if p.is_file()]
        for p in leftovers:
            p.unlink(missing_ok=True)
        return len(leftovers)

    def summary(self) -> dict[str, Any]:
        """Episode count, total time steps (sum of T) and episode count per policy."""
        steps = 0
        policies: Counter[str] = Counter()
        for path in self.paths():
            arrays = read_arrays(path, ("policy", "reward"))
            policies[str(arrays["policy"])] += 1
            steps += arrays["reward"].shape[0]
        return {"episodes": sum(policies.values()), "steps": steps, "policies": dict(policies)}
