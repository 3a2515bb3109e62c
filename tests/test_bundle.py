"""The bundle object and the names of policies: file names and loading in one place, inference
that imports no training code, and policy slugs that survive the `bf16` -> `amp` rename."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from genrl_core.bundle import Bundle, BundleError
from genrl_core.config import BehaviourConfig, apply_settings, preset
from genrl_core.errors import ConfigError
from genrl_core.policies import PolicyMeta, PolicyStore, read_meta
from genrl_core.prompt import Prompt

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "walker"


def test_loading_a_bundle_imports_no_training_code():
    code = ("import sys; from genrl_core.bundle import Bundle; import genrl_core.vlm; "
            "print([m for m in sys.modules if m.startswith('genrl_core.train')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bundle_loads_its_models_and_names_what_is_missing(tiny_bundle, tmp_path):
    files = Bundle(tiny_bundle)
    wm = files.load_world_model()
    assert not wm.training and files.world_model_file.name == "world_model.pt"
    assert files.start_states_current() is False  # the tiny bundle has none
    with pytest.raises(BundleError, match="genrl start-states"):
        files.load_start_states()
    with pytest.raises(BundleError, match="no world model"):
        Bundle(tmp_path).load_world_model()


def test_a_default_request_still_finds_the_shipped_policies():
    """The shipped metas were written with `bf16: true`; they load with `amp`, and a request with
    the default settings (plus the oracle reward where that is the prompt) gets their slugs."""
    defaults = preset("behaviour", "small")["behaviour"]
    digest = Bundle(SHIPPED).world_model_digest()
    metas = [read_meta(folder) for folder in sorted(Bundle(SHIPPED).policies_dir.glob("*/"))]
    assert metas and all(m is not None for m in metas)
    store = PolicyStore(SHIPPED / "policies", SHIPPED / "policies", digest)
    for meta in metas:
        assert meta.config.amp == "bf16" and "bf16" not in meta.settings
        prompt = Prompt.parse(meta.prompt)
        request = dataclasses.replace(defaults, reward=meta.config.reward)
        assert store.slug(prompt, request) == meta.slug == store.slug(prompt, meta.config)
        assert store.find(meta.slug) is not None


def test_old_bf16_settings_map_to_amp_and_keep_their_slug(tmp_path):
    def old_slug(settings: dict) -> str:  # the slug as the code before `amp` computed it
        kept = {k: v for k, v in settings.items() if k not in ("log_every", "checkpoint_minutes", "compile")}
        return hashlib.sha256(json.dumps(["text:sit", kept, "wm"], sort_keys=True).encode()).hexdigest()[:8]

    store = PolicyStore(tmp_path, tmp_path, "wm")
    for flag, word in ((True, "bf16"), (False, "none")):
        # the settings as they were: `bf16` for `amp`, and no `init`, `bc_weight` or `target_samples`
        # (later settings)
        old = {**{k: v for k, v in dataclasses.asdict(BehaviourConfig()).items()
                  if k not in ("amp", "init", "bc_weight", "target_samples")},
               "bf16": flag}
        raw = {"slug": "sit-00000000", "prompt": "sit", "settings": old, "body": "walker", "world_model": "wm",
               "vlm": "v", "created": 1.0}
        cfg = PolicyMeta.from_dict(raw).config
        assert cfg.amp == word
        assert store.slug(Prompt.text("sit"), cfg) == f"sit-{old_slug(old)}"
    auto = apply_settings(BehaviourConfig(), {"amp": "auto"}, "behaviour")
    assert store.slug(Prompt.text("sit"), auto) != store.slug(Prompt.text("sit"), BehaviourConfig())
    with pytest.raises(ConfigError, match="loss scaling"):
        BehaviourConfig(amp="fp16")


def _record_many(bundle: str, who: str, start) -> None:
    start.wait()
    for i in range(150):
        Bundle(bundle).update_config({f"{who}_{i}": i})


def test_trainers_updating_one_config_at_once_lose_nothing(tmp_path):
    """The world-model and VLM trainers of one bundle may run side by side; each update of
    config.json keeps every section the other wrote."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), who, start)) for who in ("wm", "vlm")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    cfg = Bundle(tmp_path).config()
    assert {f"{who}_{i}" for who in ("wm", "vlm") for i in range(150)} <= set(cfg)
