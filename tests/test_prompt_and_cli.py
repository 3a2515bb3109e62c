"""The prompt parsed once at the edge, the one settings syntax, and the CLI generated from the
documented configs (issue 14)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from genrl_core.bundle import read_config
from genrl_core.cli import build_parser, main, settings_given
from genrl_core.config import (
    PRESETS,
    BehaviourConfig,
    apply_overrides,
    apply_settings,
    describe,
    parse_settings,
    preset,
)
from genrl_core.errors import ConfigError, GenRLError
from genrl_core.prompt import MAX_PROMPT_CHARS, Prompt, PromptError, PromptTooLong, check_steps


def test_a_text_prompt_is_validated_and_identified_once():
    p = Prompt.text("  Stand up   STRAIGHT ")
    assert (p.kind, p.name, p.identity) == ("text", "Stand up   STRAIGHT", "text:stand up straight")
    assert Prompt.parse(p) is p and Prompt.parse("stand up straight").identity == p.identity
    assert p.slug_name == "stand-up-straight"
    with pytest.raises(PromptError, match="empty"):
        Prompt.text("   ")
    with pytest.raises(PromptTooLong, match=str(MAX_PROMPT_CHARS)):
        Prompt.text("x" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(PromptError, match="lone surrogate"):
        Prompt.text("\ud800 stand")
    with pytest.raises(PromptError, match="text or a video"):
        Prompt.parse(42)


def test_a_video_prompt_is_a_file_hashed_by_its_bytes(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video, but bytes to hash")
    same = tmp_path / "renamed.mp4"
    same.write_bytes(clip.read_bytes())
    a, b = Prompt.parse(str(clip)), Prompt.parse(same)
    assert a.is_video and a.path == clip and a.identity == b.identity and a.name == "video clip.mp4"
    # a network prompt is never read as a path, even when it names an existing video file
    assert not Prompt.text(str(clip)).is_video
    with pytest.raises(PromptError, match="does not exist"):
        Prompt.parse(str(tmp_path / "missing.mp4"))
    with pytest.raises(PromptError, match="is not a file"):
        Prompt.video(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PromptError, match="must be one of"):
        Prompt.video(tmp_path / "notes.txt")


def test_steps_means_one_thing_everywhere():
    assert check_steps(8) == 8 and check_steps(64) == 64 and check_steps(np.int64(17)) == 17
    for bad in (7, 65, True, "32"):
        with pytest.raises(PromptError, match="steps must be between 8 and 64"):
            check_steps(bad)


def test_one_settings_syntax_for_text_and_typed_values():
    cfg = BehaviourConfig()
    text = parse_settings(["updates=7", "use_aligner=false", "actor_lr=1e-3"])
    assert text == {"updates": "7", "use_aligner": "false", "actor_lr": "1e-3"}
    typed = apply_settings(cfg, text, "behaviour")  # the command line's text and JSON's typed values alike
    assert (typed.updates, typed.use_aligner, typed.actor_lr) == (7, False, 1e-3)
    assert apply_settings(cfg, {"updates": 7, "use_aligner": False, "actor_lr": 1e-3}, "behaviour") == typed
    sections = apply_overrides(preset("world_model", "tiny"), ["model.deter=48", "train.amp=none"])
    assert sections["model"].deter == 48 and sections["train"].amp == "none"
    for bad, message in ((["updates=many"], "bad value for behaviour.updates: expected int, got 'many'"),
                         (["speed=3"], "unknown behaviour setting 'speed'"),
                         (["reward=euclid"], "unknown reward 'euclid'"),
                         (["max_minutes=nan"], "expected a finite number"), (["updates"], "must look like key=value")):
        with pytest.raises(ConfigError, match=message):
            apply_settings(cfg, parse_settings(bad), "behaviour")
    with pytest.raises(ConfigError, match="expected int, got True"):
        apply_settings(cfg, {"updates": True}, "behaviour")
    with pytest.raises(ConfigError, match="unknown preset 'huge'; valid: tiny, small, paper"):
        preset("connector", "huge")


def test_every_setting_is_documented_and_its_help_generated():
    for stage, presets in PRESETS.items():
        for section, cfg in presets["small"].items():
            docs = describe(type(cfg))
            undocumented = [f.name for f in dataclasses.fields(cfg) if not docs.get(f.name)]
            assert not undocumented, (stage, section, undocumented)
    commands = build_parser()._subparsers._group_actions[0].choices
    for command, stage in (("train-wm", "world_model"), ("train-vlm", "vlm"), ("train-connector", "connector"),
                           ("learn", "behaviour"), ("pipeline", "world_model")):
        flags = {a.option_strings[0]: a.help for a in commands[command]._actions if a.option_strings}
        for section, cfg in PRESETS[stage]["small"].items():
            docs = describe(type(cfg))
            for field in dataclasses.fields(cfg):
                flag = f"--{field.name}" if stage == "behaviour" else f"--{section}.{field.name}"
                assert docs[field.name].replace("%", "%%") in flags[flag], (command, flag)


def test_the_app_adds_serve_and_worker_to_the_core_commands():
    from app.cli import build_parser as genrl_parser

    core = set(build_parser()._subparsers._group_actions[0].choices)
    full = genrl_parser()._subparsers._group_actions[0].choices
    assert set(full) == core | {"serve", "worker"} and not core & {"serve", "worker"}
    flags = {c: {f for a in full[c]._actions for f in a.option_strings} for c in ("serve", "worker")}
    assert flags["serve"] == {"-h", "--help", "--bundle", "--db", "--runs", "--host", "--port", "--max-jobs", "--token",
                              "--workers", "--executor", "--ray-address"}
    assert flags["worker"] == {"-h", "--help", "--bundle", "--db", "--runs", "--device", "--jobs", "--claim-timeout"}


def test_a_setting_is_a_flag_or_a_set_string_alike():
    args = build_parser().parse_args(["learn", "run", "--updates", "3", "--set", "batch=8", "--use_aligner", "false"])
    assert sorted(settings_given(args)) == ["batch=8", "updates=3", "use_aligner=false"]
    args = build_parser().parse_args(["train-wm", "--data", "d", "--out", "o", "--train.steps", "20"])
    assert settings_given(args) == ["train.steps=20"]


def test_only_our_own_errors_become_cli_messages(capsys, monkeypatch):
    assert main(["learn", "run", "--bundle", "/nonexistent/bundle"]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert main(["train-connector", "--data", "d", "--bundle", "b", "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    # a bug is not dressed up as a user error: it keeps its traceback
    monkeypatch.setattr("genrl_core.cli._cmd_envs", lambda args: {}["missing"])
    with pytest.raises(KeyError):
        main(["envs"])
    assert issubclass(PromptError, GenRLError) and issubclass(ConfigError, GenRLError)


def test_train_wm_writes_event_files_and_a_relative_dataset_path(tmp_path, walker_random_data, capsys):
    bundle = tmp_path / "bundle"
    assert main(["train-wm", "--data", str(walker_random_data), "--out", str(bundle), "--preset", "tiny",
                 "--set", "train.steps=20", "--no-progress"]) == 0
    # the bundle records its dataset relative to itself, not as this machine's absolute path
    recorded = read_config(bundle)["world_model_data"]
    assert not Path(recorded).is_absolute() and (bundle / recorded).resolve() == Path(walker_random_data).resolve()
    assert main(["logs", str(bundle), "--list"]) == 0
    assert "logs/tensorboard/world_model: last step 20" in capsys.readouterr().out
    assert main(["logs", str(tmp_path / "nothing-here"), "--list"]) == 2
