"""Plug point 1 of the RSSM world model: how actions enter the dynamics.

An :class:`ActionInput` turns a batch into ``[B,T,A']``, aligned with the episode schema: row ``t`` is what
drives the transition ``o_t → o_{t+1}`` (the action chosen after seeing ``o_t``). The world model shifts
it by one step itself. Variants register by name and are chosen with ``action_input=<name>``:

- ``real``: the batch's ``action`` (continuous passthrough; discrete indices → one-hot).
- ``none``: zero width; the model runs with no action at all (action-free video, APV pretraining).
- ``embedding``: a given per-step embedding ``batch[embedding_key]`` (e.g. latent actions inferred from
  frames, PreLAR), with the same alignment as actions.

Shape legend: ``B`` batch, ``T`` time, ``A`` raw action size, ``A'`` action input width (``dim``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.models.config import WorldModelConfig
from wmlab.models.registry import Registry


class BatchError(ValueError):
    """A batch lacks a key the model needs or holds it with the wrong shape."""


class ActionInput(nn.Module):
    """Base class: ``forward(batch) -> [B,T,A']``, ``encode(action) -> [..., A']``, width ``dim``."""

    dim: int = 0

    def __init__(self, cfg: WorldModelConfig, spec: dict[str, Any]) -> None:
        super().__init__()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def encode(self, action: Tensor) -> Tensor:
        """Map raw actions (as an agent or the batch holds them) to the input width ``A'``."""
        raise NotImplementedError

    def aux_losses(self, batch: dict[str, Tensor]) -> dict[str, tuple[float, Tensor]]:
        """Extra loss terms of this plug, ``name -> (scale, loss [B,T] or scalar)``; called by the world
        model's loss after ``forward(batch)``. None by default."""
        return {}


ACTION_INPUTS: Registry[ActionInput] = Registry("action input", "action_input")


def _batch_shape(batch: dict[str, Tensor]) -> torch.Size:
    if "is_first" not in batch:
        raise BatchError("batch has no 'is_first' key; every world-model batch needs is_first [B,T]")
    return batch["is_first"].shape


@ACTION_INPUTS.register("real")
class RealActions(ActionInput):
    """Environment actions: float ``[B,T,A]`` as they are, or int ``[B,T]`` as one-hot ``[B,T,num_actions]``."""

    def __init__(self, cfg: WorldModelConfig, spec: dict[str, Any]) -> None:
        super().__init__(cfg, spec)
        self.discrete = bool(spec.get("action_discrete"))
        size = spec.get("num_actions") if self.discrete else spec.get("action_dim")
        if not size:
            raise ValueError("action_input=real needs actions, but the data spec has none "
                             "(action-free video): use action_input=none or action_input=embedding")
        self.dim = int(size)

    def encode(self, action: Tensor) -> Tensor:
        if self.discrete:
            return F.one_hot(action.long(), self.dim).float()
        if action.shape[-1] != self.dim:
            raise BatchError(f"action has {action.shape[-1]} dims but the model was built for {self.dim}")
        return action.float()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if "action" not in batch:
            raise BatchError("batch has no 'action' key but action_input=real; "
                             "use action_input=none for action-free video")
        action = batch["action"]
        want = 2 if self.discrete else 3
        if action.dim() != want or action.shape[:2] != _batch_shape(batch):
            raise BatchError(f"batch 'action' has shape {tuple(action.shape)}; expected "
                             f"{'[B,T] indices' if self.discrete else f'[B,T,{self.dim}]'}")
        return self.encode(action)


@ACTION_INPUTS.register("none")
class NoActions(ActionInput):
    """No action input at all: a zero-width tensor, so the dynamics see only the latent state."""

    def encode(self, action: Tensor) -> Tensor:
        return action.new_zeros(*action.shape[:-1], 0, dtype=torch.float32)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        b, t = _batch_shape(batch)
        return torch.zeros(b, t, 0, device=batch["is_first"].device)


@ACTION_INPUTS.register("embedding")
class EmbeddingActions(ActionInput):
    """A per-step embedding from ``batch[embedding_key]`` ``[B,T,D]``, used as the action input."""

    def __init__(self, cfg: WorldModelConfig, spec: dict[str, Any]) -> None:
        super().__init__(cfg, spec)
        if cfg.embedding_dim <= 0:
            raise ValueError("action_input=embedding needs embedding_dim > 0 (the width of "
                             f"batch[{cfg.embedding_key!r}])")
        self.key = cfg.embedding_key
        self.dim = cfg.embedding_dim

    def encode(self, action: Tensor) -> Tensor:
        if action.shape[-1] != self.dim:
            raise BatchError(f"embedding has {action.shape[-1]} dims but embedding_dim={self.dim}")
        return action.float()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if self.key not in batch:
            raise BatchError(f"batch has no {self.key!r} key but action_input=embedding reads it "
                             "(set embedding_key to the batch key holding the per-step embedding)")
        emb = batch[self.key]
        if emb.dim() != 3 or emb.shape[:2] != _batch_shape(batch):
            raise BatchError(f"batch {self.key!r} has shape {tuple(emb.shape)}; expected [B,T,{self.dim}]")
        return self.encode(emb)
