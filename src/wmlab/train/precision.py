"""Device and numeric precision: the one place that decides where and in which dtype a model runs.

Models never enter autocast themselves; the trainer wraps every forward in :func:`autocast`. A model that
needs float32 for a delicate op (quantisation, KL, log-sum-exp) opts out locally with
``torch.autocast(device_type=x.device.type, enabled=False)`` and ``.float()`` inputs.

``auto`` (the default) picks bf16 where the hardware computes in bf16 natively and fp32 everywhere else
(:func:`resolve_precision`). Where it is native, bf16 matmuls run 3-5x faster than fp32 (CPUs with AVX-512
BF16 or AMX: a whole DreamerV3-size update 2.1-2.3x) and, unlike fp16, need no loss scaling (same exponent
range as fp32). Where it is not (AVX2-only CPUs such as AMD Zen 3), oneDNN emulates it: a 2048² matmul ran
at 0.28 GFLOP/s against 103 in fp32, and world-model updates took 11x (small) to 21x (paper size) longer.
On a GPU the built-in presets are bound by kernel launches, not arithmetic, and fp32 is a little faster.
fp16 is not offered: on CPU it runs at ~1 GFLOP/s and on GPU it would need a GradScaler.
"""

from __future__ import annotations

import contextlib
import os
from typing import ContextManager

import torch

from wmlab.config import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
_CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


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
    """Validate a precision name (``auto``, ``bf16`` or ``fp32``) and return it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
    return precision


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware: a CUDA GPU that supports bf16, or a CPU with
    AVX-512 BF16 or AMX. Apple MPS counts as not native (not measured here)."""
    device = torch.device(device)
    if device.type == "cuda":  # pre-Ampere GPUs emulate bf16, and torch counts that unless told not to
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in _CPU_BF16_PROBES)
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``bf16`` or ``fp32``: ``auto`` becomes bf16 where :func:`native_bf16`, fp32 elsewhere."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device | str, precision: str) -> ContextManager:
    """Context for the forward pass: bf16 autocast (CPU and GPU alike) or, for ``fp32``, nothing at all
    (``auto`` is resolved for ``device`` first)."""
    device_type = torch.device(device).type
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
