"""The GenRL facade: one object that the CLI, the REST API, the UI and the tests all call.

    agent = GenRL.load("checkpoints/walker")
    latents = agent.target("stand up straight", steps=32)   # or a video file path
    frames = agent.decode(latents)                           # uint8 (32, 64, 64, 3)
    meta = agent.learn("stand up straight", {"updates": 1500}, callback=print)
    frames = agent.imagine(meta["slug"])                     # the policy, dreamed
    agent.evaluate(meta["slug"], "walker_stand", episodes=5) # the policy, in the real simulator
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl_core.bundle import BundleError, file_digest, load_torch, load_weights, read_config
from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.envs.tasks import body_tasks
from genrl_core.evaluate import TASK_PHRASES, run_policy
from genrl_core.models.actor_critic import Actor, feature
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.models.nets import mode_onehot
from genrl_core.models.reward import alignment_scores, similarity_matrix
from genrl_core.train.behaviour import (
    BEHAVIOUR_PRESETS,
    BehaviourConfig,
    LearningCancelled,
    StartStates,
    learn_policy,
    read_meta,
)
from genrl_core.train.reward_head import load_reward_heads, oracle_task
from genrl_core.train.world_model import load_world_model
from genrl_core.video import read_video_prompt
from genrl_core.vlm import load_vlm
from genrl_core.vlm.base import MAX_PROMPT_CHARS

MIN_STEPS, MAX_STEPS = 8, 64
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".avi", ".mkv")


__all__ = ["GenRL", "LearningCancelled", "PromptError"]


class PromptError(ValueError):
    """A prompt (text or video) or a request about it that cannot be served."""


def _is_video_prompt(prompt: str | Path) -> bool:
    """A Path, or a string naming an existing file with a video suffix (else it is text)."""
    return isinstance(prompt, Path) or (isinstance(prompt, str) and prompt.lower().endswith(VIDEO_SUFFIXES)
                                        and Path(prompt).exists())


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


class GenRL:
    def __init__(self, bundle: Path, wm, vlm, connector: Connector, aligner: Aligner, device: torch.device,
                 body: str, policies_dir: Path | None = None, behaviour_preset: str = "small"):
        self.bundle, self.wm, self.vlm, self.body = bundle, wm, vlm, body
        self.connector, self.aligner, self.device = connector.eval(), aligner.eval(), device
        self.policies_dir = policies_dir or bundle / "policies"
        self.behaviour_defaults = BEHAVIOUR_PRESETS[behaviour_preset]
        self.wm_digest = file_digest(bundle / "world_model.pt")
        self._actors: dict[str, Actor] = {}

    @classmethod
    def load(cls, bundle: str | Path, device: str = "cpu", policies_dir: str | Path | None = None,
             behaviour_preset: str = "small") -> GenRL:
        """`policies_dir`: where new policies go (default: the bundle's policies/ folder);
        the bundle's own policies/ are always listed too."""
        if behaviour_preset not in BEHAVIOUR_PRESETS:
            raise ValueError(f"unknown behaviour preset {behaviour_preset!r}; valid: {', '.join(BEHAVIOUR_PRESETS)}")
        bundle = Path(bundle)
        cfg = read_config(bundle)
        if not cfg:
            raise BundleError(f"{bundle} is not a bundle (no config.json)")
        if "connector" not in cfg:
            raise BundleError(f"{bundle} has no connector; train one with `genrl train-connector --bundle {bundle}`")
        wm = load_world_model(bundle, device)
        vlm = load_vlm(bundle, device=device)
        if cfg["connector"].get("vlm") != vlm.name:
            raise BundleError(f"{bundle}: the connector was trained with VLM {cfg['connector'].get('vlm')}, but the "
                              f"bundle's VLM is {vlm.name}; retrain it with `genrl train-connector`")
        connector = Connector(wm.cfg, vlm.embed_dim)
        aligner = Aligner(vlm.embed_dim)
        load_weights(connector, bundle / "connector.pt")
        load_weights(aligner, bundle / "aligner.pt")
        dev = torch.device(device)
        for module in (wm, connector, aligner):
            module.requires_grad_(False)  # frozen: behaviour learning only trains the actor and critic
        return cls(bundle, wm, vlm, connector.to(dev), aligner.to(dev), dev, cfg.get("body", "walker"),
                   Path(policies_dir) if policies_dir else None, behaviour_preset)

    def embed_prompt(self, prompt: str | Path, use_aligner: bool = True) -> torch.Tensor:
        """(D,) embedding of a text prompt or a video file, aligned into the video region."""
        if _is_video_prompt(prompt):
            try:
                emb = self.vlm.embed_video(read_video_prompt(prompt)[None])
            except ValueError as exc:
                raise PromptError(str(exc)) from None
        elif isinstance(prompt, str):
            text = prompt.strip()
            if not text:
                raise PromptError("the prompt is empty: describe what the body should do, e.g. 'stand up straight'")
            if len(text) > MAX_PROMPT_CHARS:
                raise PromptError(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
            emb = self.vlm.embed_text([text])
        else:
            raise PromptError(f"a prompt is text or a video file path, not {type(prompt).__name__}")
        emb = emb.to(self.device)
        with torch.no_grad():
            return (self.aligner(emb) if use_aligner else emb)[0]

    @torch.no_grad()
    def target(self, prompt: str | Path, steps: int = 32, use_aligner: bool = True) -> torch.Tensor:
        """Target latent states (steps, stoch, classes): the connector's mode rollout for the prompt."""
        if not MIN_STEPS <= int(steps) <= MAX_STEPS:
            raise PromptError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}")
        emb = self.embed_prompt(prompt, use_aligner)
        return self.connector.rollout(emb[None], int(steps))[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames (T, 64, 64, 3) of latent states (T, stoch, classes)."""
        return self.wm.postprocess(self.wm.decode(latents.to(self.device))).cpu().numpy()

    # ---------------------------------------------------------------- tasks
    def tasks(self) -> list[str]:
        """The body's tasks with a true reward, for evaluation."""
        return [t.name for t in body_tasks(self.body)]

    def guess_task(self, prompt: str | Path) -> str:
        """The body's task whose plain description is nearest to the prompt in the VLM's text space."""
        names = self.tasks()
        if not isinstance(prompt, str) or prompt.lower().endswith(VIDEO_SUFFIXES):
            return names[0]
        texts = [TASK_PHRASES.get(n, n.split("_", 1)[1].replace("_", " ")) for n in names]
        emb = self.vlm.embed_text([*texts, prompt.strip() or names[0]])
        return names[int((emb[:-1] @ emb[-1]).argmax())]

    # ---------------------------------------------------------------- policies
    def behaviour_config(self, settings: dict[str, Any] | None = None) -> BehaviourConfig:
        """The defaults with `settings` applied; bad keys or values raise PromptError."""
        settings = dict(settings or {})
        fields = {f.name: f for f in dataclasses.fields(BehaviourConfig)}
        for key, value in settings.items():
            if key not in fields:
                raise PromptError(f"unknown setting {key!r}; valid: {', '.join(fields)}")
            default = getattr(self.behaviour_defaults, key)
            ok = isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                ok, settings[key] = True, float(value)
            if not ok:
                raise PromptError(f"setting {key!r} must be {type(default).__name__}, got {value!r}")
        try:
            return dataclasses.replace(self.behaviour_defaults, **settings)
        except ValueError as exc:
            raise PromptError(str(exc)) from None

    def _prompt_key(self, prompt: str | Path) -> tuple[str, str]:
        """(readable name, identity) of a prompt; a video prompt is identified by its bytes."""
        if _is_video_prompt(prompt):
            path = Path(prompt)
            if not path.is_file():
                raise PromptError(f"video prompt {path} does not exist")
            return f"video {path.name}", "video:" + hashlib.sha256(path.read_bytes()).hexdigest()
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError("the prompt is empty: describe what the body should do, e.g. 'stand up straight'")
        return prompt.strip(), "text:" + " ".join(prompt.lower().split())

    def policy_slug(self, prompt: str | Path, settings: dict[str, Any] | None = None,
                    target: torch.Tensor | None = None) -> str:
        """Same prompt + settings + world model (+ explicit target) -> same slug, so a finished
        policy can be reused."""
        name, identity = self._prompt_key(prompt)
        if target is not None:
            classes = target.argmax(-1).to(torch.uint8).cpu().numpy()
            identity += ":target:" + hashlib.sha256(classes.tobytes()).hexdigest()
        cfg = dataclasses.asdict(self.behaviour_config(settings))
        for key in ("log_every", "checkpoint_minutes"):  # bookkeeping, not behaviour
            cfg.pop(key)
        digest = hashlib.sha256(json.dumps([identity, cfg, self.wm_digest], sort_keys=True).encode()).hexdigest()
        return f"{_slugify(name)}-{digest[:8]}"

    def _policy_dir(self, slug: str) -> Path | None:
        if not re.fullmatch(r"[a-z0-9-]{1,60}", slug or ""):
            raise PromptError(f"bad policy name {slug!r}")
        for root in (self.policies_dir, self.bundle / "policies"):
            if (root / slug / "policy.pt").exists():
                return root / slug
        return None

    def policies(self) -> list[dict[str, Any]]:
        """Metas of the finished policies (new ones and the bundle's shipped ones), newest first."""
        found: dict[str, dict[str, Any]] = {}
        for root in (self.bundle / "policies", self.policies_dir):
            for meta_path in sorted(root.glob("*/meta.json")) if root.is_dir() else []:
                meta = read_meta(meta_path.parent)
                if meta.get("finished") and (meta_path.parent / "policy.pt").exists():
                    found[meta_path.parent.name] = {**meta, "path": str(meta_path.parent)}
        return sorted(found.values(), key=lambda m: m.get("created", 0), reverse=True)

    def learn(self, prompt: str | Path, settings: dict[str, Any] | None = None,
              callback: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
              progress: bool = False, target: torch.Tensor | None = None) -> dict[str, Any]:
        """Learn a policy for the prompt in imagination, or return the finished one with the same
        prompt and settings. `callback(dict)` gets progress; setting `cancel` checkpoints and
        raises LearningCancelled (rerun to resume). `target` (horizon + 1 one-hot latent states)
        replaces the prompt's decoded target, e.g. an expert's own posterior states; the prompt
        then only names the policy."""
        cfg = self.behaviour_config(settings)
        slug = self.policy_slug(prompt, settings, target)
        done = self._policy_dir(slug)
        if done is not None and (finished := read_meta(done)).get("finished"):
            return {**finished, "path": str(done), "reused": True}
        run_dir = self.policies_dir / slug
        if target is None:
            target = self.target(prompt, steps=cfg.horizon + 1, use_aligner=cfg.use_aligner)
        elif target.shape != (want := (cfg.horizon + 1, self.wm.cfg.stoch, self.wm.cfg.classes)):
            raise PromptError(f"a target must have shape {want}, got {tuple(target.shape)}")
        heads = load_reward_heads(self.bundle, self.wm) if oracle_task(cfg.reward) else None
        gen = torch.Generator().manual_seed(cfg.seed)
        starts = StartStates(self.wm, self.bundle, cfg.start, self.connector, self.aligner, self.vlm.embed_dim, gen)
        meta = self.policy_meta(slug, prompt, cfg, read_meta(run_dir).get("created"))
        out = learn_policy(self.wm, target.to(self.device), starts, cfg, run_dir, self.wm.cfg.action_dim, meta,
                           callback, cancel, progress, heads)
        return {**out, "path": str(run_dir), "reused": False}

    def policy_meta(self, slug: str, prompt: str | Path, cfg: BehaviourConfig,
                    created: float | None = None) -> dict[str, Any]:
        """The meta a policy starts with (learn_policy adds its progress); one schema for all writers."""
        name, _ = self._prompt_key(prompt)
        return {"slug": slug, "prompt": name, "settings": dataclasses.asdict(cfg), "body": self.body,
                "world_model": self.wm_digest, "vlm": self.vlm.name, "created": created or time.time()}

    def load_policy(self, slug: str) -> tuple[Actor, dict[str, Any]]:
        """The actor of a finished policy and its meta; checks it was learned on this world model."""
        path = self._policy_dir(slug)
        if path is None:
            raise PromptError(f"no finished policy {slug!r}; learned ones: "
                              f"{', '.join(m['slug'] for m in self.policies()) or 'none yet'}")
        meta = read_meta(path)
        if meta.get("world_model") != self.wm_digest:
            raise BundleError(f"policy {slug} was learned on another world model; learn it again")
        if slug not in self._actors:
            cfg = BehaviourConfig(**meta["settings"])
            actor = Actor(self.wm.cfg.deter + self.wm.cfg.stoch_dim, self.wm.cfg.action_dim, cfg.hidden, cfg.layers)
            load_weights(actor, path / "policy.pt")
            self._actors[slug] = actor.to(self.device).eval()
        return self._actors[slug], meta

    # ---------------------------------------------------------------- looking at a policy
    @torch.no_grad()
    def _real_start(self, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent state of real reset frames of the body: where an episode starts."""
        images = torch.from_numpy(np.stack([PixelEnv(self.body, seed=seed + i).reset().image
                                            for i in range(batch)])).to(self.device)
        deter = self.wm.step(self.wm.initial_deter(batch, self.device),
                             torch.zeros(batch, self.wm.cfg.stoch, self.wm.cfg.classes, device=self.device),
                             torch.zeros(batch, self.wm.cfg.action_dim, device=self.device))
        return deter, mode_onehot(self.wm.posterior_probs(images))

    @torch.no_grad()
    def _rollout(self, actor: Actor, deter: torch.Tensor, stoch: torch.Tensor,
                 steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(deter (B, steps + 1, D), one-hot stoch (B, steps + 1, ...)) of the actor's mean actions in
        imagination, the start state first."""
        deters, stochs = [deter], [stoch]
        for _ in range(steps):
            deter = self.wm.step(deter, stoch, actor.act(feature(deter, stoch)))
            stoch = mode_onehot(self.wm.prior_probs(deter))
            deters.append(deter)
            stochs.append(stoch)
        return torch.stack(deters, 1), torch.stack(stochs, 1)

    def imagine(self, policy: str, steps: int = 64, seed: int = 0) -> np.ndarray:
        """Decoded frames (steps, 64, 64, 3) of the policy acting in the world model from a real start."""
        if not 1 <= int(steps) <= 1000:
            raise PromptError(f"steps must be between 1 and 1000, got {steps}")
        actor, _ = self.load_policy(policy)
        torch.manual_seed(seed)
        _, states = self._rollout(actor, *self._real_start(1, seed), int(steps) - 1)
        return self.decode(states[0])

    def alignment(self, prompt: str | Path | None, policy: str, batch: int = 16, seed: int = 0) -> dict[str, Any]:
        """Mean similarity of the target's first b states at each offset of the policy's imagined
        window, and the chosen t_a; the policy's own target is used when prompt is None."""
        actor, meta = self.load_policy(policy)
        cfg = BehaviourConfig(**meta["settings"])
        if prompt is None:
            target = load_torch(self._policy_dir(policy) / "target.pt").to(self.device)
        else:
            target = self.target(prompt, steps=cfg.horizon + 1, use_aligner=cfg.use_aligner)
        torch.manual_seed(seed)
        _, states = self._rollout(actor, *self._real_start(batch, seed), cfg.horizon)
        sim = similarity_matrix(cfg.reward, self.wm, states, target, states)
        scores = alignment_scores(sim, cfg.align_states).mean(0)
        return {"offsets": list(range(len(scores))), "similarity": [round(float(x), 5) for x in scores],
                "t_a": int(scores.argmax())}

    def evaluate(self, policy: str, task: str | None = None, episodes: int = 1, video: str | Path | None = None,
                 seed: int = 0, max_steps: int | None = None, keep_actions: bool = False) -> dict[str, Any]:
        """True return of the policy in the real simulator (from pixels), normalised where references exist."""
        actor, meta = self.load_policy(policy)
        task = task or self.guess_task(meta["prompt"])
        if task not in self.tasks():
            raise PromptError(f"unknown task {task!r} for {self.body}; valid: {', '.join(self.tasks())}")
        if not 1 <= int(episodes) <= 100:
            raise PromptError(f"episodes must be between 1 and 100, got {episodes}")
        return run_policy(self.wm, actor, task, int(episodes), seed, video, max_steps, keep_actions)
