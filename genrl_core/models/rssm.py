"""RSSM world model as in GenRL (DreamerV3-style, docs/GENRL.md section 2).

- deterministic state h: LayerNorm GRU over [s_{t-1}, a_t]
- stochastic state s: `stoch` categoricals of `classes` classes, straight-through samples,
  1% unimix in every categorical
- posterior q(s_t | x_t) from the image embedding only (not from h), prior p(s_t | h_t)
- decoder p(x_t | s_t) from s only, so connector states decode without h

Because the posterior does not depend on h, `observe` computes every posterior of a
sequence in one batched pass; only the GRU recurrence loops over time, and the prior
logits of all steps are again one batched op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genrl_core.errors import ConfigError
from genrl_core.models.nets import (
    ConvDecoder,
    ConvEncoder,
    LayerNormGRUCell,
    categorical_kl,
    categorical_probs,
    mlp,
    mode_onehot,
    sample_onehot,
)

# a policy in imagination: (deter, one-hot stoch) -> action
Policy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class RSSMConfig:
    """Sizes and loss weights of the world model."""

    deter: int = 256  # GRU units
    stoch: int = 32  # categorical variables
    classes: int = 16  # classes per variable
    hidden: int = 256  # MLP width
    depth: int = 16  # conv channels of the first layer (x1, x2, x4, x8)
    action_dim: int = 6  # set from the dataset
    image_size: int = 64  # frame size in pixels (the conv stack expects 64)
    unimix: float = 0.01  # uniform mix in every categorical, as DreamerV3
    free_nats: float = 1.0  # KL below this is not penalised
    kl_scale: float = 0.6  # overall KL weight (GenRL)
    kl_balance: float = 0.85  # share of the dynamics term KL(sg(post) || prior)

    def __post_init__(self) -> None:
        for name in ("deter", "stoch", "classes", "hidden", "depth", "action_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"RSSMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size != 64:
            raise ConfigError(f"RSSMConfig.image_size must be 64 (the conv encoder's size), got {self.image_size}")
        if not 0.0 <= self.unimix < 1.0 or not 0.0 <= self.kl_balance <= 1.0:
            raise ConfigError("RSSMConfig: unimix must be in [0, 1) and kl_balance in [0, 1]")

    @property
    def stoch_dim(self) -> int:
        return self.stoch * self.classes


class RSSM(nn.Module):
    def __init__(self, cfg: RSSMConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg.depth, cfg.image_size)
        self.post_head = mlp(self.encoder.out_dim, cfg.hidden, cfg.stoch_dim)
        self.img_in = mlp(cfg.stoch_dim + cfg.action_dim, cfg.hidden)
        self.gru = LayerNormGRUCell(cfg.hidden, cfg.deter)
        self.prior_head = mlp(cfg.deter, cfg.hidden, cfg.stoch_dim)
        self.decoder = ConvDecoder(cfg.stoch_dim, cfg.depth)

    def adopt(self, state: dict[str, torch.Tensor]) -> None:
        """Take the weights of a model of the same sizes but maybe another action size (another
        body): all of them, except that the action columns of the dynamics' input layer, which mean
        other joints there, keep this model's fresh ones."""
        key = "img_in.0.weight"  # (hidden, stoch_dim + action_dim): the state's columns come first
        if key in state and state[key].shape != self.img_in[0].weight.shape:
            mixed = self.img_in[0].weight.detach().clone()
            mixed[:, :self.cfg.stoch_dim] = state[key][:, :self.cfg.stoch_dim]
            state = {**state, key: mixed}
        self.load_state_dict(state)

    # ------------------------------------------------------------- distributions
    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return categorical_probs(logits.reshape(*logits.shape[:-1], self.cfg.stoch, self.cfg.classes),
                                 self.cfg.unimix)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-0.5, 0.5]."""
        return images.movedim(-1, -3).float() / 255.0 - 0.5

    @staticmethod
    def postprocess(images: torch.Tensor) -> torch.Tensor:
        """Decoder output (..., 3, H, W) -> uint8 (..., H, W, 3)."""
        return ((images.float() + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)

    def posterior_probs(self, images: torch.Tensor) -> torch.Tensor:
        """q(s | x) for uint8 frames (..., H, W, 3) -> (..., stoch, classes)."""
        return self._probs(self.post_head(self.encoder(self.preprocess(images))))

    def prior_probs(self, deter: torch.Tensor) -> torch.Tensor:
        return self._probs(self.prior_head(deter))

    def initial_deter(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.cfg.deter, device=device)

    def step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """h_t = f(h_{t-1}, s_{t-1}, a_t). stoch is (B, stoch, classes)."""
        return self.gru(self.img_in(torch.cat([stoch.flatten(-2), action], -1)), deter)

    def decode(self, stoch: torch.Tensor) -> torch.Tensor:
        """p(x | s) mean image (..., 3, 64, 64) in [-0.5, 0.5] from one-hot stoch (..., stoch, classes)."""
        return self.decoder(stoch.flatten(-2))

    def latent_features(self, stoch: torch.Tensor) -> torch.Tensor:
        """One-hot stoch (..., stoch, classes) through the decoder's first linear layer without its bias
        (..., 8 * depth * 16): the space where trajectory matching compares states (GenRL's reward),
        in which states that decode alike lie close."""
        return stoch.flatten(-2) @ self.decoder.proj.weight.t()

    # ---------------------------------------------------------------- sequences
    def observe(self, images: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor,
                deter: torch.Tensor | None = None, stoch: torch.Tensor | None = None,
                sample: bool = True) -> dict[str, torch.Tensor]:
        """Filter a batch of sequences.

        images (B, T, H, W, 3) uint8, actions (B, T, A) with actions[:, t] leading to frame t,
        is_first (B, T) bool. Returns posterior/prior probs (B, T, stoch, classes), the
        posterior samples `stoch` and the deterministic states `deter` (B, T, deter).
        """
        batch, steps = images.shape[:2]
        post = self.posterior_probs(images)
        post_stoch = sample_onehot(post) if sample else mode_onehot(post)
        deter = self.initial_deter(batch, images.device) if deter is None else deter
        prev = torch.zeros_like(post_stoch[:, 0]) if stoch is None else stoch
        keep = (~is_first).to(post.dtype)
        deters = []
        for t in range(steps):  # the recurrence is the only loop over time
            k = keep[:, t, None]
            deter = self.step(deter * k, prev * k[..., None], actions[:, t] * k)
            deters.append(deter)
            prev = post_stoch[:, t]
        deter_seq = torch.stack(deters, 1)
        return {"post": post, "prior": self.prior_probs(deter_seq), "stoch": post_stoch, "deter": deter_seq}

    def obs_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor,
                 image: torch.Tensor, sample: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One filter step: h_t from (h_{t-1}, s_{t-1}, a_t), then s_t from the frame x_t (B, H, W, 3).
        Zero deter, stoch and action give the first step of an episode."""
        deter = self.step(deter, stoch, action)
        probs = self.posterior_probs(image)
        return deter, sample_onehot(probs) if sample else mode_onehot(probs)

    def imagine(self, deter: torch.Tensor, stoch: torch.Tensor, policy: Policy | torch.Tensor,
                steps: int | None = None, sample: bool = True) -> dict[str, torch.Tensor]:
        """Roll the prior forward from (deter, stoch) (B, ...) for `steps` steps, each action from
        `policy(deter, stoch)` or from a tensor of actions (B, steps, A).

        Returns states 0..steps with the start first: `deter` (B, steps + 1, D), one-hot `stoch`
        and prior `probs` (B, steps + 1, stoch, classes; the start's probs are its own one-hot),
        and `action` (B, steps, A). Sampled states are straight-through, so gradients reach the
        policy through the dynamics."""
        if isinstance(policy, torch.Tensor):
            if steps is not None and steps != policy.shape[1]:
                raise ValueError(f"imagine: {policy.shape[1]} actions given for {steps} steps")
            actions, steps = policy, policy.shape[1]
        elif steps is None:
            raise ValueError("imagine with a policy needs a number of steps")
        deters, stochs, probs, taken = [deter], [stoch], [stoch], []
        for t in range(steps):
            action = actions[:, t] if isinstance(policy, torch.Tensor) else policy(deter, stoch)
            deter = self.step(deter, stoch, action)
            prob = self.prior_probs(deter)
            stoch = sample_onehot(prob) if sample else mode_onehot(prob)
            deters.append(deter)
            stochs.append(stoch)
            probs.append(prob)
            taken.append(action)
        return {"deter": torch.stack(deters, 1), "stoch": torch.stack(stochs, 1), "probs": torch.stack(probs, 1),
                "action": torch.stack(taken, 1)}

    # -------------------------------------------------------------------- loss
    def forward(self, images: torch.Tensor, actions: torch.Tensor,
                is_first: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss (so DDP and torch.compile wrap the whole update)."""
        return self.loss(images, actions, is_first)

    def loss(self, images: torch.Tensor, actions: torch.Tensor,
             is_first: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """ELBO loss of a batch: image MSE (summed over pixels) + balanced, free-nats KL."""
        loss, metrics, _ = self.loss_and_states(images, actions, is_first)
        return loss, metrics

    def loss_and_states(self, images: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """`loss` plus the filtered sequences of `observe` it was computed on (an online learner
        starts imagination from those posteriors, as DreamerV3 does)."""
        cfg = self.cfg
        out = self.observe(images, actions, is_first)
        recon = self.decode(out["stoch"])
        target = self.preprocess(images)
        image_loss = (recon.float() - target).pow(2).sum((-3, -2, -1)).mean()
        dyn = categorical_kl(out["post"].detach(), out["prior"])
        rep = categorical_kl(out["post"], out["prior"].detach())
        kl_loss = cfg.kl_balance * dyn.clamp(min=cfg.free_nats).mean() + (1 - cfg.kl_balance) * rep.clamp(
            min=cfg.free_nats).mean()
        loss = image_loss + cfg.kl_scale * kl_loss
        metrics = {"loss": loss.detach(), "image_loss": image_loss.detach(), "kl": dyn.mean().detach(),
                   "post_entropy": -(out["post"] * out["post"].log()).sum((-2, -1)).mean().detach()}
        return loss, metrics, out


def config_from_dict(raw: dict[str, Any]) -> RSSMConfig:
    fields = {f.name for f in dataclasses.fields(RSSMConfig)}
    unknown = set(raw) - fields
    if unknown:
        raise ConfigError(f"unknown world-model config keys {sorted(unknown)}; valid: {sorted(fields)}")
    return RSSMConfig(**raw)
