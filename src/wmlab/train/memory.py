"""Host memory reuse for CPU training (glibc's ``malloc`` settings).

glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it on ``free``. A paper-size
world-model step allocates dozens of activations and gradients of 30–130 MB (a 1024-frame batch of 32×32×32
feature maps), so every step pays the kernel to map, zero and fault in each of them again: at 2 cores that
is 10–20 % of the step. :func:`keep_freed_memory` makes ``malloc`` serve them from its heap and keep what
is freed there for the next step (``M_MMAP_MAX = 0``, and no trimming of the heap's top). The process then
holds its peak memory until it exits, which a training run does anyway.

This is what ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` in the environment does, applied from inside
the process so that a plain ``wmlab train`` gets it; ``trainer.reuse_memory=false`` leaves ``malloc`` as it
is. It does nothing (and says so by returning False) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # the largest value mallopt takes (an int): 2 GB of free heap top kept

_applied = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse; True if glibc took it."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has a mallopt that ignores everything)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER))
    return _applied
