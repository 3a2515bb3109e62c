"""Every setting of every stage in one place: the config dataclasses, the named presets, and
the one override syntax.

A preset is a named block (`tiny` for tests, `small` the shipped CPU default, `paper` the
original sizes for a GPU) per stage; `section.key=value` overrides single fields, DreamerV3
style, on the command line (`--set`) and in code, and every value is validated by the
dataclass it lands in. The trailing comment of a field is its documentation: the CLI's help
for that setting is generated from it (`describe`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

from genrl_core.errors import ConfigError
from genrl_core.models.reward import parse_reward
from genrl_core.models.rssm import RSSMConfig

WINDOW = 8  # frames per video embedding, as GenRL (the VLM's, the connector's and the captions' unit)


AMP_SETTINGS = ("auto", "none", "bf16", "fp16")
# behaviour learning has no loss scaling, which fp16 gradients need to not underflow
BEHAVIOUR_AMP_SETTINGS = ("auto", "none", "bf16")
COMPILE_SETTINGS = ("auto", "true", "false")


def check_device_settings(cfg: Any) -> None:
    """train.amp and train.compile of a trainer's config: one of their few words."""
    if cfg.amp not in AMP_SETTINGS:
        raise ConfigError(f"train.amp must be auto, none, bf16 or fp16, got {cfg.amp!r}")
    if cfg.compile not in COMPILE_SETTINGS:
        raise ConfigError(f"train.compile must be auto, true or false, got {cfg.compile!r}")


@dataclasses.dataclass(frozen=True)
class WMTrainConfig:
    """World-model optimisation settings."""

    batch: int = 16  # sequences per update
    seq_len: int = 32  # steps per sequence
    steps: int = 20_000  # total updates
    lr: float = 3e-4  # Adam learning rate
    eps: float = 1e-8  # Adam epsilon
    grad_clip: float = 100.0  # gradient norm clip
    log_every: int = 50  # updates between JSONL log lines
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints (taken at the next log line)
    seed: int = 0  # random seed
    # auto: bf16 on CPUs with AVX512-BF16/AMX; on CUDA fp32 (TF32) below the paper sizes, where
    # measured faster than bf16 (launch-bound: casts cost more than they save), bf16 above
    amp: str = "auto"  # auto | none | bf16 | fp16
    # auto: compile (CUDA graphs) on CUDA when >= 2000 updates remain, enough to pay for the compiling
    compile: str = "auto"  # auto | true | false
    channels_last: bool = True  # conv memory layout: ~13% faster on CPU
    max_minutes: float = 0.0  # also stop (checkpoint saved) after this much training time this run; 0 = no limit
    snapshot_every: int = 0  # keep a weights copy every N updates in train_state/snapshots/ (0 = none)

    def __post_init__(self) -> None:
        for name in ("batch", "seq_len", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        check_device_settings(self)
        if self.max_minutes < 0 or self.snapshot_every < 0:
            raise ConfigError("train.max_minutes and train.snapshot_every must be >= 0")
        if self.lr <= 0 or self.checkpoint_minutes <= 0:
            raise ConfigError("train.lr and train.checkpoint_minutes must be > 0")


@dataclasses.dataclass(frozen=True)
class EmbeddedVLMConfig:
    """Sizes of the image tower and temporal head (the text tower is fixed: MiniLM, 384-d)."""

    image_size: int = 64  # frame size in pixels
    patch_size: int = 8  # ViT patch size
    width: int = 192  # ViT width
    layers: int = 4  # ViT blocks
    head_width: int = 64  # per attention head
    temporal_layers: int = 1  # transformer blocks over the 8 frame embeddings
    context_length: int = 64  # text tokens
    embed_dim: int = 384  # = MiniLM's width, so the text tower needs no projection

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")
        if self.embed_dim != 384:
            raise ConfigError("embed_dim must be 384, the width of all-MiniLM-L6-v2")


@dataclasses.dataclass(frozen=True)
class VLMTrainConfig:
    """Embedded-VLM optimisation settings."""

    steps: int = 3000  # total updates
    batch: int = 32  # windows per batch, each of a different concept set
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay
    stride: int = 2  # label every `stride`-th window of an episode
    log_every: int = 25  # updates between JSONL log lines
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints
    seed: int = 0  # random seed
    # auto: bf16 on CPUs with AVX512-BF16/AMX, where it beats fp32; fp32 (TF32) on CUDA below ViT-B
    # width, where the casts cost more than they save
    amp: str = "auto"  # auto | none | bf16 | fp16; auto: bf16 on AVX512-BF16 CPUs, fp32/TF32 on a GPU at this size
    compile: str = "auto"  # auto | true | false; auto: CUDA graphs on a GPU when 2000+ updates remain

    def __post_init__(self) -> None:
        if min(self.steps, self.batch, self.stride, self.log_every) < 1 or self.lr <= 0:
            raise ConfigError("train-vlm: steps, batch, stride, log_every must be >= 1 and lr > 0")
        check_device_settings(self)


@dataclasses.dataclass(frozen=True)
class ConnectorTrainConfig:
    """Connector (and aligner) optimisation settings."""

    steps: int = 5000  # total updates
    batch: int = 16  # sequences
    seq_len: int = 48  # steps per sequence, cut into seq_len / 8 chunks
    lr: float = 3e-4  # Adam learning rate
    connector_weight: float = 0.8  # GenRL's KL weight
    grad_clip: float = 100.0  # gradient norm clip
    log_every: int = 50  # updates between JSONL log lines
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints
    seed: int = 0  # random seed
    # auto: bf16 on CPUs with AVX512-BF16/AMX, where it beats fp32; on CUDA fp32 (TF32) below the
    # paper's world-model size, where the casts cost more than they save
    amp: str = "auto"  # auto | none | bf16 | fp16; auto: bf16 on AVX512-BF16 CPUs, fp32/TF32 on a small GPU model
    compile: str = "auto"  # auto | true | false; auto: CUDA graphs on a GPU when 2000+ updates remain

    def __post_init__(self) -> None:
        check_device_settings(self)
        if self.seq_len % WINDOW:
            raise ConfigError(f"train.seq_len {self.seq_len} must be a multiple of the window ({WINDOW})")
        if min(self.steps, self.batch, self.log_every) < 1 or self.lr <= 0:
            raise ConfigError("train-connector: steps, batch, log_every must be >= 1 and lr > 0")


@dataclasses.dataclass(frozen=True)
class BehaviourConfig:
    """Behaviour learning in imagination: one policy per prompt."""

    updates: int = 5000  # actor-critic updates (paper: 50k, mostly converged by 10k)
    # the CPU's budget: long enough there for a pose prompt ("stand up straight") to learn to stand;
    # on a GPU `updates` ends the run first (figures: docs/EXPERIMENTS.md, "Figures behind the defaults")
    max_minutes: float = 20.0  # also stop (finished) after this much learning time; 0 = no limit
    batch: int = 256  # imagined trajectories per update (paper: 32 x 32 = 1024)
    horizon: int = 16  # imagined steps; the target has horizon + 1 states
    gamma: float = 0.99  # discount
    lam: float = 0.95  # lambda of the lambda-returns
    # paper: 3e-5 over 50k updates. A CPU run gets only a few thousand, so the rate is higher: with a
    # smaller one the walker only sat up where 3e-4 stood (docs/EXPERIMENTS.md, "Figures behind the defaults")
    actor_lr: float = 3e-4  # actor learning rate
    critic_lr: float = 3e-4  # critic learning rate
    entropy: float = 3e-4  # actor entropy bonus
    hidden: int = 256  # actor and critic MLP width
    layers: int = 2  # actor and critic MLP layers
    slow_critic_every: int = 100  # updates between hard copies to the slow critic, as GenRL
    # pose_motion: max_cosine that also asks a moving target for its motion (genrl_core/models/reward.py);
    # oracle:TASK: a true-reward head, the score ladder's ceiling
    reward: str = "max_cosine"  # max_cosine | cosine | kl | pose_motion | oracle:TASK
    align_states: int = 8  # b: initial target states slid over the imagined window
    use_aligner: bool = True  # map the prompt embedding with the aligner (off only for the ablation)
    # the connector's mode rollout can settle a gait onto one held pose (genrl_core/target_choice.py)
    target_samples: int = 0  # 0: the connector's mode rollout is the target; N: the best of N samples by the VLM
    start: str = "auto"  # dataset | data_free | auto (dataset when the bundle has start states)
    init: str = "scratch"  # scratch | generalist: start from the bundle's generalist on this prompt (refine it)
    # a reverse KL to the bundle's behaviour-cloning prior keeps imagined actions near the data's
    bc_weight: float = 0.0  # > 0: add bc_weight * E[-log prior(a|s)] to the actor's loss (needs `genrl train-bc-prior`)
    grad_clip: float = 100.0  # gradient norm clip
    # bf16 measured ~2-3x faster than fp32 on CPUs with AVX512-BF16 and on GPUs
    amp: str = "bf16"  # bf16 | none | auto (bf16 on AVX512-BF16 CPUs; on CUDA fp32 below the paper sizes, bf16 at them)
    compile: str = "auto"  # auto | true | false; auto: CUDA graphs on a GPU for runs of 1000+ updates and 2+ min
    seed: int = 0  # random seed
    log_every: int = 10  # updates between progress reports
    checkpoint_minutes: float = 0.5  # a killed job loses at most ~30 s of learning (a save is a few MB)

    def __post_init__(self) -> None:
        reward_kind, _ = parse_reward(self.reward)  # the registry's kinds (models/reward.py)
        if self.start not in ("auto", "dataset", "data_free"):
            raise ConfigError(f"unknown start {self.start!r}; valid: auto, dataset, data_free")
        if self.compile not in COMPILE_SETTINGS:
            raise ConfigError(f"compile must be auto, true or false, got {self.compile!r}")
        if self.init not in BEHAVIOUR_INITS:
            raise ConfigError(f"unknown init {self.init!r}; valid: {', '.join(BEHAVIOUR_INITS)}")
        if self.init == "generalist" and not reward_kind.matches_target:
            raise ConfigError("init=generalist refines the generalist's trajectory matching; an oracle reward has "
                              "no target to condition it on")
        if self.amp not in BEHAVIOUR_AMP_SETTINGS:
            raise ConfigError(f"amp must be bf16, none or auto, got {self.amp!r} (fp16 would need loss scaling, "
                              "which behaviour learning does not do)")
        if self.max_minutes < 0:
            raise ConfigError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if self.bc_weight < 0:
            raise ConfigError(f"bc_weight must be >= 0, got {self.bc_weight}")
        check_target_samples(self.target_samples)
        if not reward_kind.matches_target:
            # how a target is chosen cannot change what such a reward learns: one name, no sampling cost
            object.__setattr__(self, "target_samples", 0)
        if min(self.updates, self.batch, self.horizon, self.align_states, self.log_every) < 1:
            raise ConfigError("updates, batch, horizon, align_states and log_every must be >= 1")
        if self.align_states > self.horizon:
            raise ConfigError(f"align_states {self.align_states} must be <= horizon ({self.horizon})")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1 and self.actor_lr > 0 and self.critic_lr > 0):
            raise ConfigError("need 0 < gamma <= 1, 0 <= lam <= 1 and positive learning rates")


MAX_TARGET_SAMPLES = 256  # each candidate is decoded and embedded: a few ms apiece on a CPU


def check_target_samples(samples: int, name: str = "target_samples") -> None:
    """0 (the connector's mode rollout) or a candidate count up to MAX_TARGET_SAMPLES; `name` is what
    the caller calls it in the message (a setting, a flag)."""
    if not 0 <= samples <= MAX_TARGET_SAMPLES:
        raise ConfigError(f"{name} must be between 0 and {MAX_TARGET_SAMPLES}, got {samples}")

# where a policy's actor starts: its own random weights, or the bundle's generalist (genrl_core/generalist.py)
BEHAVIOUR_INITS = ("scratch", "generalist")

# settings that only change bookkeeping, not what a policy learns (left out of its identity)
BEHAVIOUR_BOOKKEEPING = ("log_every", "checkpoint_minutes", "compile")
# `amp` replaced the behaviour setting `bf16: bool`: the amp word each old value means
LEGACY_BF16 = {True: "bf16", False: "none"}


# settings added after policies were first learned and named, with the one value they had before:
# a meta without the key learned with that value, whatever today's default is
LATER_SETTINGS = (("init", "scratch"), ("bc_weight", 0.0), ("target_samples", 0))


def behaviour_identity(cfg: BehaviourConfig) -> dict[str, Any]:
    """The settings that name a policy (its slug digests them): all but the bookkeeping, with `amp`
    spelled as policies were first named (`bf16: true|false`), so that a request still finds the
    policies learned and shipped before the rename; `auto`, which has no old spelling, stays `amp`."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in BEHAVIOUR_BOOKKEEPING}
    for key, before in LATER_SETTINGS:  # at the value it always had before, a policy keeps its name
        if settings[key] == before:
            del settings[key]
    old = {word: flag for flag, word in LEGACY_BF16.items()}
    if settings["amp"] in old:
        settings["bf16"] = old[settings.pop("amp")]
    return settings


def upgrade_behaviour_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Behaviour settings as a policy's meta recorded them, in this code's names (`bf16` -> `amp`),
    with the value a later setting had before it existed where the meta predates it."""
    settings = dict(settings)
    if "bf16" in settings and "amp" not in settings:
        settings["amp"] = LEGACY_BF16[bool(settings.pop("bf16"))]
    for key, before in LATER_SETTINGS:
        settings.setdefault(key, before)
    return settings

# stage -> preset -> section -> config
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "world_model": {
        # seconds on a CPU: for tests
        "tiny": {"model": RSSMConfig(deter=32, stoch=4, classes=4, hidden=32, depth=4),
                 "train": WMTrainConfig(batch=4, seq_len=8, steps=60, lr=1e-3, log_every=10)},
        # the shipped CPU default: small enough to learn the walker in a few hours on 2 CPU cores
        "small": {"model": RSSMConfig(deter=256, stoch=32, classes=16, hidden=256, depth=16),
                  "train": WMTrainConfig(batch=16, seq_len=32, steps=20_000, lr=3e-4)},
        # GenRL's sizes (docs/GENRL.md section 2): a GPU job
        "paper": {"model": RSSMConfig(deter=1024, stoch=32, classes=32, hidden=1024, depth=48),
                  "train": WMTrainConfig(batch=48, seq_len=48, steps=500_000, lr=1e-4)},
    },
    "vlm": {
        "tiny": {"model": EmbeddedVLMConfig(width=64, layers=1, patch_size=16, head_width=32),
                 "train": VLMTrainConfig(steps=5, batch=4)},
        "small": {"model": EmbeddedVLMConfig(), "train": VLMTrainConfig()},
        "paper": {"model": EmbeddedVLMConfig(width=384, layers=6), "train": VLMTrainConfig(steps=20_000, batch=128)},
    },
    "connector": {
        "tiny": {"train": ConnectorTrainConfig(steps=20, batch=4, seq_len=16, log_every=10)},
        "small": {"train": ConnectorTrainConfig()},
        "paper": {"train": ConnectorTrainConfig(steps=50_000, batch=48, lr=1e-4)},
    },
    "behaviour": {
        "tiny": {"behaviour": BehaviourConfig(updates=5, max_minutes=0.0, batch=16, hidden=64, layers=1,
                                              log_every=1)},
        "small": {"behaviour": BehaviourConfig()},
        "paper": {"behaviour": BehaviourConfig(updates=50_000, max_minutes=0.0, batch=1024, actor_lr=3e-5,
                                               critic_lr=3e-5, hidden=1024, layers=4)},
    },
}


def preset(stage: str, name: str) -> dict[str, Any]:
    """The sections (name -> config) of one stage's named preset."""
    if stage not in PRESETS:
        raise ConfigError(f"unknown stage {stage!r}; valid: {', '.join(PRESETS)}")
    if name not in PRESETS[stage]:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS[stage])}")
    return dict(PRESETS[stage][name])


def _coerce(current: Any, value: Any) -> Any:
    """`value` as the type of the field's current value: text (the command line) is parsed,
    typed values (JSON) must already have the right type (an int is a fine float)."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"expected true/false, got {value!r}")
            return text.lower() in ("true", "1")
        try:
            value = type(current)(text)
        except ValueError:
            raise ValueError(f"expected {type(current).__name__}, got {value!r}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):  # nan passes every >= check
        raise ValueError(f"expected a finite number, got {value!r}")
    if not isinstance(value, type(current)) or (isinstance(value, bool) and not isinstance(current, bool)):
        raise ValueError(f"expected {type(current).__name__}, got {value!r}")
    return value


def apply_settings(cfg: Any, values: Mapping[str, Any], section: str = "") -> Any:
    """A copy of the config dataclass `cfg` with `values` (key -> text or typed value) applied."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    where = f"{section} " if section else ""
    changes = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown {where}setting {key!r}; valid: {', '.join(sorted(fields))}")
        try:
            changes[key] = _coerce(getattr(cfg, key), value)
        except ValueError as exc:
            raise ConfigError(f"bad value for {section + '.' if section else ''}{key}: {exc}") from None
    return dataclasses.replace(cfg, **changes)


def parse_settings(items: list[str]) -> dict[str, str]:
    """`key=value` strings -> {key: text}, in order (a later one wins); the values are typed and
    checked where they land (`apply_settings`)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"setting {item!r} must look like key=value")
        out[key.strip()] = text
    return out


def parse_overrides(overrides: list[str], sections: list[str]) -> dict[str, dict[str, str]]:
    """`section.key=value` strings -> {section: {key: text}}, in order (a later one wins)."""
    out: dict[str, dict[str, str]] = {}
    for path, text in parse_settings(overrides).items():
        section, dot, key = path.partition(".")
        if not dot or not key:
            raise ConfigError(f"override {path}={text} must look like section.key=value "
                              f"(sections: {', '.join(sections)})")
        if section not in sections:
            raise ConfigError(f"unknown section {section!r} in {path}={text}; valid: {', '.join(sections)}")
        out.setdefault(section, {})[key] = text
    return out


def apply_overrides(sections: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a dict of frozen dataclasses; returns a new dict."""
    out = dict(sections)
    for section, values in parse_overrides(overrides, list(sections)).items():
        out[section] = apply_settings(out[section], values, section)
    return out


def describe(cls: type) -> dict[str, str]:
    """field -> its documentation: the trailing comment on the field's line in the class source."""
    docs = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=[^#]+#\s*(.+)$", line)
        if match:
            docs[match.group(1)] = match.group(2).strip()
    return docs
