"""Write a store as a folder of Dreamer ``.npz`` episodes.

Episodes that came from Dreamer files (``meta["dreamer"]``) are written back exactly as they were
read: same file name, keys, dtypes, action alignment and one-hot encoding. Other episodes are written
with the wmlab keys as stored (DreamerV3 alignment); ``action_convention="led_to"`` and
``one_hot=True`` produce V1/V2-style files instead (what APV/ContextWM/PreLAR code reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wmlab.data.formats import FormatError, register_writer
from wmlab.data.store import EpisodeStore


def to_dreamer(
    ep: dict[str, np.ndarray],
    record: dict[str, Any] | None,
    num_actions: int | None = None,
    action_convention: str | None = None,
    one_hot: bool = False,
) -> dict[str, np.ndarray]:
    """Undo the conversions of the Dreamer importer (``record``), or apply the requested ones."""
    out = {k: np.array(v) for k, v in ep.items()}
    record = record or {}
    for key in record.get("derived", []):
        out.pop(key, None)
    for key, dtype in record.get("dtypes", {}).items():
        if key in out:
            out[key] = out[key].astype(dtype)
    if record.get("image_channels") == 1:
        out["image"] = out["image"][..., :1]
    if "action" in out:
        out["action"] = _action_back(out["action"], record.get("action"), num_actions, action_convention, one_hot)
    return out


def _action_back(
    act: np.ndarray, info: dict[str, Any] | None, num_actions: int | None, convention: str | None, one_hot: bool
) -> np.ndarray:
    if info is None:  # not from Dreamer: apply what was asked
        info = {"shift": convention == "led_to"}
        if one_hot and act.dtype == np.int64:
            n = num_actions or int(act.max()) + 1
            info.update(one_hot=n, dtype="float32")
    if info.get("one_hot"):
        hot = np.zeros((len(act), info["one_hot"]), dtype=info.get("dtype", "float32"))
        hot[np.arange(len(act)), act] = 1
        hot[info.get("zero_rows", [])] = 0
        act = hot
    else:
        act = act.astype(info.get("dtype", act.dtype.name)).reshape(len(act), *info.get("shape", act.shape[1:]))
    if info.get("shift"):  # back to "row t holds the action that led to o_t"
        act = np.concatenate([np.zeros_like(act[:1]), act[:-1]])
    return act


@register_writer("dreamer")
def write_dreamer(
    store: EpisodeStore,
    out: Path,
    action_convention: str | None = None,
    one_hot: bool = False,
    compress: bool = True,
) -> Path:
    """One ``.npz`` per episode under ``out``; returns ``out``."""
    if action_convention not in (None, "after", "led_to"):
        raise FormatError(f"action_convention must be 'after' or 'led_to', got {action_convention!r}")
    out.mkdir(parents=True, exist_ok=True)
    num_actions = (store.spec or {}).get("num_actions")
    save = np.savez_compressed if compress else np.savez
    for eid in store.ids():
        meta = store.meta(eid)
        record = meta.get("dreamer")
        arrays = to_dreamer(store.load(eid), record, num_actions, action_convention, one_hot)
        name = record["file"] if record and record.get("file") else f"{eid}-{store.length(eid)}.npz"
        path = (out / name).resolve()
        if not path.is_relative_to(out.resolve()):
            raise FormatError(f"episode {eid}: file name {name!r} from its metadata points outside {out}")
        if path.exists():
            raise FormatError(f"{path} already exists; export into an empty folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path, **arrays)
    return out
