"""Several processes through the standard launcher (``torchrun --standalone --nproc_per_node N``).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads them and joins the
process group (gloo on CPU, nccl on CUDA). Without them everything here degrades to a single process, so the
same training script runs under ``python`` and under ``torchrun``. Only rank 0 writes files; gradients are
averaged by :class:`torch.nn.parallel.DistributedDataParallel`, which needs a ``forward``: :class:`LossModule`
gives the model's ``loss`` one.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from wmlab.config import write_atomic


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits among its peers."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # True when this module called init_process_group (and so should destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (single process if unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def write_run_file(path: Path, text: str) -> None:
    """Write a run folder file that every torchrun process computes alike (spec.json, run.json) from the
    first process only, atomically, so that readers never see half of it."""
    if env_info().is_main:
        write_atomic(path, text)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group if torchrun started several processes; a no-op for one process.

    A group the caller already initialised is used as it is.
    """
    info = env_info()
    if not info.enabled:
        return info
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, created_group=False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, created_group=True)


def rank_seed(seed: int, rank: int | None = None) -> int:
    """Seed for this rank's randomness and data stream: equal seeds on all ranks would feed them the same batches."""
    if rank is None:
        rank = env_info().rank
    return seed + 1_000_003 * rank


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if ``flag`` is True on every rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def mean_across_ranks(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks; every rank must pass the same keys (they are sorted here)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (JSON-like trees of our own making: RNG and data positions), in rank order."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class LossModule(nn.Module):
    """``forward(batch) = model.loss(batch)``, so DDP and torch.compile can wrap a model's loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.model.loss(batch)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device,
             find_unused_parameters: bool = False) -> nn.Module:
    """Wrap for gradient averaging when several processes run; otherwise return ``module`` unchanged."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.created_group and dist.is_initialized():
        dist.destroy_process_group()
