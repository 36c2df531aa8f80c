"""Device and numeric precision: the one place that decides where and in which dtype a model runs.

Models never enter autocast themselves; the trainer wraps every forward in :func:`autocast`. A model that
needs float32 for a delicate op (quantisation, KL, log-sum-exp) opts out locally with
``torch.autocast(device_type=x.device.type, enabled=False)`` and ``.float()`` inputs.

bf16 is the default because its matmuls run 3-5x faster than fp32 on CPUs with AVX-512 BF16 (a whole
DreamerV3-size update 1.6-1.7x) and, unlike fp16, it needs no loss scaling (same exponent range as fp32).
On a GPU the built-in presets are bound by kernel launches, not arithmetic, and fp32 is a little faster. fp16 is not offered: on CPU it runs
at ~1 GFLOP/s and on GPU it would need a GradScaler.
"""

from __future__ import annotations

import contextlib
import os
from typing import ContextManager

import torch

from wmlab.config import ConfigError

PRECISIONS = ("bf16", "fp32")


def pick_device(name: str = "auto") -> torch.device:
    """Resolve a device name; ``"auto"`` takes CUDA, then Apple MPS, then CPU.

    Under several processes (``LOCAL_RANK`` set by torchrun) a CUDA device gets this process's local index,
    so each rank drives its own GPU.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but this torch build sees no CUDA GPU; use device=auto or cpu")
        gpus = torch.cuda.device_count()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if device.index is None and local_world > gpus:
            raise ConfigError(f"torchrun started {local_world} processes on this node but it has {gpus} GPU(s), "
                              f"and NCCL needs one GPU per process; use --nproc-per-node={gpus} or device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % gpus)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} but MPS is not available here; use device=auto or cpu")
    return device


def check_precision(precision: str) -> str:
    """Validate a precision name (``bf16`` or ``fp32``) and return it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device | str, precision: str) -> ContextManager:
    """Context for the forward pass: bf16 autocast (CPU and GPU alike) or, for ``fp32``, nothing at all."""
    check_precision(precision)
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
