"""VLM layer: one interface (`VLM`), an open_clip back end and the shipped embedded one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genrl_core.bundle import Bundle, BundleError, file_digest, load_torch
from genrl_core.errors import MissingFileError
from genrl_core.fileio import atomic_write
from genrl_core.vlm.base import VLM, WINDOW, VLMError, window_indices

__all__ = ["VLM", "VLMError", "WINDOW", "embed_dataset", "load_vlm", "window_indices"]


def load_vlm(bundle: str | Path | None = None, backend: str = "embedded", arch: str | None = None,
             pretrained: str | None = None, checkpoint: str | Path | None = None, device: str = "cpu",
             allow_download: bool = False) -> VLM:
    """The bundle's embedded VLM (default), or an open_clip model (`backend="open_clip"`)."""
    if backend == "open_clip":
        from genrl_core.vlm.open_clip_backend import OpenClipVLM

        if not arch:
            raise VLMError("the open_clip back end needs an architecture (--vlm-arch, e.g. ViT-B-32)")
        return OpenClipVLM(arch, pretrained=pretrained, checkpoint=checkpoint, device=device,
                           allow_download=allow_download)
    if backend != "embedded":
        raise VLMError(f"unknown VLM back end {backend!r}; valid: embedded, open_clip")
    if bundle is None:
        raise VLMError("the embedded VLM is loaded from a bundle folder (--bundle)")
    files = Bundle(bundle)
    cfg, weights = files.config(), files.vlm_file
    if "vlm" not in cfg or not weights.exists():
        raise BundleError(f"{bundle} has no trained VLM; train one with `genrl train-vlm --out {bundle}`")
    from genrl_core.vlm.embedded import EmbeddedVLM

    return EmbeddedVLM.from_state(cfg["vlm"]["config"], load_torch(weights), device,
                                  name=f"embedded-{file_digest(weights)}")


def embeddings_dir(data: str | Path, vlm: VLM) -> Path:
    """Cache folder of one VLM's window embeddings inside a dataset: a new VLM gets a new folder."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in vlm.name)
    return Path(data) / "embeddings" / safe


def embed_dataset(data: str | Path, vlm: VLM, log=print) -> Path:
    """Cache one embedding per step (the window ending there) for every episode: float16 (T, D)."""
    from genrl_core.data.store import EpisodeStore, read_arrays

    paths = EpisodeStore(data).paths()
    if not paths:
        raise MissingFileError(f"dataset folder {data} holds no episodes")
    out = embeddings_dir(data, vlm)
    todo = [p for p in paths if not (out / f"{p.stem}.npy").exists()]
    log(f"[embed-dataset] {len(paths) - len(todo)}/{len(paths)} cached for {vlm.name}; embedding {len(todo)}")
    for i, path in enumerate(todo, 1):
        emb = vlm.embed_windows(read_arrays(path, ("image",))["image"]).numpy().astype(np.float16)
        atomic_write(out / f"{path.stem}.npy", lambda f, emb=emb: np.save(f, emb))
        log(f"[embed-dataset] {i}/{len(todo)} {path.name}: {emb.shape}")
    return out


def load_window_embeddings(data: str | Path, vlm: VLM, episode: str) -> torch.Tensor:
    path = embeddings_dir(data, vlm) / f"{episode}.npy"
    if not path.exists():
        raise MissingFileError(f"no cached embeddings at {path}; run `genrl embed-dataset` first")
    return torch.from_numpy(np.load(path).astype(np.float32))
