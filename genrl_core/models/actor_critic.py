"""Actor and critic for behaviour learning in imagination (DreamerV3 style, docs/GENRL.md section 6).

- Actor: Gaussian over actions in [-1, 1] (tanh mean, bounded std), reparameterised so its
  gradients flow back through the world model's dynamics.
- Critic: 255-bin two-hot distribution over symlog returns, zero-initialised output, with a
  slow copy used as a regulariser.
- ReturnNorm: returns are divided by max(1, P95 - P5), the percentiles tracked with an EMA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genrl_core.models.nets import mlp


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def feature(deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
    """The actor's and critic's input: [h, flat one-hot s]."""
    return torch.cat([deter, stoch.flatten(-2)], -1)


class Actor(nn.Module):
    def __init__(self, feat_dim: int, action_dim: int, hidden: int = 256, layers: int = 2,
                 min_std: float = 0.1, max_std: float = 1.0):
        super().__init__()
        self.net = mlp(feat_dim, hidden, 2 * action_dim, layers=layers)
        self.min_std, self.max_std = min_std, max_std
        self.hidden, self.layers = hidden, layers

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.net(feat).chunk(2, -1)
        return torch.tanh(mean), (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std

    def sample(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action clamped to [-1, 1] and its entropy. No gradient passes where the
        sample was clamped: the world model never saw actions outside the box, and a straight-through
        gradient there pushed the actor toward bang-bang control."""
        mean, std = self(feat)
        action = (mean + std * torch.randn_like(mean)).clamp(-1, 1)
        entropy = (0.5 + 0.5 * torch.log(2 * torch.pi * std**2)).sum(-1)  # of the unclamped Gaussian
        return action, entropy

    def log_prob(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density of `action` (..., A) under the unclamped Gaussian at `feat`, summed over A."""
        mean, std = self(feat)
        return (-0.5 * ((action - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    @torch.no_grad()
    def act(self, feat: torch.Tensor, explore: bool = False) -> torch.Tensor:
        mean, std = self(feat)
        return (mean + std * torch.randn_like(mean)).clamp(-1, 1) if explore else mean


class Critic(nn.Module):
    """Value distribution over 255 bins evenly spaced in symlog space ([-20, 20])."""

    def __init__(self, feat_dim: int, hidden: int = 256, layers: int = 2, bins: int = 255):
        super().__init__()
        self.net = mlp(feat_dim, hidden, bins, layers=layers)
        last = self.net[-1]
        nn.init.zeros_(last.weight)  # start predicting 0 everywhere, as DreamerV3
        nn.init.zeros_(last.bias)
        self.register_buffer("bins", torch.linspace(-20.0, 20.0, bins))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((logits.softmax(-1) * self.bins).sum(-1))

    def two_hot(self, target: torch.Tensor) -> torch.Tensor:
        """Two-hot encoding (..., bins) of symlog(target) between its two nearest bins."""
        x = symlog(target).clamp(self.bins[0], self.bins[-1])
        hi = torch.searchsorted(self.bins, x.contiguous(), right=False).clamp(1, len(self.bins) - 1)
        lo = hi - 1
        w_hi = (x - self.bins[lo]) / (self.bins[hi] - self.bins[lo])
        out = torch.zeros(*x.shape, len(self.bins), device=x.device)
        out.scatter_(-1, lo[..., None], (1 - w_hi)[..., None])
        out.scatter_add_(-1, hi[..., None], w_hi[..., None])
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two-hot target, per element."""
        return -(self.two_hot(target.detach()) * F.log_softmax(logits, -1)).sum(-1)


def percentiles(x: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """torch.quantile's linear interpolation from one sort, with indices known from the shape:
    no host sync, so it can live inside a CUDA graph (torch.quantile checks q on the host)."""
    flat = x.flatten().float().sort().values
    out = []
    for q in qs:
        pos = q * (len(flat) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(flat) - 1)
        out.append(torch.lerp(flat[lo], flat[hi], pos - lo))
    return torch.stack(out)


class ReturnNorm(nn.Module):
    """EMA of the 5th and 95th return percentiles; scale = max(1, P95 - P5)."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def updated(self, returns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (low, high) after seeing `returns`, without storing them: a pure function of tensors,
        so a compiled update can compute it and `store` writes it back outside the graph."""
        q = percentiles(returns.detach(), (0.05, 0.95))
        low = torch.where(self.initialised, torch.lerp(self.low, q[0], 1 - self.decay), q[0])
        high = torch.where(self.initialised, torch.lerp(self.high, q[1], 1 - self.decay), q[1])
        return low, high

    @torch.no_grad()
    def store(self, low: torch.Tensor, high: torch.Tensor) -> None:
        self.low.copy_(low)
        self.high.copy_(high)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        self.store(*self.updated(returns))

    @staticmethod
    def scale_of(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return torch.clamp(high - low, min=1.0)

    def scale(self) -> torch.Tensor:
        return self.scale_of(self.low, self.high)
