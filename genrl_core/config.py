"""Named presets and command-line overrides for model and training settings.

A preset is a named block (`tiny` for tests, `small` the shipped CPU default, `paper` the
original sizes for a GPU); `--set section.key=value` overrides single fields, DreamerV3
style, and every value is validated by the dataclass it lands in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genrl_core.models.rssm import RSSMConfig


@dataclasses.dataclass(frozen=True)
class WMTrainConfig:
    """World-model optimisation settings."""

    batch: int = 16  # sequences per update
    seq_len: int = 32  # steps per sequence
    steps: int = 20_000  # total updates
    lr: float = 3e-4
    eps: float = 1e-8
    grad_clip: float = 100.0
    log_every: int = 50  # updates between JSONL log lines
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints (taken at the next log line)
    seed: int = 0
    # auto: bf16 on CPUs with AVX512-BF16/AMX; on CUDA fp32 (TF32) below the paper sizes, where
    # measured faster than bf16 (launch-bound: casts cost more than they save), bf16 above
    amp: str = "auto"  # auto | none | bf16 | fp16
    # auto: compile (CUDA graphs) on CUDA when >= 2000 updates remain, to pay for ~75 s of compiling
    compile: str = "auto"  # auto | true | false
    channels_last: bool = True
    max_minutes: float = 0.0  # also stop (checkpoint saved) after this much training time this run; 0 = no limit
    snapshot_every: int = 0  # keep a weights copy every N updates in train_state/snapshots/ (0 = none)

    def __post_init__(self) -> None:
        for name in ("batch", "seq_len", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.amp not in ("auto", "none", "bf16", "fp16"):
            raise ValueError(f"train.amp must be auto, none, bf16 or fp16, got {self.amp!r}")
        if self.compile not in ("auto", "true", "false"):
            raise ValueError(f"train.compile must be auto, true or false, got {self.compile!r}")
        if self.max_minutes < 0 or self.snapshot_every < 0:
            raise ValueError("train.max_minutes and train.snapshot_every must be >= 0")
        if self.lr <= 0 or self.checkpoint_minutes <= 0:
            raise ValueError("train.lr and train.checkpoint_minutes must be > 0")


WM_PRESETS: dict[str, tuple[RSSMConfig, WMTrainConfig]] = {
    # seconds on a CPU: for tests
    "tiny": (RSSMConfig(deter=32, stoch=4, classes=4, hidden=32, depth=4),
             WMTrainConfig(batch=4, seq_len=8, steps=60, lr=1e-3, log_every=10)),
    # the shipped CPU default: ~0.5 s per update on 2 cores, learns walker in a few hours
    "small": (RSSMConfig(deter=256, stoch=32, classes=16, hidden=256, depth=16),
              WMTrainConfig(batch=16, seq_len=32, steps=20_000, lr=3e-4)),
    # GenRL's sizes (GENRL.md section 2): a GPU job
    "paper": (RSSMConfig(deter=1024, stoch=32, classes=32, hidden=1024, depth=48),
              WMTrainConfig(batch=48, seq_len=48, steps=500_000, lr=1e-4)),
}


def _coerce(current: Any, text: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true/false, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    return text


def apply_overrides(sections: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a dict of frozen dataclasses; returns a new dict."""
    out = dict(sections)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value (sections: {', '.join(out)})")
        path, text = item.split("=", 1)
        section, key = path.split(".", 1)
        if section not in out:
            raise ValueError(f"unknown section {section!r} in {item!r}; valid: {', '.join(out)}")
        fields = {f.name for f in dataclasses.fields(out[section])}
        if key not in fields:
            raise ValueError(f"unknown key {key!r} in {item!r}; valid {section} keys: {', '.join(sorted(fields))}")
        try:
            value = _coerce(getattr(out[section], key), text)
        except ValueError as exc:
            raise ValueError(f"bad value in {item!r}: {exc}") from None
        out[section] = dataclasses.replace(out[section], **{key: value})
    return out
