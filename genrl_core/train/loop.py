"""What every training loop shares: its resumable state file (`TrainState`: step, training
seconds and random streams, saved and restored the same way by every trainer), the choice of
precision and of compiling for a device (`DeviceChoice`), averaged JSONL metrics with rates, the
same scalars as TensorBoard event files beside them (`tensorboard/<log name>/`, opened by `genrl
logs`), a progress bar with ETA and a wall-clock checkpoint timer (`ProgressLog`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genrl_core.bundle import load_torch, save_torch

TENSORBOARD_DIR = "tensorboard"
PAPER_DETER = 1024  # from this world-model size up, bf16 beats fp32 on a GPU; below it the casts cost more


def resolve_amp(amp: str, device: torch.device, large: bool = True) -> torch.dtype | None:
    """The autocast dtype that measured fastest (docs/EXPERIMENTS.md, "Precision and memory layout"):
    on CUDA fp32 (with TF32 matmuls) for small models, which are bound by kernel launches, so casts
    cost more than they save, and bf16 for `large` (the paper's sizes); on a CPU bf16 where it has
    AVX512-BF16/AMX."""
    if amp == "none":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        if not large:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else None


# `compile=auto` compiles on a GPU for runs with at least this many updates left. Compiling takes
# about a minute either way; what differs is the time it saves per update (docs/EXPERIMENTS.md, "Speed"):
COMPILE_MIN_UPDATES = 2000  # a trainer's step (world model, VLM, connector): ~75 s to compile pays off after ~2,000
# a behaviour update is 16 imagined steps of small kernels, bound by their launches when eager, so
# compiling saves more per update and pays back within ~1,000
COMPILE_MIN_BEHAVIOUR_UPDATES = 1000


def should_compile(setting: str, device: torch.device, remaining: int, min_updates: int = COMPILE_MIN_UPDATES) -> bool:
    """train.compile: true/false as given; auto compiles on CUDA when the run is long enough. On a
    CPU compiling is opt-in: its small gain there does not repay minutes of compiling within a usual
    run (docs/EXPERIMENTS.md, "Speed")."""
    if setting == "auto":
        return device.type == "cuda" and remaining >= min_updates
    return setting == "true"


def compile_for(fn: Callable, device: torch.device) -> Callable:
    """torch.compile for the device: CUDA graphs (reduce-overhead) on a GPU, plain inductor on a CPU."""
    return torch.compile(fn, mode="reduce-overhead" if device.type == "cuda" else "default")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (from `resolve_amp`), or nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def allow_tf32(device: torch.device) -> None:
    """fp32 matmuls and convolutions on TF32 tensor cores, where fp32 is what `resolve_amp` chose."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


@dataclasses.dataclass(frozen=True)
class DeviceChoice:
    """A trainer's precision and compiling for its device, as its log line and config.json record them."""

    device: torch.device
    amp: torch.dtype | None  # the autocast dtype; None: fp32 (on TF32 tensor cores on a GPU)
    compiled: bool

    @classmethod
    def choose(cls, device: torch.device, amp: str, compile: str, large: bool, remaining: int) -> DeviceChoice:
        """`amp` and `compile` as a trainer's config gives them; `large`: a model of the paper's sizes
        (see `resolve_amp`); `remaining`: the updates this run has left (see `should_compile`)."""
        allow_tf32(device)
        return cls(device, resolve_amp(amp, device, large), should_compile(compile, device, remaining))

    def compile(self, fn: Callable) -> Callable:
        """`fn` compiled for the device where compiling was chosen, else `fn` itself."""
        return compile_for(fn, self.device) if self.compiled else fn

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def record(self) -> dict[str, Any]:
        """What config.json records of the choice."""
        return {"amp": str(self.amp), "compiled": self.compiled}

    def __str__(self) -> str:
        return f"device {self.device}, amp {self.amp}, compile {self.compiled}"


RngStream = tuple[Callable[[], Any], Callable[[Any], None]]  # how to read and how to restore one random stream


def torch_rng() -> RngStream:
    """The global torch CPU stream (weight init, dropout, sampled latents)."""
    return torch.get_rng_state, torch.set_rng_state


def cuda_rng(device: torch.device) -> RngStream:
    return (lambda: torch.cuda.get_rng_state(device)), (lambda state: torch.cuda.set_rng_state(state, device))


def numpy_rng(rng: np.random.Generator) -> RngStream:
    """A numpy generator, stored as its JSON state (a torch state file holds only tensors and plain data)."""

    def restore(state: str) -> None:
        rng.bit_generator.state = json.loads(state)

    return (lambda: json.dumps(rng.bit_generator.state)), restore


class TrainState:
    """A trainer's resumable state file: its own parts (models, optimisers) beside what every
    trainer keeps the same way: the step, the training seconds so far (over all runs) and its
    random streams, so that a resumed run draws what an uninterrupted one would have drawn."""

    def __init__(self, path: Path, rngs: dict[str, RngStream]):
        self.path, self.rngs = Path(path), rngs
        self.step, self.elapsed = 0, 0.0

    def load(self, restore_rng: bool = True) -> dict[str, Any] | None:
        """The saved state, or None where there is none; sets `step` and `elapsed` and, with
        `restore_rng`, restores the random streams that were saved."""
        if not self.path.exists():
            return None
        state = load_torch(self.path)
        self.step, self.elapsed = int(state.get("step", 0)), float(state.get("elapsed", 0.0))
        if restore_rng:
            for key, (_, restore) in self.rngs.items():
                if state.get(key) is not None:
                    restore(state[key])
        return state

    def save(self, step: int, elapsed: float, **parts: Any) -> None:
        save_torch(self.path, {**parts, "step": step, "elapsed": elapsed,
                               **{key: read() for key, (read, _) in self.rngs.items()}})


def event_writer(folder: Path):
    """A TensorBoard writer, or None where the tensorboard package is missing (a bare GPU box):
    the JSONL log has the same numbers."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class ProgressLog:
    def __init__(self, path: str | Path, total: int, initial: int, log_every: int, checkpoint_minutes: float,
                 desc: str, progress: bool = True, elapsed_before: float = 0.0, frames_per_step: int = 0,
                 enabled: bool = True):
        self.path, self.total, self.log_every, self.desc, self.step = Path(path), total, log_every, desc, initial
        self.checkpoint_seconds, self.frames_per_step, self.enabled = checkpoint_minutes * 60, frames_per_step, enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=not (progress and enabled))
        self.start, self.elapsed_before = time.time(), elapsed_before
        self.last_checkpoint = self.window_start = time.time()
        self.window: list[torch.Tensor] = []  # one row of metrics per update, still on the device
        self.keys: list[str] = []
        self.window_steps = 0
        self.board = event_writer(self.path.parent / TENSORBOARD_DIR / self.path.stem) if enabled else None

    @property
    def elapsed(self) -> float:
        """Training seconds over all runs of this out dir."""
        return self.elapsed_before + time.time() - self.start

    def update(self, step: int, metrics: dict[str, float | torch.Tensor]) -> None:
        """Record one update's metrics. Tensors stay on their device (a copy, so CUDA-graph outputs
        may be overwritten) until a log line is due: one host sync per log line, not per update."""
        self.step = step
        self.keys = list(metrics)
        device = next((v.device for v in metrics.values() if torch.is_tensor(v)), torch.device("cpu"))
        self.window.append(torch.stack([torch.as_tensor(v, device=device).detach().float().reshape(())
                                        for v in metrics.values()]))
        self.window_steps += 1
        self.bar.update(1)
        if step % self.log_every and step != self.total:
            return
        secs = max(time.time() - self.window_start, 1e-9)
        means = torch.stack([t.to(self.window[-1].device) for t in self.window]).mean(0).tolist()
        row = dict(zip(self.keys, (round(v, 4) for v in means), strict=True))
        row.update(step=step, steps_per_s=round(self.window_steps / secs, 3), elapsed=round(self.elapsed, 1))
        if self.frames_per_step:
            row["frames_per_s"] = round(self.window_steps * self.frames_per_step / secs, 1)
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.board is not None:
                for key, value in row.items():
                    if key != "step":
                        self.board.add_scalar(f"{self.desc}/{key}", value, step)
                self.board.flush()  # a killed run keeps every line it logged, as the JSONL does
            self.bar.set_postfix({k: row[k] for k in self.keys[:3]})
        self.window, self.window_steps, self.window_start = [], 0, time.time()

    def checkpoint_due(self) -> bool:
        if time.time() - self.last_checkpoint < self.checkpoint_seconds:
            return False
        self.last_checkpoint = time.time()
        return True

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()

    @contextlib.contextmanager
    def saving_on_interrupt(self, save: Callable[[], None], log=print) -> Iterator[None]:
        """Ctrl-C or SIGTERM inside the block saves a checkpoint, says so, and re-raises."""
        try:
            yield
        except KeyboardInterrupt:
            save()
            log(f"[{self.desc}] interrupted at step {self.step}; checkpoint saved, rerun to resume")
            raise
        finally:
            self.close()
