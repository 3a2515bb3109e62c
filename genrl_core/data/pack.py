"""A compact, lossy copy of a dataset, to carry it where bandwidth or space is short (a GPU box).

    genrl pack-data --data data/walker --out packed/walker          # 135 MB of npz -> ~20 MB
    genrl unpack-data --packed packed/walker --out data/walker       # back to plain episodes

Each episode becomes `NAME.mp4` (its frames, H.264 in full-resolution colour, yuv444p) and
`NAME.npz` (every other array, exact). Frames come back within a few grey levels of the
originals (the mean PSNR is printed and stored in `pack.json`); actions, states and rewards
are bit-exact. Unpacking writes ordinary store episodes, so training code never sees the
difference. Decoding uses OpenCV when it is installed (GPU images often have it and lack
ffmpeg), else imageio-ffmpeg.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from genrl_core.data.store import ALL_KEYS, INT_META_KEYS, STR_META_KEYS, EpisodeStore, load_episode, save_episode
from genrl_core.errors import ConfigError, DataError, MissingFileError
from genrl_core.fileio import atomic_write

PACK_FILE = "pack.json"
PACK_VERSION = 1
# `train` keeps only what world-model training reads (EpisodeReplay.KEYS), for the smallest copy;
# its unpacked episodes serve training, and load_episode() names the keys they lack
TRAIN_FIELDS = ("image", "action", "is_first", "is_last", "is_terminal", "reward", "body", "task", "policy", "seed",
                "format_version")
# `practice` adds every task's reward, which the oracle reward heads of `genrl practice` fit
FIELDS = {"all": ALL_KEYS, "train": TRAIN_FIELDS, "practice": (*TRAIN_FIELDS, "task_rewards", "task_names")}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def encode_frames(path: Path, frames: np.ndarray, crf: int) -> None:
    """uint8 (T, H, W, 3) -> an H.264 mp4 without chroma subsampling (limbs are a few pixels wide)."""
    import imageio.v2 as imageio

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with imageio.get_writer(tmp, fps=20, codec="libx264", macro_block_size=1, quality=None,
                            ffmpeg_log_level="error",
                            output_params=["-crf", str(crf), "-preset", "veryslow", "-pix_fmt", "yuv444p"]) as w:
        for frame in frames:
            w.append_data(frame)
    tmp.replace(path)


def decode_frames(path: Path) -> np.ndarray:
    """An mp4 -> uint8 (T, H, W, 3) RGB, with OpenCV if present, else imageio-ffmpeg."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cap.release()
        if frames:
            return np.stack(frames)
    import imageio.v2 as imageio

    return np.stack(imageio.mimread(path, memtest=False))


def _pack_one(args: tuple[Path, Path, int, str]) -> tuple[str, int, float]:
    src, out, crf, fields = args
    ep = load_episode(src)
    mp4 = out / f"{src.stem}.mp4"
    encode_frames(mp4, ep["image"], crf)
    rest = {k: ep[k] for k in FIELDS[fields] if k != "image"}
    atomic_write(out / f"{src.stem}.npz", lambda f: np.savez_compressed(f, **rest))
    back = decode_frames(mp4)
    if back.shape != ep["image"].shape:
        raise DataError(f"{src.name}: the mp4 decodes to {back.shape}, the episode has {ep['image'].shape}")
    return src.name, mp4.stat().st_size + (out / f"{src.stem}.npz").stat().st_size, _psnr(back, ep["image"])


def pack_dataset(data: str | Path, out: str | Path, crf: int = 18, fields: str = "all", workers: int = 1,
                 log=print) -> dict:
    """Write the compact copy of dataset `data` into `out` (episodes already there are skipped).

    crf: H.264 quality (0 lossless .. 51; 18 gives ~34 dB); fields: all | train (see FIELDS)."""
    data, out = Path(data), Path(out)
    paths = EpisodeStore(data).paths()
    if not paths:
        raise MissingFileError(f"dataset folder {data} holds no episodes")
    if not 0 <= crf <= 51:
        raise ConfigError(f"crf must be in 0..51 (lower is closer to the original), got {crf}")
    if fields not in FIELDS:
        raise ConfigError(f"unknown fields {fields!r}; valid: {', '.join(FIELDS)}")
    out.mkdir(parents=True, exist_ok=True)
    done = {p.stem for p in out.glob("*.npz")} & {p.stem for p in out.glob("*.mp4")}
    todo = [(p, out, crf, fields) for p in paths if p.stem not in done]
    meta_path = out / PACK_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"episodes": {}}
    if meta.get("fields", fields) != fields or meta.get("crf", crf) != crf:
        raise ConfigError(f"{out} already holds a pack with fields={meta['fields']} crf={meta['crf']}; "
                         f"use those or another --out")
    with ProcessPoolExecutor(max(1, workers)) as pool:
        for i, (name, size, psnr) in enumerate(pool.map(_pack_one, todo), 1):
            meta["episodes"][name] = {"bytes": size, "psnr": round(psnr, 2)}
            if i % 20 == 0 or i == len(todo):
                log(f"[pack-data] {i}/{len(todo)} episodes packed")
    for extra in ("dataset.json",):
        if (data / extra).exists():
            shutil.copy(data / extra, out / extra)
    eps = meta["episodes"]
    meta.update(version=PACK_VERSION, crf=crf, fields=fields, source=data.name,
                total_bytes=sum(e["bytes"] for e in eps.values()),
                mean_psnr=round(float(np.mean([e["psnr"] for e in eps.values()])), 2))
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"[pack-data] {len(eps)} episodes, {meta['total_bytes'] / 1e6:.1f} MB, frames at {meta['mean_psnr']} dB "
        f"PSNR -> {out}")
    return meta


def _unpack_one(args: tuple[Path, Path]) -> str:
    npz, out = args
    with np.load(npz, allow_pickle=False) as f:
        ep = {k: (f[k].item() if k in STR_META_KEYS + INT_META_KEYS else f[k]) for k in f.files}
    ep["image"] = decode_frames(npz.with_suffix(".mp4"))
    if len(ep["image"]) != len(ep["action"]):
        raise DataError(f"{npz.name}: {len(ep['image'])} frames for {len(ep['action'])} steps")
    if all(k in ep for k in ALL_KEYS):
        save_episode(out / npz.name, ep)
    else:  # a `train` pack: only what training reads, still written atomically
        atomic_write(out / npz.name, lambda f: np.savez_compressed(f, **ep))
    return npz.name


def unpack_dataset(packed: str | Path, out: str | Path, workers: int = 1, log=print) -> int:
    """Decode a packed copy back into a plain dataset folder; returns the number of episodes."""
    packed, out = Path(packed), Path(out)
    if not (packed / PACK_FILE).exists():
        raise MissingFileError(f"{packed} is not a packed dataset (no {PACK_FILE}; make one with `genrl pack-data`)")
    out.mkdir(parents=True, exist_ok=True)
    todo = [(p, out) for p in sorted(packed.glob("*.npz")) if not (out / p.name).exists()]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        done = len(list(pool.map(_unpack_one, todo)))
    if (packed / "dataset.json").exists():
        shutil.copy(packed / "dataset.json", out / "dataset.json")
    log(f"[unpack-data] {done} episodes decoded -> {out}")
    return done
