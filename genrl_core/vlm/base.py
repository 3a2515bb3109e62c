"""One VLM interface: L2-normalised text and video embeddings in a shared space."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.config import WINDOW
from genrl_core.errors import GenRLError
from genrl_core.prompt import check_text


class VLMError(GenRLError, ValueError):
    """Bad input to a VLM, or a VLM that cannot be built (e.g. missing weights)."""


def window_indices(length: int, window: int = WINDOW) -> np.ndarray:
    """(length, window) frame indices of the window ending at each step; the first
    window-1 steps repeat frame 0 (the padded window), so every step has an embedding."""
    return np.clip(np.arange(length)[:, None] + np.arange(1 - window, 1)[None], 0, None)


class VLM(ABC):
    """`embed_text(list[str]) -> (N, D)`, `embed_video(uint8 (N, T, H, W, 3)) -> (N, D)`.

    Both are batched, run without gradients on `self.device`, and return L2-normalised
    float32 CPU tensors. Back ends implement `_text` and `_video` on device tensors.
    """

    embed_dim: int
    name: str

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    @abstractmethod
    def _text(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def _video(self, frames: torch.Tensor) -> torch.Tensor: ...

    @torch.no_grad()
    def embed_text(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        if isinstance(texts, str) or not isinstance(texts, list | tuple) or not texts:
            raise VLMError("embed_text expects a non-empty list of strings")
        for text in texts:
            check_text(text)  # the one prompt check: not empty, not too long, real text
        out = [self._text(list(texts[i: i + batch])) for i in range(0, len(texts), batch)]
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()

    @torch.no_grad()
    def embed_video(self, frames: np.ndarray | torch.Tensor, batch: int = 64) -> torch.Tensor:
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3 or 0 in frames.shape:
            raise VLMError(f"embed_video expects uint8 frames (N, T, H, W, 3), got {frames.dtype} "
                           f"{tuple(frames.shape)}")
        out = [self._video(frames[i: i + batch].to(self.device)) for i in range(0, len(frames), batch)]
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()

    def embed_windows(self, episode_frames: np.ndarray | torch.Tensor, batch: int = 64) -> torch.Tensor:
        """One embedding per step of an episode (T, H, W, 3): the 8-frame window ending there."""
        frames = torch.as_tensor(episode_frames)
        if frames.ndim != 4:
            raise VLMError(f"embed_windows expects episode frames (T, H, W, 3), got {tuple(frames.shape)}")
        idx = torch.from_numpy(window_indices(len(frames)))
        out = [self.embed_video(frames[idx[i: i + batch]], batch) for i in range(0, len(idx), batch)]
        return torch.cat(out)
