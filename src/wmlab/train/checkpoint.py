"""Checkpoints as safetensors + JSON under ``run_dir/checkpoints/<step>/``, written atomically, no pickle.

Layout of one checkpoint (``<step>`` is the step zero-padded to 8 digits, so names sort)::

    checkpoints/
      last                     text: the name of the newest complete step folder
      00001000/
        model.safetensors      model.state_dict() (tied tensors stored once)
        optimizer.safetensors  every tensor of optimizer.state_dict(), keyed by its path ("state/0/exp_avg")
        optimizer.json         the rest of optimizer.state_dict() (param groups, hyper-parameters), tensor refs
        state.json             step, model class, model config + hash, trainer config, RNG states per rank,
                               data positions per rank, skipped-step count, last logged metrics

A step folder is written as ``.tmp-<step>`` and renamed when complete; ``last`` is replaced (tmp file +
``os.replace``) only after that, so a crash at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from wmlab.train import treecodec

FORMAT = "wmlab-checkpoint"
VERSION = 1
FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "state.json")
_NEW_RUN = "start a new run_dir (or delete this checkpoint folder)"


class CheckpointError(ValueError):
    """A checkpoint that is corrupt or does not fit the model/config; the message names the file and the fix."""


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint where one was asked for; the message names the path."""


def step_dir_name(step: int) -> str:
    return f"{step:08d}"


def config_dict(config: Any) -> Any:
    """A model config (dataclass tree, dict or None) as plain JSON-able data."""
    if config is None:
        return None
    if dataclasses.is_dataclass(config):
        from wmlab.config import to_dict

        return to_dict(config)
    return json.loads(json.dumps(config, default=str))


def config_hash(config: Any) -> str | None:
    if config is None:
        return None
    text = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


# ----------------------------------------------------------------------------------------------- RNG
def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """Python, numpy (global), torch CPU and, for a CUDA device, that device's generator state."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# ----------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_last(root: Path, name: str) -> None:
    """Point ``root/last`` at ``name`` atomically."""
    tmp = root / f".last.tmp-{os.getpid()}"
    _write_text(tmp, name + "\n")
    os.replace(tmp, root / "last")
    _fsync_dir(root)


def save_checkpoint(root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int = 0) -> Path:
    """Write ``root/<step>/`` atomically, point ``root/last`` at it, keep the newest ``keep`` (0 = all).

    ``state`` is extra JSON-able data (RNG trees may hold tensors/arrays: they are inlined as base64).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": FORMAT, "model_class": class_name(model),
                                                                "step": str(step)})
    tensors: dict[str, torch.Tensor] = {}
    opt_tree = treecodec.encode(optimizer.state_dict(), tensors)
    save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"format": FORMAT})
    _write_text(tmp / "optimizer.json", json.dumps(opt_tree))
    doc = {"format": FORMAT, "version": VERSION, "step": step, "model_class": class_name(model), **state}
    _write_text(tmp / "state.json", json.dumps(treecodec.encode(doc), indent=1))
    for f in ("model.safetensors", "optimizer.safetensors"):
        with open(tmp / f, "rb+") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    old = None
    if final.exists():  # re-saving a step (e.g. a finished run saved again): swap, then drop the old copy
        old = root / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    write_last(root, name)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    if keep > 0:
        prune(root, keep)
    return final


def step_dirs(root: Path) -> list[Path]:
    """Complete step folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step folders (never the one ``last`` names)."""
    last = (root / "last").read_text().strip() if (root / "last").exists() else None
    dirs = step_dirs(root)
    for d in dirs[:-keep] if keep > 0 else []:
        if d.name != last:
            shutil.rmtree(d, ignore_errors=True)


def clean_partial(root: Path) -> None:
    """Remove half-written folders a crash left behind (they were never pointed at)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".old-", ".last.tmp-")):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- reading
def find_last(root: str | Path) -> Path | None:
    """The step folder ``root/last`` names, or None when there is no ``last`` (a fresh run)."""
    root = Path(root)
    pointer = root / "last"
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    target = root / name
    if not name or not (target / "state.json").exists():
        raise CheckpointNotFoundError(
            f"{pointer} names {name!r} but {target} holds no checkpoint; write the name of a complete step folder "
            f"into {pointer} or delete it to start over")
    return target


def resolve(path: str | Path) -> Path:
    """A step folder from a run_dir, a checkpoints folder, a step folder or a ``model.safetensors`` file."""
    path = Path(path)
    if path.is_file():
        return path.parent
    for root in (path / "checkpoints", path):
        if (root / "last").exists():
            found = find_last(root)
            if found is not None:
                return found
    if (path / "model.safetensors").exists():
        return path
    raise CheckpointNotFoundError(f"no checkpoint at {path}: expected a run_dir with checkpoints/last, a step "
                                  f"folder holding model.safetensors, or a .safetensors file")


def read_state(step_dir: Path) -> dict[str, Any]:
    path = step_dir / "state.json"
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file {path} is missing; the checkpoint is incomplete")
    try:
        doc = treecodec.decode(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({type(e).__name__}: {e}); {_NEW_RUN}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint file {path} is not a wmlab checkpoint state; {_NEW_RUN}")
    return doc


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file {path} is missing; the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint file {path} is corrupt ({msg}); {_NEW_RUN}") from None


def load_model_file(path: Path, model: nn.Module, strict: bool = True) -> dict[str, list[str]]:
    """Load ``path`` (safetensors) into ``model``; tied tensors saved once are filled for every alias.

    strict: any missing/unexpected key or shape difference is a :class:`CheckpointError` naming them.
    Not strict: loads the keys that fit and returns ``{"missing", "unexpected", "mismatched"}``.
    """
    tensors = _read_tensors(path)
    own = model.state_dict()
    # Names sharing storage in the model: a file that holds one of them fills all.
    groups: dict[tuple, list[str]] = {}
    for k, v in own.items():
        if v.device.type != "meta" and v.numel() > 0:
            groups.setdefault((v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)), []).append(k)
    for names in groups.values():
        present = [n for n in names if n in tensors]
        for n in names:
            if n not in tensors and present:
                tensors[n] = tensors[present[0]]
    missing = sorted(k for k in own if k not in tensors)
    unexpected = sorted(k for k in tensors if k not in own)
    mismatched = sorted(f"{k}: {tuple(tensors[k].shape)} in file vs {tuple(own[k].shape)} in model"
                        for k in own if k in tensors and tensors[k].shape != own[k].shape)
    if strict and (missing or unexpected or mismatched):
        parts = [f"{label} [{_listing(items)}]" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape differences", mismatched))
                 if items]
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: {'; '.join(parts)}; "
                              f"{_NEW_RUN}, or build the model with the checkpoint's config")
    fitting = {k: v for k, v in tensors.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    return {"missing": missing, "unexpected": unexpected, "mismatched": [m.split(":")[0] for m in mismatched]}


def load_optimizer(step_dir: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors = _read_tensors(step_dir / "optimizer.safetensors")
    path = step_dir / "optimizer.json"
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file {path} is missing; the checkpoint is incomplete")
    try:
        tree = treecodec.decode(json.loads(path.read_text()), tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({type(e).__name__}: {e}); {_NEW_RUN}") from None
    try:
        optimizer.load_state_dict(tree)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"optimizer state {path} does not fit this optimizer ({str(e).splitlines()[0]}); "
                              f"{_NEW_RUN}") from None


def check_compatible(step_dir: Path, state: dict[str, Any], model: nn.Module, config: Any) -> None:
    """Same model class and, when both sides have one, the same model config."""
    saved = state.get("model_class")
    if saved != class_name(model):
        raise CheckpointError(f"checkpoint {step_dir} holds a {saved} but this run builds a {class_name(model)}; "
                              f"{_NEW_RUN}")
    want = config_hash(config)
    have = state.get("config_hash")
    if want is not None and have is not None and want != have:
        old, new = _flat(state.get("config")), _flat(config_dict(config))
        diff = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))
        shown = _listing([f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in diff])
        raise CheckpointError(f"checkpoint {step_dir} was trained with another model config ({shown}); "
                              f"{_NEW_RUN}, or resume with the checkpoint's config")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def load_weights(path: str | Path, model: nn.Module, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint's model weights into ``model`` (for evaluation or to start a fine-tune).

    ``path`` may be a run_dir, its ``checkpoints`` folder, a step folder or a ``.safetensors`` file. With
    ``strict`` the model class (when recorded) and every key/shape must match; with ``strict=False`` the
    fitting tensors load and the rest are reported. Returns ``{"step", "path", "missing", "unexpected",
    "mismatched"}``.
    """
    path = Path(path)
    file = path if path.is_file() else resolve(path) / "model.safetensors"
    step_dir = file.parent
    step = None
    if (step_dir / "state.json").exists() and file.name == "model.safetensors":
        state = read_state(step_dir)
        step = state.get("step")
        if strict and state.get("model_class") != class_name(model):
            raise CheckpointError(f"checkpoint {step_dir} holds a {state.get('model_class')}, not a "
                                  f"{class_name(model)}; load it into that class or pass strict=False")
    report = load_model_file(file, model, strict=strict)
    return {"step": step, "path": str(file), **report}

