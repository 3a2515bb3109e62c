"""The GenRL facade: one object that the CLI, the REST API, the UI and the tests all call.

    agent = GenRL.load("checkpoints/walker")
    latents = agent.target("stand up straight", steps=32)   # or a video file path
    frames = agent.decode(latents)                           # uint8 (32, 64, 64, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genrl_core.bundle import BundleError, load_weights, read_config
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.train.world_model import load_world_model
from genrl_core.video import read_video_prompt
from genrl_core.vlm import load_vlm
from genrl_core.vlm.base import MAX_PROMPT_CHARS

MIN_STEPS, MAX_STEPS = 8, 64
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".avi", ".mkv")


class PromptError(ValueError):
    """A prompt (text or video) or a request about it that cannot be served."""


class GenRL:
    def __init__(self, bundle: Path, wm, vlm, connector: Connector, aligner: Aligner, device: torch.device):
        self.bundle, self.wm, self.vlm = bundle, wm, vlm
        self.connector, self.aligner, self.device = connector.eval(), aligner.eval(), device

    @classmethod
    def load(cls, bundle: str | Path, device: str = "cpu") -> GenRL:
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
        return cls(bundle, wm, vlm, connector.to(dev), aligner.to(dev), dev)

    def embed_prompt(self, prompt: str | Path, use_aligner: bool = True) -> torch.Tensor:
        """(D,) embedding of a text prompt or a video file, aligned into the video region."""
        if isinstance(prompt, Path) or (isinstance(prompt, str) and prompt.lower().endswith(VIDEO_SUFFIXES)
                                        and Path(prompt).exists()):
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
