"""Plan2Explore (Sekar et al. 2020, https://arxiv.org/abs/2005.05960): an ensemble of one-step predictors
whose disagreement about the next latent is the exploration policy's intrinsic reward.

The members run as one batched MLP (weights ``[K, in, out]``), so the ensemble costs a few large matmuls
rather than ``K`` small ones. Shape legend: ``K`` members, ``M`` rows, ``F`` features, ``A`` action input,
``D`` target width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.agents.config import Plan2ExploreConfig
from wmlab.models.rssm import State
from wmlab.nn.blocks import activation


class Ensemble(nn.Module):
    """``K`` MLPs ``(features_t, action_t) → target_{t+1}`` trained on the world model's posteriors."""

    def __init__(self, cfg: Plan2ExploreConfig, feat_dim: int, action_dim: int, target_dim: int,
                 norm: bool = True, act: str = "silu") -> None:
        super().__init__()
        self.norm, self.act = norm, activation(act)  # the world model's units (DreamerV2: ELU, no norm)
        if cfg.members < 2:
            raise ValueError(f"plan2explore.members={cfg.members} must be >= 2 (disagreement needs several)")
        self.cfg = cfg
        dims = [feat_dim + action_dim] + [cfg.units] * cfg.layers + [target_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(cfg.members, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(cfg.members, 1, b)))

    def forward(self, x: Tensor) -> Tensor:
        """``[M, F+A]`` → predictions ``[K, M, D]``."""
        h = x.unsqueeze(0).expand(self.cfg.members, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.to(h.dtype), h, w.to(h.dtype))
            if i < last:
                h = self.act(F.layer_norm(h, h.shape[-1:]) if self.norm else h)
        return h

    def target(self, wm: nn.Module, state: State) -> Tensor:
        """What the members predict, read from a state ``[...]``."""
        if self.cfg.target == "stoch":
            return state.stoch.flatten(-2)
        if self.cfg.target == "deter":
            return state.deter
        return wm.features(state)

    def loss(self, wm: nn.Module, post: State, action_in: Tensor) -> Tensor:
        """Mean squared error of every member predicting the next posterior ``[B,T]`` from the current one."""
        feat = wm.features(post)[:, :-1].detach()
        inputs = torch.cat([feat, action_in[:, :-1].to(feat.dtype)], -1).flatten(0, 1)
        target = self.target(wm, post)[:, 1:].detach().flatten(0, 1).float()
        pred = self(inputs).float()
        return ((pred - target[None]) ** 2).mean()

    def disagreement(self, feat: Tensor, action_in: Tensor) -> Tensor:
        """Intrinsic reward ``[N,H+1]`` of imagined features ``[N,H+1,F]`` reached by actions ``[N,H,A]``:
        the ensemble variance (mean over target dims) of the step into each state; 0 for the start state."""
        n, h1 = feat.shape[:2]
        inputs = torch.cat([feat[:, :-1], action_in.to(feat.dtype)], -1).flatten(0, 1)
        var = self(inputs).float().var(0).mean(-1).view(n, h1 - 1)
        return torch.cat([var.new_zeros(n, 1), var], 1)
