"""World-model training: resumable, logged, single process or DDP via torchrun.

    genrl train-wm --data data/walker --preset small --out checkpoints/walker
    torchrun --nproc_per_node 2 -m genrl_core.cli train-wm --data ... --out ... --device cpu

Rerunning with the same --out resumes from `train_state/world_model.pt` (weights,
optimizer, step, RNG and sampler state). Without that file but with shipped weights it
warm-starts from `world_model.pt` with a fresh optimizer. With neither, `init_from` starts a
new body's model from another bundle's world model of the same sizes (step 0, fresh optimizer;
where the bodies' action sizes differ, only the action inputs start fresh):
the frames of every body share the floor, the sky and the lighting, so a new body need not learn
to see from nothing. Logs go to `logs/world_model.jsonl`; `world_model.pt` (weights only) is what
the bundle ships.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from genrl_core.bundle import TRAIN_STATE_DIR, Bundle, BundleError, load_weights, relative_to_bundle, save_torch
from genrl_core.config import WMTrainConfig, apply_overrides
from genrl_core.config import preset as get_preset
from genrl_core.data.replay import EpisodeReplay
from genrl_core.errors import ConfigError, GenRLError
from genrl_core.models.rssm import RSSM, RSSMConfig, config_from_dict
from genrl_core.train.loop import PAPER_DETER, DeviceChoice, ProgressLog, TrainState, cuda_rng, torch_rng

SNAPSHOT_DIR = Path(TRAIN_STATE_DIR) / "snapshots"
LOG_FILE = Path("logs") / "world_model.jsonl"


class TrainingDiverged(GenRLError, RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def _size_diff(saved: RSSMConfig, wanted: RSSMConfig, ignore: tuple[str, ...] = ()) -> dict[str, tuple]:
    """The sizes in which two world-model configs differ: name -> (saved, wanted)."""
    return {k: (v, getattr(wanted, k)) for k, v in dataclasses.asdict(saved).items()
            if k not in ignore and getattr(wanted, k) != v}


def resolve_configs(out: Path, preset: str, overrides: list[str],
                    action_dim: int | None) -> tuple[RSSMConfig, WMTrainConfig, dict[str, Any]]:
    """Model/train configs for `out`: from its config.json when resuming, else from the preset.

    A bundle trained with another preset or other sizes is an error, not a silent restart.
    """
    sections = get_preset("world_model", preset)
    model_cfg, train_cfg = sections["model"], sections["train"]
    if action_dim is not None:
        model_cfg = dataclasses.replace(model_cfg, action_dim=action_dim)
    sections = apply_overrides({"model": model_cfg, "train": train_cfg}, overrides)
    model_cfg, train_cfg = sections["model"], sections["train"]
    bundle = Bundle(out).config()
    if "world_model" in bundle:
        saved = config_from_dict(bundle["world_model"])
        old_preset = bundle.get("world_model_preset")
        if old_preset != preset:
            raise BundleError(f"{out} holds a world model trained with preset {old_preset!r}, not {preset!r}: "
                              f"pass --preset {old_preset} to resume it, or choose another --out")
        # the action size comes from the dataset: compared only once it is known
        diff = _size_diff(saved, model_cfg, ignore=() if action_dim is not None else ("action_dim",))
        if diff:
            raise BundleError(f"{out} holds a world model of other sizes (saved vs requested: {diff})")
    return model_cfg, train_cfg, bundle


def _adopt_weights(model: RSSM, source: Path) -> None:
    """Start `model` from the world model of bundle `source`: of the same sizes, but maybe of another
    body with another action size (those inputs start fresh; `RSSM.adopt`)."""
    files = Bundle(source)
    if not files.world_model_file.is_file():
        raise BundleError(f"--init-from {source}: no world_model.pt there")
    saved = files.config().get("world_model")
    if saved is None:
        raise BundleError(f"--init-from {source}: its config.json does not describe its world model")
    theirs = config_from_dict(saved)
    if diff := _size_diff(theirs, model.cfg, ignore=("action_dim",)):
        raise BundleError(f"--init-from {source}: its world model has other sizes (its vs this one's: {diff}); "
                          f"pick the same --preset and sizes")
    source_model = RSSM(theirs)
    load_weights(source_model, files.world_model_file)  # names any tensor the file lacks
    model.adopt(source_model.state_dict())


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def train_world_model(data: str | Path, out: str | Path, preset: str = "small", overrides: list[str] | None = None,
                      device: str = "cpu", body: str | None = None, progress: bool = True,
                      init_from: str | Path | None = None, log=print) -> dict[str, Any]:
    """Train (or resume) the world model of bundle `out` on the episodes in `data`; `init_from`: a bundle
    whose world model a new one starts from (ignored when `out` already holds one)."""
    out = Path(out)
    rank, local_rank, world = _dist_info()
    if world > 1 and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" and world > 1 else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")

    model_cfg, cfg, bundle = resolve_configs(out, preset, overrides or [], action_dim=None)
    replay, held_out = EpisodeReplay.from_dir(data, cfg.seq_len, dev, seed=1000 * cfg.seed + rank, log=log)
    model_cfg = dataclasses.replace(model_cfg, action_dim=replay.action_dim)
    if "world_model" in bundle and config_from_dict(bundle["world_model"]) != model_cfg:
        raise BundleError(f"{out} holds a world model for {bundle['world_model']['action_dim']}-d actions, "
                          f"the dataset has {replay.action_dim}-d actions")
    torch.manual_seed(1000 * cfg.seed + rank)

    model = RSSM(model_cfg).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.eps, fused=dev.type == "cuda")
    files = Bundle(out)
    step = 0
    run = TrainState(files.train_state_file("world_model"), {
        "torch_rng": torch_rng(), "replay_rng": (replay.get_state, replay.set_state),
        **({"cuda_rng": cuda_rng(dev)} if dev.type == "cuda" else {})})
    if (state := run.load(restore_rng=rank == 0)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = run.step
        if rank != 0:  # other ranks draw their own fresh streams per resume point
            torch.manual_seed(1000 * cfg.seed + rank + step)
            replay.generator.manual_seed(1000 * cfg.seed + rank + step)
        log(f"[train-wm] resumed {out} at step {step}")
    elif files.world_model_file.exists():
        load_weights(model, files.world_model_file)
        step = int(bundle.get("world_model_train", {}).get("step", 0))
        log(f"[train-wm] warm start from {files.world_model_file} at step {step} (no optimizer state found)")
    elif init_from is not None:
        _adopt_weights(model, Path(init_from))
        bundle["world_model_init"] = relative_to_bundle(Path(init_from), out)
        log(f"[train-wm] new world model initialised from {Bundle(init_from).world_model_file}")

    choice = DeviceChoice.choose(dev, cfg.amp, cfg.compile, model_cfg.deter >= PAPER_DETER, cfg.steps - step)
    # RSSM.forward is the loss, so DDP's gradient hooks see the whole update
    loss_fn = choice.compile(torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model)
    scaler = torch.amp.GradScaler(dev.type, enabled=choice.amp == torch.float16)

    meta = {
        "body": body or bundle.get("body"), "world_model": dataclasses.asdict(model_cfg),
        "world_model_preset": preset, "world_model_data": relative_to_bundle(data, out),
        "world_model_heldout": [p.name for p in held_out],
        **({"world_model_init": bundle["world_model_init"]} if "world_model_init" in bundle else {}),
    }

    def checkpoint(step: int, elapsed: float) -> None:
        if rank != 0:
            return
        run.save(step, elapsed, model=model.state_dict(), optimizer=opt.state_dict())
        files.save_world_model(model)
        files.update_config({**meta, "world_model_train": {
            **dataclasses.asdict(cfg), "step": step, "train_seconds": round(elapsed, 1),
            "device": str(dev), "world_size": world, **choice.record(),
            "dataset_steps": replay.num_steps, "dataset_episodes": replay.num_episodes}})

    def decide(loss: torch.Tensor) -> tuple[bool, bool]:
        """(checkpoint now, stop now), decided at log steps only: one host sync per log line, and under
        DDP one all-reduce, so every rank diverges, checkpoints and stops at the same step (a rank
        deciding alone on its own clock would hang the others in the gradient all-reduce)."""
        over = bool(cfg.max_minutes) and plog.elapsed - run_start >= 60 * cfg.max_minutes
        flags = torch.tensor([0.0, float(plog.checkpoint_due()), float(over)], device=dev)
        flags[0] = (~torch.isfinite(loss.detach())).float()
        if world > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        diverged, due, stop = flags.tolist()
        if diverged:
            raise TrainingDiverged(f"loss became {loss.item()} by step {step}; stopped. The last good "
                                   f"checkpoint ({run.path}) is kept; try a lower train.lr")
        return bool(due), bool(stop)

    def snapshot(step: int) -> None:
        if rank == 0:
            save_torch(out / SNAPSHOT_DIR / f"world_model-{step:07d}.pt", model.state_dict())

    if rank == 0:
        log(f"[train-wm] {replay.num_episodes} episodes ({replay.num_steps} frames) for training, "
            f"{len(held_out)} held out; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; "
            f"{choice}, world size {world}")
    plog = ProgressLog(out / LOG_FILE, cfg.steps, step, cfg.log_every, cfg.checkpoint_minutes, "train-wm",
                       progress, run.elapsed, frames_per_step=cfg.batch * cfg.seq_len * world, enabled=rank == 0)
    run_start = plog.elapsed
    with plog.saving_on_interrupt(lambda: checkpoint(step, plog.elapsed), log):
        while step < cfg.steps:
            batch = replay.sample(cfg.batch)
            with choice.autocast():
                loss, metrics = loss_fn(batch["image"], batch["action"], batch["is_first"])
            due, stop = decide(loss) if (step + 1) % cfg.log_every == 0 else (False, False)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            plog.update(step, {**metrics, "grad_norm": grad_norm})
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                snapshot(step)
            if due:
                checkpoint(step, plog.elapsed)
            if stop:
                log(f"[train-wm] time budget of {cfg.max_minutes} min reached at step {step}")
                break
    checkpoint(step, plog.elapsed)
    if rank == 0:
        log(f"[train-wm] done: step {step}, {plog.elapsed:.0f}s of training -> {out}")
    return {"step": step, "model": model, "params": sum(p.numel() for p in model.parameters())}

