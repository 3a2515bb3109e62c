"""Learned policies on disk: one schema (`PolicyMeta`), one store (`PolicyStore`), one handle
(`LearnedPolicy`) that `GenRL.learn` returns and `imagine`, `alignment` and `evaluate` take.

A policy is a folder named by its slug: `meta.json` (the PolicyMeta), `policy.pt` (the actor,
once finished), `state.pt` (while learning: everything to resume), `target.pt` (the target
states it learned against) and `log.jsonl`. The slug is a readable prefix of the prompt and a
digest of what the policy means (prompt identity, settings, world model), so the same request
finds the same finished policy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import torch

from genrl_core.bundle import BundleError, load_torch, load_weights
from genrl_core.config import BehaviourConfig, behaviour_identity, upgrade_behaviour_settings
from genrl_core.fileio import atomic_write
from genrl_core.models.actor_critic import Actor
from genrl_core.models.generalist import BoundActor, conditioned_actor, target_condition
from genrl_core.models.rssm import RSSMConfig
from genrl_core.prompt import Prompt, PromptError

META_FILE, POLICY_FILE, STATE_FILE, TARGET_FILE = "meta.json", "policy.pt", "state.pt", "target.pt"
# a finished run's critic, slow critic and return normaliser, kept where later runs start from its values
# (the generalist: refinements and its successor on a newer world model start from them)
VALUES_FILE = "values.pt"
SLUG_PATTERN = re.compile(r"[a-z0-9-]{1,60}")


@dataclasses.dataclass(frozen=True)
class PolicyMeta:
    """What a policy is (prompt, settings, world model) and how far its learning got."""

    slug: str
    prompt: str  # the prompt's readable name
    settings: dict[str, Any]  # the BehaviourConfig it learns with
    body: str
    world_model: str  # digest of the world model it learns in
    vlm: str
    created: float
    updates_done: int = 0
    finished: bool = False
    train_seconds: float = 0.0
    start_mode: str | None = None
    device: str | None = None
    prompt_kind: str = "text"  # text | video (metas written before this field: read from the name)

    @property
    def config(self) -> BehaviourConfig:
        try:
            return BehaviourConfig(**self.settings)
        except TypeError as exc:  # settings this code does not know: learned by another version
            raise BundleError(f"policy {self.slug} has settings this version does not know ({exc}); "
                              "learn it again") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def start(cls, slug: str, prompt: Prompt, cfg: BehaviourConfig, body: str, world_model: str, vlm: str,
              created: float | None = None) -> PolicyMeta:
        """The meta a policy starts with (its learner adds the progress); one schema for all writers."""
        return cls(slug=slug, prompt=prompt.name, prompt_kind=prompt.kind, settings=dataclasses.asdict(cfg),
                   body=body, world_model=world_model, vlm=vlm, created=created or time.time())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PolicyMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - set(raw)
        if missing:
            raise BundleError(f"policy meta lacks {', '.join(sorted(missing))}")
        known = {k: v for k, v in raw.items() if k in names}
        known["settings"] = upgrade_behaviour_settings(raw["settings"])  # a meta written before a rename
        if "prompt_kind" not in raw and str(raw["prompt"]).startswith("video "):
            known["prompt_kind"] = "video"
        return cls(**known)


def read_meta(folder: Path) -> PolicyMeta | None:
    """The folder's meta, or None where there is none yet (or it is unreadable)."""
    try:
        return PolicyMeta.from_dict(json.loads((folder / META_FILE).read_text()))
    except (OSError, json.JSONDecodeError, BundleError, TypeError):
        return None


def write_meta(folder: Path, meta: PolicyMeta) -> None:
    text = json.dumps(meta.to_dict(), indent=1, sort_keys=True).encode()
    atomic_write(folder / META_FILE, lambda f: f.write(text))


@dataclasses.dataclass(frozen=True)
class LearnedPolicy:
    """A finished policy: its meta and folder; `reused` when learn() found it already learned."""

    meta: PolicyMeta
    path: Path
    reused: bool = False

    @property
    def slug(self) -> str:
        return self.meta.slug

    @property
    def config(self) -> BehaviourConfig:
        return self.meta.config

    @property
    def policy_file(self) -> Path:
        return self.path / POLICY_FILE

    @property
    def target_file(self) -> Path:
        return self.path / TARGET_FILE


class PolicyStore:
    """New policies go to `root`; the bundle's shipped ones (`shipped`) are found too. Only
    policies learned on the world model with digest `world_model` load."""

    def __init__(self, root: Path, shipped: Path, world_model: str):
        # absolute: a handle's path must mean the same in another process or working directory
        self.root, self.shipped, self.world_model = Path(root).resolve(), Path(shipped).resolve(), world_model
        self._actors: dict[str, Actor] = {}

    def slug(self, prompt: Prompt, cfg: BehaviourConfig, target: torch.Tensor | None = None) -> str:
        """Same prompt + settings + world model (+ explicit target) -> same slug."""
        identity = prompt.identity
        if target is not None:
            classes = target.argmax(-1).to(torch.uint8).cpu().numpy()
            identity += ":target:" + hashlib.sha256(classes.tobytes()).hexdigest()
        digest = hashlib.sha256(json.dumps([identity, behaviour_identity(cfg), self.world_model],
                                           sort_keys=True).encode())
        return f"{prompt.slug_name}-{digest.hexdigest()[:8]}"

    def run_dir(self, slug: str) -> Path:
        """Where a policy with this slug learns (and resumes)."""
        return self.root / _checked(slug)

    def find(self, slug: str) -> LearnedPolicy | None:
        """The finished policy with this slug, learned here or shipped, or None."""
        for root in (self.root, self.shipped):
            folder = root / _checked(slug)
            meta = read_meta(folder)
            if meta is not None and meta.finished and (folder / POLICY_FILE).exists():
                return LearnedPolicy(meta, folder)
        return None

    def get(self, policy: str | LearnedPolicy) -> LearnedPolicy:
        """A finished policy by slug (or the handle itself), learned on this world model."""
        found = policy if isinstance(policy, LearnedPolicy) else self.find(policy)
        if found is None or not found.meta.finished or not found.policy_file.is_file():
            raise PromptError(f"no finished policy {policy!r}; learned ones: "
                              f"{', '.join(p.slug for p in self.list()) or 'none yet'}")
        if found.meta.world_model != self.world_model:
            raise BundleError(f"policy {found.slug} was learned on another world model; learn it again")
        return found

    def list(self) -> list[LearnedPolicy]:
        """Finished policies (shipped and new; a new one shadows a shipped one), newest first."""
        found: dict[str, LearnedPolicy] = {}
        for root in (self.shipped, self.root):
            for meta_path in sorted(root.glob(f"*/{META_FILE}")) if root.is_dir() else []:
                if SLUG_PATTERN.fullmatch(meta_path.parent.name) and (policy := self.find(meta_path.parent.name)):
                    found[policy.slug] = policy
        return sorted(found.values(), key=lambda p: p.meta.created, reverse=True)

    def actor(self, policy: LearnedPolicy, wm: RSSMConfig, device: torch.device) -> Actor:
        """The policy's actor, loaded once."""
        if policy.slug not in self._actors:
            self._actors[policy.slug] = load_actor(policy, wm, device)
        return self._actors[policy.slug]


def load_actor(policy: LearnedPolicy, wm: RSSMConfig, device: torch.device | str = "cpu") -> Actor:
    """A finished policy's actor, sized by its settings, for a world model of config `wm`."""
    cfg = policy.config
    if cfg.init == "generalist":  # a refined generalist: conditioned on its own target, kept beside it
        actor = conditioned_actor(wm, cfg.hidden, cfg.layers)
        load_weights(actor, policy.policy_file)
        target = load_torch(policy.target_file)
        return BoundActor(actor, target_condition(target[None])).to(device).eval()
    actor = Actor(wm.deter + wm.stoch_dim, wm.action_dim, cfg.hidden, cfg.layers)
    load_weights(actor, policy.policy_file)
    return actor.to(device).eval()


def _checked(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise PromptError(f"bad policy name {slug!r}")
    return slug
