"""Plug point 2 of the RSSM world model: how frames are encoded and decoded.

A :class:`FrameCodec` maps uint8 frames ``[B,T,H,W,C]`` to embeddings ``[B,T,E]`` for the posterior, and
model features ``[B,T,F]`` back to an image mean ``[B,T,H,W,C]`` on the [0,1] pixel scale, with its
reconstruction loss. Variants register by name and are chosen with ``codec=<name>``; a codec that
conditions on observed context frames (ContextWM) receives them in ``decode(features, frames)``.

Shape legend: ``B`` batch, ``T`` time, ``H,W,C`` image, ``E`` embedding, ``F`` model features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wmlab.models.config import WorldModelConfig
from wmlab.models.registry import Registry
from wmlab.nn.blocks import ConvDecoder, ConvEncoder, compute_dtype
from wmlab.nn.dists import mse_sum


class FrameCodec(nn.Module):
    """Base class: ``encode``, ``decode``, ``loss``; ``embed_dim`` is the embedding width ``E``."""

    embed_dim: int

    def __init__(self, cfg: WorldModelConfig, image: tuple[int, int, int], feat_dim: int) -> None:
        super().__init__()
        self.image = image
        self.image_loss = cfg.image_loss

    def encode(self, image: Tensor) -> Tensor:
        """uint8 ``[B,T,H,W,C]`` → ``[B,T,E]``."""
        raise NotImplementedError

    def decode(self, features: Tensor, frames: Tensor | None = None) -> Tensor:
        """``[B,T,F]`` (+ observed uint8 ``frames`` for context codecs) → image mean ``[B,T,H,W,C]``."""
        raise NotImplementedError

    def aux_losses(self, batch: dict[str, Tensor]) -> dict[str, tuple[float, Tensor]]:
        """Extra loss terms of this codec, ``name -> (scale, loss [B,T] or scalar)``; called by the world
        model's loss after ``encode``/``decode`` ran on ``batch``. None by default."""
        return {}

    def loss(self, mean: Tensor, image: Tensor) -> Tensor:
        """Reconstruction loss ``[B,T]`` of a decoded mean against uint8 frames, in float32."""
        err = mse_sum(mean, image, 3, target_scale=1.0 / 255.0)
        if self.image_loss == "mse_mean":
            err = err / float(image.shape[-3] * image.shape[-2] * image.shape[-1])
        return err

    @staticmethod
    def to_uint8(mean: Tensor) -> Tensor:
        """Decoded mean → displayable uint8 frames."""
        return (mean.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


CODECS: Registry[FrameCodec] = Registry("frame codec", "codec")


@CODECS.register("cnn")
class CNNCodec(FrameCodec):
    """DreamerV3's conv encoder (stride 2 down to ``cnn.min_res``) and mirrored transposed-conv decoder."""

    def __init__(self, cfg: WorldModelConfig, image: tuple[int, int, int], feat_dim: int) -> None:
        super().__init__(cfg, image, feat_dim)
        c = cfg.cnn
        self.encoder = ConvEncoder(image, c.depth, c.mults, c.kernel, c.min_res, cfg.norm, cfg.act)
        self.decoder = ConvDecoder(feat_dim, image, c.depth, c.mults, c.kernel, c.min_res, cfg.norm, cfg.act)
        self.embed_dim = self.encoder.out_dim

    def encode(self, image: Tensor) -> Tensor:
        lead = image.shape[:-3]
        # Centred pixels [B·T,H,W,C] made directly in the compute dtype (bf16 under autocast) in place:
        # v - 127.5 is exact in bf16, so only the final scaling rounds.
        x = image.reshape(-1, *image.shape[-3:]).to(compute_dtype(image))
        x = x.sub_(127.5).mul_(1.0 / 255.0)
        return self.encoder(x).reshape(*lead, -1)

    def decode(self, features: Tensor, frames: Tensor | None = None) -> Tensor:
        lead = features.shape[:-1]
        x = self.decoder(features.reshape(-1, features.shape[-1]))  # [B·T,H,W,C]
        return x.reshape(*lead, *x.shape[1:])


def codec_spec(spec: dict[str, Any], cfg: WorldModelConfig) -> tuple[int, int, int]:
    """The (H, W, C) the codec is built for: the data spec's image, checked against ``cfg.image_size``."""
    if "image" not in spec or spec["image"] is None:
        raise ValueError("the data spec has no 'image' entry; the RSSM world model needs image frames")
    h, w, c = (int(v) for v in spec["image"])
    if cfg.image_size and tuple(cfg.image_size) != (h, w):
        raise ValueError(f"image_size={tuple(cfg.image_size)} but the data has {h}x{w} frames; "
                         f"set image_size={h},{w} or resize the data")
    return h, w, c
