"""Nested Python state (optimizer state dicts, RNG states, data positions) as JSON plus tensors, never pickle.

``encode`` turns a tree of dicts, lists, tuples, numbers, strings, tensors and numpy arrays into a JSON-able
tree. Tensors either go into a flat ``{name: tensor}`` dict (saved with safetensors) and leave a reference
behind, or, when no dict is given, are written inline as base64 (for small states such as RNG). Tuples and
dicts with non-string keys (optimizer state is keyed by parameter index) are tagged so ``decode`` gives back
the same types, which ``load_state_dict`` and ``random.setstate`` require.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__items__")


def _tensor_bytes(t: torch.Tensor) -> str:
    raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return base64.b64encode(raw).decode("ascii")


def encode(tree: Any, tensors: dict[str, torch.Tensor] | None = None, path: str = "") -> Any:
    """JSON-able form of ``tree``; tensors are moved to ``tensors`` under their path (or inlined if None)."""
    if isinstance(tree, torch.Tensor):
        if tensors is None:
            return {"__tensor__": _tensor_bytes(tree), "dtype": str(tree.dtype).removeprefix("torch."),
                    "shape": list(tree.shape)}
        name = path or "root"
        tensors[name] = tree.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(tree, np.ndarray):
        raw = base64.b64encode(np.ascontiguousarray(tree).tobytes()).decode("ascii")
        return {"__ndarray__": raw, "dtype": tree.dtype.str, "shape": list(tree.shape)}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, tuple):
        return {"__tuple__": [encode(v, tensors, f"{path}/{i}") for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [encode(v, tensors, f"{path}/{i}") for i, v in enumerate(tree)]
    if isinstance(tree, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in tree):
            return {k: encode(v, tensors, f"{path}/{k}" if path else k) for k, v in tree.items()}
        items = []
        for k, v in tree.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"cannot store dict key {k!r} of type {type(k).__name__} at {path or 'root'}")
            items.append([k, encode(v, tensors, f"{path}/{k}" if path else str(k))])
        return {"__items__": items}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store a {type(tree).__name__} at {path or 'root'} without pickle")


def decode(tree: Any, tensors: dict[str, torch.Tensor] | None = None) -> Any:
    """Inverse of :func:`encode`; raises KeyError/ValueError on a reference or payload that does not fit."""
    if isinstance(tree, list):
        return [decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        if "dtype" in tree:
            dtype = getattr(torch, tree["dtype"])
            raw = bytearray(base64.b64decode(tree["__tensor__"]))
            flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return flat.view(dtype).reshape(tree["shape"]).clone()
        if tensors is None or tree["__tensor__"] not in tensors:
            raise KeyError(f"tensor {tree['__tensor__']!r} is missing")
        return tensors[tree["__tensor__"]]
    if "__ndarray__" in tree:
        raw = base64.b64decode(tree["__ndarray__"])
        return np.frombuffer(raw, dtype=np.dtype(tree["dtype"])).reshape(tree["shape"]).copy()
    if "__tuple__" in tree:
        return tuple(decode(v, tensors) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {k: decode(v, tensors) for k, v in tree["__items__"]}
    return {k: decode(v, tensors) for k, v in tree.items()}
