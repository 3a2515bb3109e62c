"""The targets a generalist trains on: many prompts' target latent sequences at once.

Three sources, each a set of VLM embeddings that the aligner and the connector turn into targets
exactly as a user's prompt is turned into one (`GenRL.target`):
- `prompts`: a prompt bank of the body's task phrases and of caption wordings of random posture,
  motion and detail combinations (`vlm.captions`). The score ladder's paraphrases are written in no
  caption template, so evaluation prompts stay out of the bank;
- `windows`: VLM embeddings of random 8-frame windows of dataset episodes (language-free, as the
  aligner is trained), when a dataset is given;
- `random`: random unit embeddings, the data-free sampling of GENRL.md.
The pool is stored as class indices (uint8), a few hundred KB for thousands of targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.envs.tasks import body_tasks
from genrl_core.evaluate import TASK_PHRASES
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.vlm.base import VLM
from genrl_core.vlm.captions import DETAILS, MOTIONS, POSTURES, caption

# motions and details that a posture can carry (a flip is its own posture-free motion)
_UPRIGHT = ("standing", "crouching")
_COMPATIBLE_DETAILS = {"one_foot": _UPRIGHT, "high_kick": _UPRIGHT, "hands_up": _UPRIGHT,
                       "legs_up": ("lying_back",)}


def prompt_bank(body: str, count: int, seed: int = 0) -> list[str]:
    """The body's task phrases, then caption wordings of random concept combinations, deduplicated
    (fewer than `count` when the wordings run out)."""
    rng = np.random.default_rng(seed)
    bank = dict.fromkeys(TASK_PHRASES.get(t.name, t.name) for t in body_tasks(body))
    details = [d for d in DETAILS if body == "stickman" or d != "hands_up"]
    for _ in range(count * 20):
        if len(bank) >= count:
            break
        posture = str(rng.choice(POSTURES))
        concepts = [posture]
        if rng.random() < 0.7:
            concepts.append(str(rng.choice(MOTIONS)))
        fitting = [d for d in details if posture in _COMPATIBLE_DETAILS[d]]
        if fitting and rng.random() < 0.3:
            concepts.append(str(rng.choice(fitting)))
        bank[caption(concepts, body, rng)] = None
    return list(bank)[:count]


def window_embeddings(vlm: VLM, episodes: list[np.ndarray], count: int, seed: int = 0) -> torch.Tensor:
    """(count, D) VLM embeddings of random windows of these episodes' frames (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    per_episode = -(-count // max(len(episodes), 1))
    out = []
    for frames in episodes:
        emb = vlm.embed_windows(frames)
        out.append(emb[rng.choice(len(emb), min(per_episode, len(emb)), replace=False)])
    return torch.cat(out)[:count] if out else torch.zeros(0, vlm.embed_dim)


@torch.no_grad()
def build_target_pool(vlm: VLM, aligner: Aligner, connector: Connector, body: str, steps: int,
                      prompts: int, random: int, episodes: list[np.ndarray] | None = None, windows: int = 0,
                      seed: int = 0) -> dict[str, torch.Tensor | list[str]]:
    """{"stoch": (N, steps, stoch) uint8 class indices, "source": N names, "prompts": the bank}."""
    device = next(connector.parameters()).device
    bank = prompt_bank(body, prompts, seed) if prompts else []
    parts, sources = [], []
    if bank:
        parts.append(vlm.embed_text(bank))
        sources += [f"prompt:{p}" for p in bank]
    if episodes and windows:
        emb = window_embeddings(vlm, episodes, windows, seed)
        parts.append(emb)
        sources += ["window"] * len(emb)
    if random:
        gen = torch.Generator().manual_seed(seed)
        parts.append(F.normalize(torch.randn(random, vlm.embed_dim, generator=gen), dim=-1))
        sources += ["random"] * random
    if not parts:
        raise ValueError("a target pool needs at least one source (prompts, windows or random)")
    emb = torch.cat(parts).float().to(device)
    stoch = torch.cat([connector.rollout(aligner(emb[i: i + 256]), steps).argmax(-1)
                       for i in range(0, len(emb), 256)])
    return {"stoch": stoch.to(torch.uint8).cpu(), "source": sources, "prompts": bank}


def read_episode_frames(paths: list[Path]) -> list[np.ndarray]:
    from genrl_core.data.store import read_arrays

    return [read_arrays(p, ("image",))["image"] for p in paths]
