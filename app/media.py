"""Files the app writes or accepts: decoded target videos (cached on disk), video-prompt uploads
(size-limited, type-checked, content-addressed so the same clip maps to the same policy)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from app.errors import AppError
from genrl_core.prompt import bad_video_name, is_video_name

UPSCALE = 4  # 64 px frames shown at 256 px: nearest-neighbour keeps them sharp


def write_video(path: Path, frames: np.ndarray, fps: int = 20) -> Path:
    from genrl_core.video import write_mp4

    return write_mp4(path, frames, fps=fps, upscale=UPSCALE)


def digest(*parts: Any) -> str:
    """A short stable name for what `parts` describe: cache keys, server-chosen ids."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


class TargetCache:
    """Decoded target mp4s keyed by body, bundle version, prompt, steps, aligner and target samples;
    targets are deterministic (the connector's mode rollout, or the best of a seeded set of samples),
    so a repeated prompt is served from disk."""

    def __init__(self, folder: Path, keep: int = 256):
        self.folder, self.keep = folder, keep
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def path(self, body: str, version: str, prompt: str, steps: int, use_aligner: bool, samples: int) -> Path:
        return self.folder / f"{digest(body, version, prompt, steps, use_aligner, samples)}.mp4"

    def get(self, path: Path) -> Path | None:
        if path.exists():
            with self._lock:
                self.hits += 1
            return path
        with self._lock:
            self.misses += 1
        return None

    def prune(self) -> None:
        with self._lock:
            files = sorted(self.folder.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
            for old in files[: max(0, len(files) - self.keep)]:
                old.unlink(missing_ok=True)


def check_suffix(filename: str | None) -> str:
    if not is_video_name(filename or ""):
        raise AppError(415, bad_video_name(filename))
    return Path(filename).suffix.lower()


def save_upload(src: BinaryIO, filename: str | None, uploads: Path, max_bytes: int) -> Path:
    """Copy an uploaded video prompt to `uploads/<sha256>.<ext>` (at most `max_bytes`) and check
    that it decodes to enough frames. Same content -> same path -> same policy slug (reuse)."""
    suffix = check_suffix(filename)
    uploads.mkdir(parents=True, exist_ok=True)
    sha, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=uploads, prefix=".upload-", suffix=suffix, delete=False) as tmp:
        try:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise AppError(413, f"the upload is larger than the {max_bytes / 2**20:.0f} MB limit")
                sha.update(chunk)
                tmp.write(chunk)
        except AppError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    if size == 0:
        Path(tmp.name).unlink(missing_ok=True)
        raise AppError(400, "the uploaded video is empty")
    dest = uploads / f"{sha.hexdigest()[:32]}{suffix}"
    Path(tmp.name).replace(dest)
    check_video(dest, filename)
    return dest


def prune_uploads(uploads: Path, keep: set[Path], max_age_s: float, max_bytes: int) -> list[Path]:
    """Delete uploads older than `max_age_s`, then the oldest until the rest fit in `max_bytes`;
    never one in `keep` (the video prompts of queued and running jobs). Returns what went."""
    if not uploads.is_dir():
        return []
    now, keep = time.time(), {p.resolve() for p in keep}
    files = sorted((p for p in uploads.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime)
    gone, total = [], sum(p.stat().st_size for p in files)
    for path in files:  # oldest first
        if path.resolve() in keep:
            continue
        if now - path.stat().st_mtime > max_age_s or total > max_bytes:
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def prune_tree(folder: Path, max_age_s: float, max_bytes: int) -> list[Path]:
    """prune_uploads for a folder of folders (Gradio's temporary files: one folder per upload or shown
    file), by the same limits; folders left empty go too. A file's age counts from when it came into
    the folder (its ctime): Gradio's copies keep the original's mtime, and an old artefact copied
    to be shown a moment ago must not be deleted before the browser fetches it."""
    if not folder.is_dir():
        return []
    now, files = time.time(), []
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # a file another request just deleted
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files.append((max(st.st_mtime, st.st_ctime), st.st_size, path))
    files.sort(key=lambda f: f[0])
    gone, total = [], sum(size for _, size, _ in files)
    for added, size, path in files:  # oldest first
        if now - added > max_age_s or total > max_bytes:
            total -= size
            path.unlink(missing_ok=True)
            gone.append(path)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # only an empty folder can be removed
            sub.rmdir()
    return gone


def check_video(path: Path, filename: str | None = None) -> None:
    from genrl_core.video import read_video_prompt

    try:
        read_video_prompt(path)
    except ValueError as exc:
        path.unlink(missing_ok=True)
        raise AppError(400, f"{filename or path.name} is not a usable video prompt: "
                            f"{str(exc).replace(path.name, filename or path.name)}") from None


def save_upload_path(src: Path, filename: str | None, uploads: Path, max_bytes: int) -> Path:
    """The same as save_upload for a file already on disk (a Gradio upload)."""
    if src.stat().st_size > max_bytes:
        raise AppError(413, f"the upload is larger than the {max_bytes / 2**20:.0f} MB limit")
    with open(src, "rb") as f:
        return save_upload(f, filename or src.name, uploads, max_bytes)


def copy_file(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
