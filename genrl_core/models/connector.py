"""Connector: p(s_t | s_{t-1}, e), a VLM embedding unrolled into world-model latent states.

Same structure as the RSSM prior (docs/GENRL.md section 4): a LayerNorm GRU whose input is the
previous stochastic state and the embedding (scaled by sqrt(D), fed at every step), a
prior head on the deterministic state, and an initial deterministic state that is an MLP
of e. Trained with teacher forcing on detached world-model posteriors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genrl_core.models.nets import LayerNormGRUCell, categorical_kl, categorical_probs, mlp, mode_onehot, sample_onehot
from genrl_core.models.rssm import RSSMConfig


class Connector(nn.Module):
    def __init__(self, wm: RSSMConfig, embed_dim: int):
        super().__init__()
        self.wm, self.embed_dim = wm, embed_dim
        self.scale = math.sqrt(embed_dim)  # unit-norm embeddings -> unit-scale entries, as GenRL
        self.h0 = mlp(embed_dim, wm.hidden, wm.deter)
        self.inp = mlp(wm.stoch_dim + embed_dim, wm.hidden)
        self.gru = LayerNormGRUCell(wm.hidden, wm.deter)
        self.head = mlp(wm.deter, wm.hidden, wm.stoch_dim)

    def _probs(self, deter: torch.Tensor) -> torch.Tensor:
        logits = self.head(deter)
        return categorical_probs(logits.reshape(*logits.shape[:-1], self.wm.stoch, self.wm.classes), self.wm.unimix)

    def _step(self, deter: torch.Tensor, prev: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.gru(self.inp(torch.cat([prev.flatten(-2), emb * self.scale], -1)), deter)

    def initial(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h0 = MLP(e) and an all-zero previous stochastic state."""
        deter = torch.tanh(self.h0(emb * self.scale))
        return deter, torch.zeros(emb.shape[0], self.wm.stoch, self.wm.classes, device=emb.device)

    def teacher_forced(self, emb: torch.Tensor, post_stoch: torch.Tensor) -> torch.Tensor:
        """Connector probs (B, T, stoch, classes) given the true previous states (B, T, stoch, classes)."""
        deter, prev = self.initial(emb)
        probs = []
        for t in range(post_stoch.shape[1]):
            deter = self._step(deter, prev, emb)
            probs.append(self._probs(deter))
            prev = post_stoch[:, t]
        return torch.stack(probs, 1)

    def loss(self, emb: torch.Tensor, post_probs: torch.Tensor, post_stoch: torch.Tensor) -> torch.Tensor:
        """KL(connector || sg(posterior)) summed over latents, mean over steps; no free nats."""
        conn = self.teacher_forced(emb, post_stoch.detach())
        return categorical_kl(conn, post_probs.detach()).mean()

    @torch.no_grad()
    def rollout(self, emb: torch.Tensor, steps: int, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Target latents (B, steps, stoch, classes): a rollout of steps + 1, the first dropped.
        `sample`: each state drawn from the connector's distribution (with `generator`, repeatably;
        a longer rollout with the same seed extends a shorter one), else its mode."""
        deter, prev = self.initial(emb)
        out = []
        for _ in range(steps + 1):
            deter = self._step(deter, prev, emb)
            probs = self._probs(deter)
            prev = sample_onehot(probs, straight_through=False, generator=generator) if sample else mode_onehot(probs)
            out.append(prev)
        return torch.stack(out[1:], 1)
