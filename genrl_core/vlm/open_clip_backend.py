"""Any OpenCLIP architecture as the VLM, for GPU boxes: local weights, or a hub model on request.

A video embedding is the normalised mean of its frames' embeddings; frames are resized
to the model's input size and normalised with the model's own preprocessing settings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

from genrl_core.vlm.base import VLM, VLMError


class OpenClipVLM(VLM):
    def __init__(self, arch: str, pretrained: str | None = None, checkpoint: str | Path | None = None,
                 device: str | torch.device = "cpu", allow_download: bool = False, random_init: bool = False):
        super().__init__(device)
        if arch not in open_clip.list_models():
            raise VLMError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models() "
                           f"(e.g. ViT-B-32, ViT-L-14)")
        if checkpoint is not None:
            if not Path(checkpoint).is_file():
                raise VLMError(f"open_clip checkpoint {checkpoint} does not exist")
            weights = str(checkpoint)
        elif pretrained is not None:
            if not allow_download:
                raise VLMError(f"open_clip {arch} with pretrained tag {pretrained!r} would download weights from a "
                               f"hub; pass allow_download=True (--vlm-download) on a machine with internet, or "
                               f"a local file with checkpoint=PATH (--vlm-checkpoint)")
            weights = pretrained
        elif random_init:
            weights = None
        else:
            raise VLMError(f"no weights for open_clip {arch}: pass checkpoint=PATH (--vlm-checkpoint, a local "
                           f".pt/.bin/.safetensors file) or pretrained=TAG with allow_download=True "
                           f"(see open_clip.list_pretrained_tags_by_model({arch!r}))")
        try:
            self.model = open_clip.create_model(arch, pretrained=weights, device=self.device).eval()
        except Exception as exc:  # open_clip raises many types for bad files or failed downloads
            raise VLMError(f"could not load open_clip {arch} weights from {weights}: {exc}") from None
        self.tokenizer = open_clip.get_tokenizer(arch)
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = cfg.get("size", 224)
        self.size = tuple(size) if isinstance(size, list | tuple) else (size, size)
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=self.device).view(3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=self.device).view(3, 1, 1)
        self.embed_dim = int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") \
            else int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1])
        # the embeddings cache is keyed by name: identify a local file by path, size and mtime, not its name only
        if checkpoint is not None:
            stat = Path(checkpoint).resolve().stat()
            key = hashlib.sha256(f"{Path(checkpoint).resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            tag = f"{Path(checkpoint).stem}-{key.hexdigest()[:10]}"
        else:
            tag = weights or "random"
        self.name = f"open_clip:{arch}:{tag}"

    def _text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _video(self, frames: torch.Tensor) -> torch.Tensor:
        n, t = frames.shape[:2]
        x = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=self.size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        feats = self.model.encode_image((x - self.mean) / self.std)
        return F.normalize(feats.float(), dim=-1).reshape(n, t, -1).mean(1)
