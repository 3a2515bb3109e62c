"""Aligner: moves a prompt embedding into the region of video embeddings (docs/GENRL.md section 5).

A residual MLP with a bottleneck ("U-Net" of MLPs: D -> D/2 -> D/4 -> D/2 -> D with skip
connections), output L2-normalised. Trained without language: the input is a video
embedding corrupted with noise, normalise(0.5 e_v + 0.5 normalise(n)), the target e_v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genrl_core.models.nets import mlp


class Aligner(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        half, quarter = embed_dim // 2, embed_dim // 4
        self.down1 = mlp(embed_dim, half)
        self.down2 = mlp(half, quarter)
        self.up1 = mlp(quarter, half)
        self.up2 = nn.Linear(half, embed_dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(emb)
        u1 = self.up1(self.down2(d1)) + d1
        return F.normalize(self.up2(u1) + emb, dim=-1)

    @staticmethod
    def corrupt(video_emb: torch.Tensor, noise_mix: float = 0.5) -> torch.Tensor:
        """The language-free training input: a video embedding pushed towards a random direction."""
        noise = F.normalize(torch.randn_like(video_emb), dim=-1)
        return F.normalize((1 - noise_mix) * video_emb + noise_mix * noise, dim=-1)

    def loss(self, video_emb: torch.Tensor) -> torch.Tensor:
        """1 - cosine between the aligned corrupted embedding and its clean source."""
        return (1 - (self(self.corrupt(video_emb)) * video_emb).sum(-1)).mean()
