"""Best-of-N targets: sample the connector N times and keep the rollout whose decoded video the VLM
finds closest to the prompt.

Why: the connector's mode rollout (the most likely class of every latent, step after step) settles
a gait onto one held pose. On the walker bundle "walk forward" decodes to a stride that barely
moves, and the bundle's own VLM scores that video below nearly every sampled rollout of the same
embedding, whose legs step (docs/EXPERIMENTS.md, "Best-of-N targets"). Sampling keeps the motion;
the VLM, which is what gives a prompt its meaning in the first place, picks the sample that shows
it (as CLIP reranks the samples of a text-to-image model). No reward engineering: the score is the
prompt's own similarity in the VLM's space.

The choice is repeatable (a fixed seed) and prefix-consistent: candidates are scored on their first
`SCORED_STATES` states whatever length is asked, so a longer target extends a shorter one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genrl_core.config import WINDOW
from genrl_core.models.connector import Connector
from genrl_core.models.rssm import RSSM
from genrl_core.vlm.base import VLM

SCORED_STATES = 17  # a default learning target's length (horizon 16 + 1): ten full VLM windows
SAMPLE_SEED = 0  # the same prompt gets the same target every time


@torch.no_grad()
def video_similarity(vlm: VLM, videos: np.ndarray, query: torch.Tensor) -> torch.Tensor:
    """(N,) mean cosine between each video's full 8-frame windows and `query` (D,), for uint8
    videos (N, T >= 8, H, W, 3): how well each shows what the query embedding means."""
    if videos.ndim != 5 or videos.shape[1] < WINDOW:
        raise ValueError(f"videos must be (N, T >= {WINDOW}, H, W, 3), got {videos.shape}")
    query = F.normalize(query.float().cpu(), dim=-1)
    n, t = videos.shape[:2]
    # one batched pass: the videos end to end as one clip, whose window ending at step k >= 7 of a
    # video lies within that video (the windows that straddle two videos are dropped)
    windows = vlm.embed_windows(videos.reshape(n * t, *videos.shape[2:])).reshape(n, t, -1)[:, WINDOW - 1:]
    return (windows @ query).mean(1)


@torch.no_grad()
def best_of_samples(wm: RSSM, connector: Connector, vlm: VLM, emb: torch.Tensor, query: torch.Tensor,
                    steps: int, samples: int, seed: int = SAMPLE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled connector rollout for `emb` (D,) whose decoded video best matches `query` (D,):
    (steps, stoch, classes) one-hot, and the (samples,) scores of all candidates."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    length = max(steps, SCORED_STATES)
    gen = torch.Generator(device=emb.device).manual_seed(seed)
    cands = connector.rollout(emb[None].expand(samples, -1), length, sample=True, generator=gen)
    scored = cands[:, :SCORED_STATES]
    videos = wm.postprocess(wm.decode(scored.flatten(0, 1))).unflatten(0, scored.shape[:2]).cpu().numpy()
    scores = video_similarity(vlm, videos, query)
    return cands[int(scores.argmax())][:steps].clone(), scores
