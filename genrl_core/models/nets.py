"""Small building blocks shared by the models (DreamerV3 conventions: LayerNorm + SiLU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor (works with channels_last)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def mlp(inp: int, hidden: int, out: int | None = None, layers: int = 1) -> nn.Sequential:
    """`layers` x (Linear, LayerNorm, SiLU), then an optional plain Linear to `out`."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(inp if i == 0 else hidden, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
    if out is not None:
        mods.append(nn.Linear(hidden if layers else inp, out))
    return nn.Sequential(*mods)


class ConvEncoder(nn.Module):
    """64x64x3 -> flat features: kernel 4 stride 2 convs, channels depth * (1, 2, 4, 8), down to 4x4."""

    def __init__(self, depth: int, image_size: int = 64):
        super().__init__()
        if image_size != 64:
            raise ValueError(f"the conv encoder expects 64x64 images, got {image_size}")
        chans = [3, depth, 2 * depth, 4 * depth, 8 * depth]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), ChannelNorm(cout), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = 8 * depth * 4 * 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (..., 3, 64, 64) float in [-0.5, 0.5] -> (..., out_dim)."""
        lead = images.shape[:-3]
        x = self.net(images.reshape(-1, *images.shape[-3:]))
        return x.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Flat latent -> 64x64x3 image mean (transposed convs mirroring the encoder)."""

    def __init__(self, inp: int, depth: int):
        super().__init__()
        self.depth = depth
        self.proj = nn.Linear(inp, 8 * depth * 4 * 4)
        chans = [8 * depth, 4 * depth, 2 * depth, depth]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), ChannelNorm(cout), nn.SiLU()]
        layers.append(nn.ConvTranspose2d(depth, 3, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        lead = latent.shape[:-1]
        x = self.proj(latent.reshape(-1, latent.shape[-1])).reshape(-1, 8 * self.depth, 4, 4)
        return self.net(x).reshape(*lead, 3, 64, 64)


class LayerNormGRUCell(nn.Module):
    """DreamerV3's GRU: one linear over [input, h], LayerNorm, update gate biased towards keeping h."""

    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(inp + hidden, 3 * hidden, bias=False)
        self.norm = nn.LayerNorm(3 * hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * h


def categorical_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Softmax over the last dim mixed with `unimix` of uniform, so no class has zero probability."""
    probs = F.softmax(logits.float(), -1)
    return (1 - unimix) * probs + unimix / probs.shape[-1]


def sample_onehot(probs: torch.Tensor, straight_through: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot sample (Gumbel-max); with straight-through gradients to `probs`. `generator` makes
    the draw repeatable (it must be on probs' device)."""
    noise = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    gumbel = -torch.log(-torch.log(noise.clamp_(1e-10, 1.0)))
    idx = (probs.log() + gumbel).argmax(-1)
    onehot = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return onehot + probs - probs.detach() if straight_through else onehot


def mode_onehot(probs: torch.Tensor) -> torch.Tensor:
    return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of (..., stoch, classes) probabilities, summed over stoch variables -> (...)."""
    return (p * (p.log() - q.log())).sum((-2, -1))
