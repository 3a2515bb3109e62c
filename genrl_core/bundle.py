"""A bundle is a folder: config.json + one weights file per model (+ policies later).

Weights are plain state dicts loaded with `weights_only=True`; loading checks every
tensor's shape against the model built from config.json and names what does not match.
Writes go to a temp file first, so a crash never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

import genrl_core
from genrl_core.errors import GenRLError
from genrl_core.fileio import atomic_write

BUNDLE_VERSION = 1


class BundleError(GenRLError, ValueError):
    """A bundle is missing, incomplete, or does not match the code or the request."""


def relative_to_bundle(path: str | Path, bundle: str | Path) -> str:
    """`path` as config.json records it: relative to the bundle, so the record means the same on
    any machine the bundle and its dataset are copied to together (never the trainer's absolute path)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(bundle).resolve())).as_posix()


def read_config(bundle: str | Path) -> dict[str, Any]:
    path = Path(bundle) / "config.json"
    if not path.exists():
        return {}
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    version = cfg.get("bundle_version", BUNDLE_VERSION)
    if version != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle_version {version}, this code reads version {BUNDLE_VERSION}")
    return cfg


def write_config(bundle: str | Path, cfg: dict[str, Any]) -> None:
    cfg = {**cfg, "bundle_version": BUNDLE_VERSION, "code_version": genrl_core.__version__}
    text = json.dumps(cfg, indent=1, sort_keys=True).encode()
    atomic_write(Path(bundle) / "config.json", lambda f: f.write(text))


def file_digest(path: str | Path) -> str:
    """Short content hash of a weights file: names the model version that other files depend on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def save_torch(path: str | Path, obj: Any) -> None:
    atomic_write(Path(path), lambda f: torch.save(obj, f))


def load_torch(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"missing file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for torn or foreign files
        raise BundleError(f"cannot read {path}: {exc}") from None


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a state dict into `module`, naming missing, unexpected or mis-shaped tensors."""
    state = load_torch(path)
    if not isinstance(state, dict):
        raise BundleError(f"{path} does not hold a state dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        detail = "; ".join(filter(None, [
            f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
            f"shape mismatch {shapes[:5]}" if shapes else ""]))
        raise BundleError(f"{path} does not match the model in config.json: {detail}")
    module.load_state_dict(state)
