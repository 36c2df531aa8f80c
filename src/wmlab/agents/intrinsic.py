"""APV's video-based intrinsic bonus (Seo et al. 2022, https://arxiv.org/abs/2203.13880).

A state is novel when its representation — latent features averaged over a short causal window, through a
fixed random projection — lies far from the others: the bonus is the distance to the k-th nearest
neighbour among the batch and a FIFO queue of recent representations, divided by a running mean so its
scale stays put. Everything here is a buffer, so it checkpoints with the agent and resumes exactly.
The window is causal (steps t-w+1..t, fewer at a clip's start), so every step of a clip gets a bonus; APV's
code averages the window ahead (t..t+w-1) and drops the last w-1 steps, and takes the mean of the k nearest
distances where this takes the k-th.

Shape legend: ``B`` batch, ``T`` time, ``F`` features, ``D`` projection width, ``Q`` queue size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wmlab.nn.dists import float32


class VideoBonus(nn.Module):
    def __init__(self, feat_dim: int, k: int = 16, window: int = 4, queue: int = 4096, dim: int = 128,
                 decay: float = 0.99) -> None:
        super().__init__()
        if k < 1 or window < 1 or queue < 1:
            raise ValueError(f"intrinsic bonus needs knn_k, knn_window and knn_queue >= 1, got {k}, {window}, {queue}")
        self.k, self.window, self.decay = k, window, decay
        self.register_buffer("proj", torch.randn(feat_dim, dim) / math.sqrt(feat_dim))
        self.register_buffer("queue", torch.zeros(queue, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean", torch.ones(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def represent(self, feat: Tensor) -> Tensor:
        """``[B,T,F]`` → window-averaged projections ``[B,T,D]`` (fewer steps averaged at the window start)."""
        y = feat.detach().float() @ self.proj
        c = torch.cumsum(y, 1)
        shifted = torch.cat([torch.zeros_like(c[:, :self.window]), c[:, :-self.window]], 1)[:, :c.shape[1]]
        steps = torch.arange(1, y.shape[1] + 1, device=y.device).clamp(max=self.window).view(1, -1, 1)
        return (c - shifted) / steps

    @torch.no_grad()
    def forward(self, feat: Tensor) -> Tensor:
        """Bonus ``[B,T]`` of latent features ``[B,T,F]``; in training mode the queue and scale update."""
        with float32(feat):  # distances and the queue stay float32 under bf16 autocast
            return self._bonus(feat)

    def _bonus(self, feat: Tensor) -> Tensor:
        b, t = feat.shape[:2]
        rep = self.represent(feat).flatten(0, 1)  # [M,D]
        bank = torch.cat([self.queue[:int(self.filled)], rep])
        dist = torch.cdist(rep, bank)  # [M, Q'+M], includes the zero distance to itself
        k = min(self.k + 1, bank.shape[0])
        kth = dist.topk(k, dim=1, largest=False).values[:, -1]
        if self.training:
            self._push(rep)
            rate = torch.where(self.count == 0, 1.0, 1.0 - self.decay)
            self.mean.lerp_(kth.mean().clamp_min(1e-6), rate)
            self.count += 1
        return (kth / self.mean).view(b, t)

    def _push(self, rep: Tensor) -> None:
        size = self.queue.shape[0]
        rep = rep[-size:]
        idx = (self.ptr + torch.arange(rep.shape[0], device=rep.device)) % size
        self.queue[idx] = rep
        self.ptr.copy_((self.ptr + rep.shape[0]) % size)
        self.filled.copy_(torch.clamp(self.filled + rep.shape[0], max=size))
