"""A replay buffer of whole episodes held as tensors on the training device.

On a GPU the frames live in GPU memory and batches are gathered there (no host copies
per update); on the CPU it is the same code on CPU tensors. Sampling uses a torch
Generator whose state is checkpointed, so a resumed run draws the same batches.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genrl_core.data.store import EpisodeFormatError, EpisodeStore, read_arrays
from genrl_core.errors import DataError, MissingFileError

HOLDOUT_MODULO = 20  # an episode is held out for evaluation when crc32(name) % 20 == 0


def split_episodes(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held-out) by a stable hash of the file name: adding episodes never moves old ones."""
    held = [p for p in paths if zlib.crc32(p.name.encode()) % HOLDOUT_MODULO == 0]
    train = [p for p in paths if p not in held]
    if not train:  # tiny datasets: train on everything rather than nothing, and hold nothing out
        return paths, []
    return train, held


def load_training_arrays(path: Path) -> dict[str, np.ndarray]:
    """Only the arrays training reads (so a `train` pack from `genrl pack-data` serves), checked."""
    ep = read_arrays(path, EpisodeReplay.KEYS)
    image, action, first = ep["image"], ep["action"], ep["is_first"]
    if image.ndim != 4 or image.dtype != np.uint8 or image.shape[-1] != 3:
        raise EpisodeFormatError(f"{path}: 'image' must be uint8 (T, H, W, 3), got {image.dtype} {image.shape}")
    if action.ndim != 2 or len(action) != len(image) or first.shape != (len(image),):
        raise EpisodeFormatError(f"{path}: 'action' {action.shape} and 'is_first' {first.shape} must have the "
                                 f"{len(image)} steps of 'image'")
    return ep


class EpisodeReplay:
    KEYS = ("image", "action", "is_first")

    def __init__(self, paths: list[Path], seq_len: int, device: torch.device | str = "cpu", seed: int = 0,
                 extras: dict[str, Callable[[Path], np.ndarray]] | None = None, log=print):
        """`extras` name -> loader of a per-step array (T, ...) for an episode file, sampled alongside.
        Episodes shorter than seq_len (e.g. ended by a diverged simulation) are skipped, and said so."""
        if not paths:
            raise MissingFileError("no episodes to train on")
        self.device, self.seq_len, self.log = torch.device(device), seq_len, log
        self.loaders = dict(extras or {})
        self.num_episodes = 0
        self.window = torch.arange(seq_len, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        if not self.extend(paths):
            raise DataError(f"every episode is shorter than seq_len {seq_len}")

    def extend(self, paths: list[Path]) -> int:
        """Append episodes (a growing replay: an online learner adds what it collects); returns how
        many were long enough to keep."""
        seq_len = self.seq_len
        images, actions, firsts, starts, kept = [], [], [], [], []
        extra_parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.loaders}
        offset = self.num_steps if self.num_episodes else 0
        for path in paths:
            ep = load_training_arrays(path)
            length = len(ep["image"])
            if length < seq_len:
                self.log(f"[replay] skipping {path.name}: {length} steps, shorter than seq_len {seq_len}")
                continue
            kept.append(path)
            images.append(torch.from_numpy(ep["image"]))
            actions.append(torch.from_numpy(ep["action"]))
            firsts.append(torch.from_numpy(ep["is_first"]))
            starts.append(torch.arange(offset, offset + length - seq_len + 1))
            for name, load in self.loaders.items():
                arr = np.asarray(load(path))
                if len(arr) != length:
                    raise DataError(f"{name} for {path} has {len(arr)} steps, the episode {length}")
                extra_parts[name].append(torch.from_numpy(arr))
            offset += length
        if not images:
            return 0
        dims = actions[0].shape[1] if not self.num_episodes else self.action_dim
        for path, act in zip(kept, actions, strict=True):
            if act.shape[1] != dims:
                raise DataError(f"{path}: 'action' has {act.shape[1]} dims, other episodes {dims}; "
                                 f"use one body per dataset")

        def joined(old: torch.Tensor | None, parts: list[torch.Tensor]) -> torch.Tensor:
            new = torch.cat(parts).to(self.device)
            return new if old is None else torch.cat([old, new])

        first = not self.num_episodes
        self.images = joined(None if first else self.images, images)
        self.actions = joined(None if first else self.actions, actions)
        self.is_first = joined(None if first else self.is_first, firsts)
        self.starts = joined(None if first else self.starts, starts)
        self.extras = {name: joined(None if first else self.extras[name], parts)
                       for name, parts in extra_parts.items()}
        self.num_episodes += len(images)
        return len(images)

    @classmethod
    def from_dir(cls, data: str | Path, seq_len: int, device: torch.device | str = "cpu", seed: int = 0,
                 extras: dict[str, Callable[[Path], np.ndarray]] | None = None,
                 log=print) -> tuple[EpisodeReplay, list[Path]]:
        """Replay of the training split of a dataset folder, and the held-out paths."""
        store = EpisodeStore(data)
        if not Path(data).is_dir():
            raise MissingFileError(f"dataset folder {data} does not exist (create one with `genrl collect`)")
        paths = store.paths()
        if not paths:
            raise MissingFileError(f"dataset folder {data} holds no episodes (create them with `genrl collect`)")
        train, held = split_episodes(paths)
        return cls(train, seq_len, device, seed, extras, log), held

    @property
    def num_steps(self) -> int:
        return len(self.images)

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        pick = torch.randint(len(self.starts), (batch,), device=self.device, generator=self.generator)
        idx = self.starts[pick, None] + self.window
        is_first = self.is_first[idx].clone()
        is_first[:, 0] = True  # every sequence starts the model from a fresh state
        extras = {name: values[idx] for name, values in self.extras.items()}
        return {"image": self.images[idx], "action": self.actions[idx], "is_first": is_first, **extras}

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
