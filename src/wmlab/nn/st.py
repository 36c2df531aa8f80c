"""Spatio-temporal transformer and vector quantiser: the parts Genie's three models are built from.

A video of ``T`` frames of ``N`` tokens each is a tensor ``[B,T,N,D]``. Each :class:`STBlock` attends over
space (the ``N`` tokens of one frame), then over time (one token position across frames, causal, with
rotary positions so a sliding window of frames needs no re-encoding), then applies an MLP. Causal time
attention means frame ``t`` depends only on frames ``<= t``, so a video can be processed all at once (training)
or one frame at a time against a :class:`FrameCache` (generation), with the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.nn.blocks import LayerNorm


def patchify(frames: Tensor, patch: int) -> Tensor:
    """``[B,T,H,W,C]`` → ``[B,T,(H/p)·(W/p),p·p·C]``."""
    b, t, h, w, c = frames.shape
    if h % patch or w % patch:
        raise ValueError(f"frame size {h}x{w} is not divisible by the patch size {patch}; pick a patch that "
                         f"divides both (model.*.patch=) or resize the data")
    x = frames.reshape(b, t, h // patch, patch, w // patch, patch, c)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, t, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: Tensor, patch: int, size: tuple[int, int], channels: int) -> Tensor:
    """``[B,T,N,p·p·C]`` → ``[B,T,H,W,C]`` (inverse of :func:`patchify`)."""
    b, t = tokens.shape[:2]
    h, w = size
    x = tokens.reshape(b, t, h // patch, w // patch, patch, patch, channels)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, t, h, w, channels)


def _rotary(positions: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """cos/sin tables ``[T, dim]`` for rotary position embedding at integer ``positions`` ``[T]``."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None] * inv[None]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of ``[M,L,D]`` (fused SDPA kernel)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m, length, d = x.shape
        q, k, v = self.qkv(x).reshape(m, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [M,heads,L,d_head]

    def merge(self, y: Tensor) -> Tensor:
        m, h, length, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(m, length, h * dh))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.project(x)
        return self.merge(F.scaled_dot_product_attention(q, k, v))


@dataclass
class FrameCache:
    """Time-attention keys/values of the frames seen so far, per block: ``[B·N, heads, t, d_head]``.

    ``window`` bounds the frames kept (the oldest drop out; rotary positions keep relative offsets exact).
    ``position`` counts every frame committed, the rotary position of the next one.
    """

    window: int
    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)
    position: int = 0

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else int(self.keys[0].shape[2])


class STBlock(nn.Module):
    """Space attention, causal time attention (rotary), MLP; pre-LayerNorm residual branches."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_space = LayerNorm(width)
        self.space = Attention(width, heads)
        self.norm_time = LayerNorm(width)
        self.time = Attention(width, heads)
        self.norm_mlp = LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, x: Tensor, start: int = 0, past: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` ``[B,T,N,D]`` at rotary positions ``start…start+T-1``, after the cached ``past`` keys/values
        (frames before these). Returns the output and this call's own time keys/values (to cache)."""
        b, t, n, d = x.shape
        x = x + self.space(self.norm_space(x).reshape(b * t, n, d)).reshape(b, t, n, d)
        h = self.norm_time(x).permute(0, 2, 1, 3).reshape(b * n, t, d)
        q, k, v = self.time.project(h)
        cos, sin = _rotary(torch.arange(start, start + t, device=x.device), q.shape[-1])
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        own = (k, v)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        if t == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # one query frame sees every cached frame
        else:
            offset = k.shape[2] - t
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(offset)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.time.merge(y).reshape(b, n, t, d).permute(0, 2, 1, 3)
        return x + self.mlp(self.norm_mlp(x)), own


class STTransformer(nn.Module):
    """A stack of :class:`STBlock` with a final LayerNorm: ``[B,T,N,D]`` → ``[B,T,N,D]``."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(STBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = LayerNorm(width)
        self.apply(_init)

    def forward(self, x: Tensor, cache: FrameCache | None = None, commit: bool = False) -> Tensor:
        """Without a cache: the whole clip, causal in time. With one: frames that follow the cached ones;
        ``commit`` appends their keys/values (a MaskGIT iteration on an unfinished frame does not)."""
        if cache is None:
            for block in self.blocks:
                x, _ = block(x)
            return self.norm(x)
        if not cache.keys:
            cache.keys = [None] * len(self.blocks)
            cache.values = [None] * len(self.blocks)
        start = cache.position
        for i, block in enumerate(self.blocks):
            past = None if cache.keys[i] is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(x, start, past)
            if commit:
                keys = k if past is None else torch.cat([past[0], k], 2)
                values = v if past is None else torch.cat([past[1], v], 2)
                cache.keys[i], cache.values[i] = keys[:, :, -cache.window:], values[:, :, -cache.window:]
        if commit:
            cache.position += x.shape[1]
        return self.norm(x)


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser on the unit sphere with an EMA codebook and dead-code restarts.

    Inputs and codes are L2-normalised, so the nearest code is the one of highest cosine similarity (every
    code stays reachable; usage stays high). The output is straight-through: forward gives the code, backward
    passes the gradient to the input unchanged; a commitment loss ``beta·|z - sg(code)|²`` pulls inputs
    toward their codes. The codebook is not trained by gradient: in training mode each forward moves every
    used code to the EMA mean of the inputs assigned to it (statistics are summed over processes under DDP),
    and codes whose EMA usage falls below ``restart_below`` are re-seeded with random inputs of the batch.
    Everything runs in float32.
    """

    def __init__(self, codes: int, dim: int, beta: float = 0.25, decay: float = 0.99,
                 restart_below: float = 0.03) -> None:
        super().__init__()
        self.codes, self.dim, self.beta, self.decay, self.restart_below = codes, dim, beta, decay, restart_below
        embed = F.normalize(torch.randn(codes, dim), dim=-1)
        self.register_buffer("embed", embed)
        self.register_buffer("ema_sum", embed.clone())
        self.register_buffer("ema_count", torch.ones(codes))

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors of ``indices`` ``[...]`` → ``[..., dim]``."""
        return F.embedding(indices, self.embed)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``z`` ``[..., dim]`` → (straight-through codes ``[..., dim]``, indices ``[...]``, losses/stats)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            flat = z.reshape(-1, self.dim)
            indices = (flat.detach() @ self.embed.t()).argmax(-1)
            quant = F.embedding(indices, self.embed)
            commit = self.beta * (flat - quant).pow(2).sum(-1).mean()
            onehot = F.one_hot(indices, self.codes).float()
            usage = onehot.mean(0)
            if self.training and torch.is_grad_enabled():
                self._update(flat.detach(), onehot)
            quant = flat + (quant - flat).detach()
            probs = usage.clamp_min(1e-10)
            stats = {"commit": commit, "perplexity": torch.exp(-(usage * probs.log()).sum()),
                     "used": (usage > 0).float().sum()}
        return quant.reshape(z.shape), indices.reshape(z.shape[:-1]), stats

    @torch.no_grad()
    def _update(self, flat: Tensor, onehot: Tensor) -> None:
        counts, sums = onehot.sum(0), onehot.t() @ flat
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        self.embed.copy_(F.normalize(self.ema_sum / self.ema_count.clamp_min(1e-5)[:, None], dim=-1))
        expected = flat.shape[0] / self.codes  # assignments per code under uniform use
        dead = self.ema_count < self.restart_below * expected
        if dead.any():
            picks = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(picks, 0)
                fresh = flat[picks]
                torch.distributed.broadcast(fresh, 0)
            else:
                fresh = flat[picks]
            self.embed[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0


def cosine_schedule(step: int, steps: int) -> float:
    """MaskGIT's masking schedule: the fraction of tokens still masked after ``step`` of ``steps`` iterations."""
    return math.cos(math.pi / 2 * step / steps)
