"""ContextWM's frame codec (``codec=contextwm``): a decoder that cross-attends to a context frame.

Paper: Wu et al., "Pre-training Contextualized World Models with In-the-wild Videos for Reinforcement
Learning", https://arxiv.org/abs/2305.18499. Static context (background, appearance) is read by a separate
*context encoder* from one observed frame per clip; the image decoder cross-attends to its feature maps at
the finest resolutions, so the RSSM latent only has to carry what changes over time.

- ``encode``: DreamerV3's conv encoder (the dynamics encoder), exactly as :class:`CNNCodec`.
- ``decode(features, frames)``: one context frame per batch row (uniformly random in training, the last
  of ``frames`` in eval mode) is encoded once and shared by all ``T`` steps of that row. The decoder
  mirrors :class:`~wmlab.nn.blocks.ConvDecoder`; after ``context.attn_stages`` of its maps, counted from
  the finest below the output but leaving out the ``context.attn_skip`` finest (by default 16×16 and 8×8
  for 64×64 frames), a residual cross-attention block lets the map's tokens (queries) attend to the
  context encoder's tokens at the same resolution. When the image has too few upsampling stages for that
  (small frames), the coarsest maps — down to the one the linear layer makes — attend instead.
- Training-only augmentations of the context: token dropout (a fraction of the context tokens is masked
  out of each attention, per row, keeping at least one) and random erasing (a random rectangle of the
  context frame is set to 0 in the centred pixel space, i.e. mid-grey, before encoding).

Shape legend: ``B`` batch, ``T`` time, ``N`` = B·T, ``H,W,C`` image, ``F`` model features, ``L`` context
tokens of a resolution (h·w), ``D`` attention width, ``h,w`` a feature map's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.models.codecs import CODECS, CNNCodec, FrameCodec
from wmlab.models.config import WorldModelConfig
from wmlab.nn.blocks import (
    LN_EPS,
    ConvDecoder,
    ConvEncoder,
    LayerNorm,
    compute_dtype,
    down_stage,
    conv_stages,
    init_hidden_,
    stage_channels,
)

# Random erasing: the erased rectangle covers this fraction of the frame, with this aspect-ratio range
# (log-uniform), as in the usual RandomErasing augmentation.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


def _centred(image: Tensor) -> Tensor:
    """uint8 ``[..., H,W,C]`` → pixels in [-0.5, 0.5] in the compute dtype (the same as CNNCodec.encode)."""
    return image.to(compute_dtype(image)).sub_(127.5).mul_(1.0 / 255.0)


class ContextEncoder(nn.Module):
    """Stride-2 conv stages like :class:`ConvEncoder` that return every stage's map ``[B,C_i,h_i,w_i]``."""

    def __init__(self, image: tuple[int, int, int], sizes: list[tuple[int, int]], widths: list[int],
                 kernel: int, norm: bool, act: str) -> None:
        super().__init__()
        height, width, channels = image
        stages: list[nn.Module] = []
        h, w, c_in = height, width, channels
        for (h_out, w_out), c_out in zip(sizes, widths):
            stages.append(nn.Sequential(*down_stage(c_in, c_out, h, w, kernel, norm, act)))
            h, w, c_in = h_out, w_out, c_out
        self.stages = nn.ModuleList(stages)
        init_hidden_(self)

    def forward(self, x: Tensor) -> list[Tensor]:  # [B,H,W,C] -> [[B,C_i,h_i,w_i] per stage, finest first]
        x = x.permute(0, 3, 1, 2)  # channels-last strides
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


class CrossAttention(nn.Module):
    """Residual cross-attention of a decoder map's tokens (LayerNorm'd queries) to context tokens."""

    def __init__(self, channels: int, context_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = -(-channels // heads)
        width = heads * self.head_dim
        self.norm_q = LayerNorm(channels, eps=LN_EPS)
        self.norm_kv = LayerNorm(context_channels, eps=LN_EPS)
        self.q = nn.Linear(channels, width, bias=False)
        self.kv = nn.Linear(context_channels, 2 * width, bias=False)
        self.out = nn.Linear(width, channels)
        init_hidden_(self)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Context map ``[B,C_c,h,w]`` → keys and values ``[B,heads,L,d]``."""
        b = context.shape[0]
        tokens = context.permute(0, 2, 3, 1).reshape(b, -1, context.shape[1])  # [B,L,C_c]
        kv = self.kv(self.norm_kv(tokens)).view(b, tokens.shape[1], 2, self.heads, self.head_dim)
        kv = kv.permute(2, 0, 3, 1, 4)  # [2,B,heads,L,d]
        return kv[0], kv[1]

    def forward(self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
        """``x [N,C,h,w]`` (N = B·T, rows major), keys/values ``[B,heads,L,d]``, ``mask`` bool ``[B,1,1,L]``
        (True attends) or None → ``x`` plus the attended context, ``[N,C,h,w]``."""
        n, c, h, w = x.shape
        b = keys.shape[0]
        tokens = x.permute(0, 2, 3, 1)  # [N,h,w,C]
        q = self.q(self.norm_q(tokens))  # [N,h,w,D]
        # All T·h·w queries of a row share that row's keys: one attention per row, no broadcast copies.
        q = q.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B,heads,T·h·w,d]
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # [B,heads,T·h·w,d]
        o = o.transpose(1, 2).reshape(n, h, w, -1)  # [N,h,w,D]
        out = self.out(o)  # [N,h,w,C]
        return x + out.permute(0, 3, 1, 2).to(x.dtype)


class ContextDecoder(ConvDecoder):
    """:class:`ConvDecoder` with a :class:`CrossAttention` after the maps of the encoder's ``sizes``
    ``skip, skip+1, …`` (0 is the finest map below the output), one per entry of ``context_widths``, each
    reading the context map of the same resolution."""

    def __init__(self, in_dim: int, image: tuple[int, int, int], depth: int, mults: tuple[int, ...],
                 kernel: int, min_res: int, norm: bool, act: str, context_widths: list[int], heads: int,
                 skip: int = 0) -> None:
        super().__init__(in_dim, image, depth, mults, kernel, min_res, norm, act)
        self.skip = skip
        # attention j reads context map j (resolution sizes[skip+j], decoder channels widths[skip+j])
        self.attn = nn.ModuleList(CrossAttention(self.widths[skip + j], cw, heads)
                                  for j, cw in enumerate(context_widths))

    def forward(  # type: ignore[override]
        self, x: Tensor, context: list[tuple[Tensor, Tensor, Tensor | None]]
    ) -> Tensor:
        """``x [N,F]``, per attended resolution (finest first) ``(keys, values, mask)`` → ``[N,H,W,C]``."""

        def attend(x: Tensor, stage: int) -> Tensor:
            j = stage - self.skip
            if 0 <= j < len(self.attn):
                keys, values, mask = context[j]
                x = self.attn[j](x, keys, values, mask)
            return x

        return super().forward(x, attend)


@CODECS.register("contextwm")
class ContextCodec(FrameCodec):
    """ContextWM: CNN dynamics encoder, context encoder, and a decoder cross-attending to the context."""

    def __init__(self, cfg: WorldModelConfig, image: tuple[int, int, int], feat_dim: int) -> None:
        super().__init__(cfg, image, feat_dim)
        c, x = cfg.cnn, cfg.context
        if x.attn_stages < 1:
            raise ValueError(f"context.attn_stages={x.attn_stages}: codec=contextwm needs at least one "
                             f"cross-attention stage (use codec=cnn for a decoder without context)")
        sizes = conv_stages(image[0], image[1], c.min_res)
        if x.attn_skip < 0:
            raise ValueError(f"context.attn_skip={x.attn_skip} must be >= 0")
        if x.heads < 1:
            raise ValueError(f"context.heads={x.heads} must be at least 1")
        if not 0.0 <= x.token_dropout < 1.0:
            raise ValueError(f"context.token_dropout={x.token_dropout} must be in [0, 1)")
        if not 0.0 <= x.erasing <= 1.0:
            raise ValueError(f"context.erasing={x.erasing} is a probability and must be in [0, 1]")
        self.token_dropout = float(x.token_dropout)
        self.erasing = float(x.erasing)
        self.encoder = ConvEncoder(image, c.depth, c.mults, c.kernel, c.min_res, cfg.norm, cfg.act)
        self.embed_dim = self.encoder.out_dim
        skip = min(x.attn_skip, len(sizes) - 1)  # a small frame keeps at least its coarsest map attending
        stages = min(skip + x.attn_stages, len(sizes))  # attended resolutions: sizes[skip:stages]
        context_widths = stage_channels(x.depth, (), stages)
        self.context_encoder = ContextEncoder(image, sizes[:stages], context_widths, c.kernel, cfg.norm, cfg.act)
        self.decoder = ContextDecoder(feat_dim, image, c.depth, c.mults, c.kernel, c.min_res, cfg.norm, cfg.act,
                                      context_widths[skip:], x.heads, skip)

    # The dynamics encoder: the same conv encoder and pixel normalisation as CNNCodec.
    encode = CNNCodec.encode

    def context_frame(self, frames: Tensor) -> Tensor:
        """One context frame per row of uint8 ``frames [B,T',H,W,C]`` → ``[B,H,W,C]``: uniformly random
        in training, the last one in eval mode."""
        if self.training and frames.shape[1] > 1:
            index = torch.randint(frames.shape[1], (frames.shape[0],), device=frames.device)
            return frames[torch.arange(frames.shape[0], device=frames.device), index]
        return frames[:, -1]

    def _erase(self, x: Tensor) -> Tensor:
        """Random erasing in place on centred pixels ``[B,H,W,C]``: with probability ``erasing`` per row,
        a random rectangle is set to 0."""
        b, height, width = x.shape[:3]
        dev = x.device
        apply = torch.rand(b, device=dev) < self.erasing
        area = torch.empty(b, device=dev).uniform_(*ERASE_AREA) * (height * width)
        ratio = torch.empty(b, device=dev).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])).exp()
        eh = (area * ratio).sqrt().round().clamp(1, height)
        ew = (area / ratio).sqrt().round().clamp(1, width)
        top = (torch.rand(b, device=dev) * (height - eh + 1)).floor()
        left = (torch.rand(b, device=dev) * (width - ew + 1)).floor()
        ys = torch.arange(height, device=dev).view(1, height, 1)
        xs = torch.arange(width, device=dev).view(1, 1, width)
        top, left, eh, ew = (v.view(b, 1, 1) for v in (top, left, eh, ew))
        mask = (ys >= top) & (ys < top + eh) & (xs >= left) & (xs < left + ew) & apply.view(b, 1, 1)
        return x.masked_fill_(mask.unsqueeze(-1), 0.0)

    def _token_mask(self, b: int, tokens: int, device: torch.device) -> Tensor | None:
        """Bool ``[B,1,1,L]`` keeping a random ``1 - token_dropout`` of the tokens per row (at least one)."""
        drop = min(int(self.token_dropout * tokens), tokens - 1)
        if not self.training or drop <= 0:
            return None
        rank = torch.rand(b, tokens, device=device).argsort(-1).argsort(-1)  # a random permutation per row
        return (rank >= drop).view(b, 1, 1, tokens)

    def encode_context(self, frames: Tensor) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """uint8 ``frames [B,T',H,W,C]`` → per attended resolution (finest first) ``(keys, values, mask)``,
        keys/values ``[B,heads,L,d]``."""
        x = _centred(self.context_frame(frames))  # [B,H,W,C], a fresh tensor
        if self.training and self.erasing > 0.0:
            x = self._erase(x)
        out = []
        for attn, feat in zip(self.decoder.attn, self.context_encoder(x)[self.decoder.skip:]):
            keys, values = attn.keys_values(feat)
            out.append((keys, values, self._token_mask(x.shape[0], keys.shape[2], x.device)))
        return out

    def decode(self, features: Tensor, frames: Tensor | None = None) -> Tensor:
        if frames is None:
            raise ValueError("codec=contextwm needs the observed frames to decode: call decode(features, frames) "
                             "with uint8 frames [B,T',H,W,C] (the context frame is taken from them)")
        if frames.dim() != 5 or tuple(frames.shape[2:]) != tuple(self.image):
            raise ValueError(f"codec=contextwm got context frames {tuple(frames.shape)}; it needs uint8 "
                             f"[B,T',{','.join(map(str, self.image))}]")
        lead = features.shape[:-1]
        if features.dim() < 2 or lead[0] != frames.shape[0]:
            raise ValueError(f"codec=contextwm: features {tuple(features.shape)} and context frames "
                             f"{tuple(frames.shape)} must share the batch size B (features [B,T,F])")
        context = self.encode_context(frames)
        x = self.decoder(features.reshape(-1, features.shape[-1]), context)  # [B·T,H,W,C], rows major
        return x.reshape(*lead, *x.shape[1:])
