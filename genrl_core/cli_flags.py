"""The flags `genrl` commands share, and the setting flags generated from the config dataclasses."""

from __future__ import annotations

import argparse
import dataclasses

# Flags several commands share, defined once: name -> (flag, argparse keywords). A command picks
# them by name and may change a keyword (`required=True`, another help) where it means more.
FLAGS: dict[str, tuple[str, dict]] = {
    "bundle": ("--bundle", {"default": "checkpoints/walker", "help": "bundle folder"}),
    "data": ("--data", {"required": True, "help": "dataset folder from `genrl collect`"}),
    "device": ("--device", {"default": "cpu", "help": "cpu | cuda | cuda:K"}),
    "policies-dir": ("--policies-dir", {"default": None,
                                        "help": "where learned policies go (default BUNDLE/policies)"}),
    "no-progress": ("--no-progress", {"action": "store_true", "help": "no progress bar (logs still go to JSONL)"}),
    "workers": ("--workers", {"type": int, "default": 1, "help": "parallel worker processes"}),
    "seed": ("--seed", {"type": int, "default": 0, "help": "seed (episodes use seed, seed + 1, ...)"}),
    "size": ("--size", {"type": int, "default": 64, "help": "rendered frame size in pixels"}),
    "body": ("--body", {"required": True, "help": "walker | cheetah | quadruped | stickman"}),
    "init-from": ("--init-from", {"default": None,
                                  "help": "start a new world model from this bundle's (same sizes), e.g. "
                                          "checkpoints/walker for a new body: it already sees the floor, sky and "
                                          "light all bodies share"}),
    "vlm-backend": ("--vlm-backend", {"default": "embedded", "help": "embedded (the bundle's, default) | open_clip"}),
    "vlm-arch": ("--vlm-arch", {"default": None, "help": "open_clip architecture, e.g. ViT-B-32"}),
    "vlm-pretrained": ("--vlm-pretrained", {"default": None,
                                            "help": "open_clip pretrained tag (downloads: needs --vlm-download)"}),
    "vlm-checkpoint": ("--vlm-checkpoint", {"default": None, "help": "local open_clip weights file"}),
    "vlm-download": ("--vlm-download", {"action": "store_true", "help": "allow open_clip to download hub weights"}),
}
VLM_FLAGS = ("vlm-backend", "vlm-arch", "vlm-pretrained", "vlm-checkpoint", "vlm-download")


LEARNED_BUNDLE_HELP = {"help": "bundle a learned:POLICY_DIR policy was learned on"}


def add_flags(p: argparse.ArgumentParser, *names: str, **changes: dict) -> None:
    """Add shared flags by name; `changes` maps a name (with _ for -) to keywords that differ here."""
    for name in names:
        flag, keywords = FLAGS[name]
        p.add_argument(flag, **{**keywords, **changes.get(name.replace("-", "_"), {})})


SETTING = "setting:"  # argparse dest prefix of the flags generated from the configs


def add_settings(p: argparse.ArgumentParser, stage: str, example: str) -> None:
    """--preset, one flag per setting of the stage (`--KEY` for behaviour, `--SECTION.KEY` else), and
    --set for the same as KEY=VALUE strings. Every setting flag and its help are generated from the
    config dataclasses and their field comments (genrl_core/config.py); defaults shown are the small
    preset's."""
    from genrl_core.config import PRESETS, describe

    if stage != "behaviour":
        p.add_argument("--preset", default="small", help=f"named sizes: {' | '.join(PRESETS[stage])} "
                                                         "(tiny: tests, small: the CPU default, paper: GenRL's, GPU)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE" if stage == "behaviour" else "SECTION.KEY=VALUE",
                   help=f"the settings below as strings, e.g. {example}")
    group = p.add_argument_group("settings (genrl_core/config.py; default: the preset's)")
    for section, cfg in PRESETS[stage]["small"].items():
        docs = describe(type(cfg))
        for field in dataclasses.fields(cfg):
            key = field.name if stage == "behaviour" else f"{section}.{field.name}"
            group.add_argument(f"--{key}", dest=SETTING + key, default=None, metavar=type(field.default).__name__,
                               help=f"{docs.get(field.name, '')} (small: {getattr(cfg, field.name)!r})"
                               .replace("%", "%%"))  # argparse formats help with %


def settings_given(args: argparse.Namespace) -> list[str]:
    """The settings a command line gave, as KEY=VALUE strings: --set first, then the flags."""
    flags = [f"{dest[len(SETTING):]}={value}" for dest, value in vars(args).items()
             if dest.startswith(SETTING) and value is not None]
    return [*args.set, *flags]


def add_plan_flags(p: argparse.ArgumentParser, plan: type, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per field of a plan dataclass (e.g. PracticePlan), typed by its
    default and documented by the field's comment, so a new field is a new flag with no edit here."""
    from genrl_core.config import describe

    docs = describe(plan)
    for field in dataclasses.fields(plan):
        if field.name in skip:
            continue
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(field.default, bool) else \
            {"type": type(field.default)}
        p.add_argument(f"--{field.name.replace('_', '-')}", default=field.default, **kind,
                       help=f"{docs.get(field.name, '')} (default %(default)s)".replace("%%", "%"))


def plan_values(args: argparse.Namespace, plan: type, skip: tuple[str, ...] = ()) -> dict:
    """The values of a plan's flags (`add_plan_flags`) as its constructor takes them."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(plan) if f.name not in skip}
