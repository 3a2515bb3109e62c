"""A bundle is a folder: config.json, one weights file per model, and the files made from them.

    bundle = Bundle("checkpoints/walker")
    wm = bundle.load_world_model("cpu")        # what from_pretrained is in LeRobot
    bundle.save_world_model(wm)                # and save_pretrained: the trainers write through it

`Bundle` owns the file names (nothing else spells "world_model.pt"), the loading of every model
but the VLM (`vlm.load_vlm`, which reads `Bundle.vlm_file`), and the world-model digest that
the files made from the world model (start states, reward heads) and the policies record.
Weights are plain state dicts loaded with `weights_only=True`; loading checks every tensor's
shape against the model built from config.json and names what does not match. Writes go to a
temp file first, so a crash never leaves a torn file.
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
from genrl_core.errors import BundleError
from genrl_core.fileio import atomic_write, file_lock
from genrl_core.models.actor_critic import Actor
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.models.reward_heads import RewardHeads
from genrl_core.models.rssm import RSSM, config_from_dict

__all__ = ["Bundle", "BundleError", "file_digest", "load_torch", "load_weights", "read_config",
           "relative_to_bundle", "save_torch", "write_config"]

BUNDLE_VERSION = 1
CONFIG_FILE = "config.json"
WORLD_MODEL_FILE = "world_model.pt"
VLM_FILE = "vlm.pt"
CONNECTOR_FILE = "connector.pt"
ALIGNER_FILE = "aligner.pt"
REWARD_HEADS_FILE = "reward_heads.pt"
BC_PRIOR_FILE = "bc_prior.pt"
START_STATES_FILE = "start_states.pt"
POLICIES_DIR = "policies"
TRAIN_STATE_DIR = "train_state"  # the trainers' resumable state (optimisers, RNG): not needed to use a bundle


def relative_to_bundle(path: str | Path, bundle: str | Path) -> str:
    """`path` as config.json records it: relative to the bundle, so the record means the same on
    any machine the bundle and its dataset are copied to together (never the trainer's absolute path)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(bundle).resolve())).as_posix()


def read_config(bundle: str | Path) -> dict[str, Any]:
    """The bundle's config.json ({} where there is none yet), checked to be of this code's version."""
    path = Path(bundle) / CONFIG_FILE
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
    atomic_write(Path(bundle) / CONFIG_FILE, lambda f: f.write(text))


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


def load_weights(module: nn.Module, path: str | Path | dict[str, Any]) -> None:
    """Load a state dict (from its file, or the dict itself) into `module`, naming missing,
    unexpected or mis-shaped tensors."""
    state = path if isinstance(path, dict) else load_torch(path)
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
        where = "the weights given do" if isinstance(path, dict) else f"{path} does"
        raise BundleError(f"{where} not match the model in config.json: {detail}")
    module.load_state_dict(state)


class _File:
    """A bundle's file as a read-only attribute: the path of `name` inside the bundle's folder."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, bundle: Bundle | None, owner: type | None = None) -> Path:
        if bundle is None:  # looked up on the class: the file's name
            return Path(self.name)
        return bundle.path / self.name


class Bundle:
    """One bundle folder: where each of its files is, and how each model is loaded and saved."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r})"

    # ------------------------------------------------------------ files
    config_file = _File(CONFIG_FILE)
    world_model_file = _File(WORLD_MODEL_FILE)
    vlm_file = _File(VLM_FILE)
    connector_file = _File(CONNECTOR_FILE)
    aligner_file = _File(ALIGNER_FILE)
    reward_heads_file = _File(REWARD_HEADS_FILE)
    bc_prior_file = _File(BC_PRIOR_FILE)
    start_states_file = _File(START_STATES_FILE)
    policies_dir = _File(POLICIES_DIR)  # the bundle's own (shipped) policies, one folder each

    def train_state_file(self, stage: str) -> Path:
        """Where the trainer of `stage` (world_model, vlm, connector) keeps what it resumes from."""
        return self.path / TRAIN_STATE_DIR / f"{stage}.pt"

    # ------------------------------------------------------------ config.json
    def config(self) -> dict[str, Any]:
        return read_config(self.path)

    def update_config(self, sections: dict[str, Any]) -> None:
        """Write `sections` into config.json over what it holds (a trainer records its own sections);
        trainers of one bundle may run at once (the world model beside the VLM), hence the lock."""
        with file_lock(self.path / CONFIG_FILE):
            write_config(self.path, {**self.config(), **sections})

    # ------------------------------------------------------------ world model
    def world_model_digest(self) -> str:
        """The world model's version: what start states, reward heads and policies record, so that
        one made from another world model is found out instead of silently misread."""
        return file_digest(self.world_model_file)

    def load_world_model(self, device: str | torch.device = "cpu") -> RSSM:
        """The trained RSSM, in eval mode; clear errors when it is missing or mismatched."""
        cfg = self.config()
        if "world_model" not in cfg:
            raise BundleError(f"{self.path} has no world model (config.json missing or without 'world_model'); "
                              f"train one with `genrl train-wm --out {self.path}`")
        model = RSSM(config_from_dict(cfg["world_model"]))
        load_weights(model, self.world_model_file)
        return model.to(device).eval()

    def save_world_model(self, model: nn.Module) -> None:
        save_torch(self.world_model_file, model.state_dict())

    # ------------------------------------------------------------ connector + aligner
    def load_connector(self, connector: Connector, aligner: Aligner) -> None:
        """The bundle's connector and aligner weights into these modules (built for its world model
        and VLM by the caller, who owns their device and mode)."""
        load_weights(connector, self.connector_file)
        load_weights(aligner, self.aligner_file)

    def save_connector(self, connector: Connector, aligner: Aligner) -> None:
        save_torch(self.connector_file, connector.state_dict())
        save_torch(self.aligner_file, aligner.state_dict())

    # ------------------------------------------------------------ the VLM (loaded by vlm.load_vlm)
    def save_vlm(self, state: dict[str, torch.Tensor]) -> None:
        """The VLM's trainable weights (its frozen text tower ships with the package, not here)."""
        save_torch(self.vlm_file, state)

    # ------------------------------------------------------------ files made from the world model
    def _save_for_world_model(self, path: Path, state: dict[str, Any]) -> None:
        save_torch(path, {**state, "world_model": self.world_model_digest()})

    def _load_for_world_model(self, path: Path, missing: str, stale: str) -> dict[str, Any]:
        if not path.exists():
            raise BundleError(missing)
        state = load_torch(path)
        if state.get("world_model") != self.world_model_digest():
            raise BundleError(stale)
        return state

    def start_states_current(self) -> bool:
        """Whether the start states exist and were built from this world model."""
        return (self.start_states_file.exists() and self.world_model_file.exists()
                and load_torch(self.start_states_file).get("world_model") == self.world_model_digest())

    def save_start_states(self, deter: torch.Tensor, stoch: torch.Tensor) -> None:
        """Posterior states (N, deter) and their stoch classes (N, stoch), stored small (fp16, uint8)."""
        self._save_for_world_model(self.start_states_file, {"deter": deter.half().cpu(),
                                                            "stoch": stoch.to(torch.uint8).cpu()})

    def load_start_states(self) -> dict[str, torch.Tensor]:
        """{"deter", "stoch"} as `save_start_states` stored them, built from this world model."""
        path = self.start_states_file
        fix = f"`genrl start-states --data DIR --bundle {self.path}`"
        return self._load_for_world_model(path, f"{self.path} has no start states; build them with {fix}",
                                          f"{path} was built for another world model; rebuild it with {fix}")

    def save_reward_heads(self, heads: RewardHeads, steps: int, heldout_mae: dict[str, float]) -> None:
        self._save_for_world_model(self.reward_heads_file, {"tasks": heads.tasks, "state_dict": heads.state_dict(),
                                                            "steps": steps, "heldout_mae": heldout_mae})

    def load_reward_heads(self, wm: RSSM) -> RewardHeads:
        """The oracle reward heads, frozen, on the world model's device; they must fit its version."""
        path = self.reward_heads_file
        state = self._load_for_world_model(
            path, f"{self.path} has no oracle reward heads; train them with "
                  f"`genrl train-reward-heads --data DIR --bundle {self.path}`",
            f"{path} was trained for another world model; retrain it with `genrl train-reward-heads`")
        heads = RewardHeads(wm.cfg.deter + wm.cfg.stoch_dim, state["tasks"])
        heads.load_state_dict(state["state_dict"])
        return heads.to(next(wm.parameters()).device).eval().requires_grad_(False)

    def save_bc_prior(self, prior: Actor, steps: int, heldout_nll: float | None) -> None:
        self._save_for_world_model(self.bc_prior_file, {"hidden": prior.hidden, "layers": prior.layers,
                                                        "state_dict": prior.state_dict(), "steps": steps,
                                                        "heldout_nll": heldout_nll})

    def load_bc_prior(self, wm: RSSM) -> Actor:
        """The behaviour-cloning prior (an actor fitted to the data's actions), frozen, on the world
        model's device; it must fit the world model's version."""
        path = self.bc_prior_file
        state = self._load_for_world_model(
            path, f"{self.path} has no behaviour-cloning prior; fit one with "
                  f"`genrl train-bc-prior --data DIR --bundle {self.path}`",
            f"{path} was fitted for another world model; refit it with `genrl train-bc-prior`")
        prior = Actor(wm.cfg.deter + wm.cfg.stoch_dim, wm.cfg.action_dim, state["hidden"], state["layers"])
        prior.load_state_dict(state["state_dict"])
        return prior.to(next(wm.parameters()).device).eval().requires_grad_(False)
