"""Dreamer ``.npz`` episode folders (DreamerV1/V2/V3, and APV/ContextWM/PreLAR which reuse V2's format).

One ``.npz`` per episode with per-step keys ``image``, ``action``, ``reward``, ``is_first``,
``is_last``, ``is_terminal`` (older files: ``discount`` instead of the flags), plus any extra keys
(kept as they are). Two things differ between Dreamer versions and are converted to the wmlab schema:

- **Action alignment.** V1/V2 store in row t the action that *led to* o_t (row 0 all zeros); V3, like
  wmlab, the action chosen *after* o_t. ``action_convention="auto"`` treats float actions whose first
  row is all zeros as V2-style and shifts them one row earlier.
- **Discrete actions.** V2 stores them one-hot (float); wmlab stores int64 ids.

Everything converted is recorded in ``meta["dreamer"]``, so :mod:`wmlab.data.exporters.dreamer_npz`
writes the original arrays back bit for bit (float64 sources are the exception: wmlab keeps float32).
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from wmlab.data.formats import FormatError, register_reader
from wmlab.data.images import as_size, resize_frames
from wmlab.data.schema import FLAG_KEYS

CONVENTIONS = ("auto", "after", "led_to")


def looks_like_dreamer(src: Path) -> bool:
    if src.is_file():
        return src.suffix == ".npz"
    return src.is_dir() and next(src.rglob("*.npz"), None) is not None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one ``.npz`` (never unpickles), or FormatError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FormatError(f"{path}: cannot read Dreamer episode ({e})") from None


def _is_one_hot(a: np.ndarray) -> bool:
    if a.ndim != 2 or a.shape[1] < 2 or a.dtype.kind != "f":
        return False
    if not np.isin(a, (0, 1)).all():
        return False
    sums = a.sum(1)
    return bool(np.isin(sums, (0, 1)).all() and (sums == 1).any())


@register_reader("dreamer", detect=looks_like_dreamer)
def read_dreamer(
    src: Path,
    size: Any = None,
    action_convention: str = "auto",
    discrete: bool | str = "auto",
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Yield ``(episode, meta)`` for every ``*.npz`` under ``src`` (sorted by path).

    ``action_convention``: "auto", "after" (V3) or "led_to" (V1/V2). ``discrete``: "auto" turns
    one-hot float actions into int64 ids; True/False forces it."""
    if action_convention not in CONVENTIONS:
        raise FormatError(f"action_convention must be one of {CONVENTIONS}, got {action_convention!r}")
    size = as_size(size)
    root = src if src.is_dir() else src.parent
    files = sorted(src.rglob("*.npz")) if src.is_dir() else [src]
    if not files:
        raise FormatError(f"{src}: no .npz episodes found")
    for path in files:
        yield convert_episode(load_npz(path), path, root, size, action_convention, discrete)


def convert_episode(
    data: dict[str, np.ndarray],
    path: Path,
    root: Path,
    size: tuple[int, int] | None,
    action_convention: str,
    discrete: str | bool,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One Dreamer episode dict → wmlab episode + the metadata needed to undo the conversion."""
    if "image" not in data:
        raise FormatError(f"{path}: no 'image' key (keys: {sorted(data)})")
    length = len(data["image"])
    record: dict[str, Any] = {"file": path.relative_to(root).as_posix(), "dtypes": {}, "derived": []}
    ep: dict[str, np.ndarray] = {}
    for key, arr in data.items():
        if arr.ndim == 0 or len(arr) != length:
            raise FormatError(f"{path}: key {key!r} has shape {list(arr.shape)}, expected {length} steps like 'image'")
        if arr.dtype.kind not in "biuf":
            warnings.warn(f"{path}: dropping key {key!r} of dtype {arr.dtype} (not numeric)", stacklevel=3)
            record.setdefault("dropped", []).append(key)
            continue
        ep[key] = arr

    image = ep["image"]
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] not in (1, 3):
        raise FormatError(f"{path}: 'image' is {image.dtype}{list(image.shape)}, expected uint8 [T,H,W,3]")
    if image.shape[-1] == 1:
        record["image_channels"] = 1
        image = np.repeat(image, 3, axis=-1)
    if size is not None and tuple(image.shape[1:3]) != size:
        record["resized_from"] = list(image.shape[1:3])
        image = resize_frames(image, size)
    ep["image"] = image

    if "reward" in ep and ep["reward"].dtype != np.float32:
        record["dtypes"]["reward"] = ep["reward"].dtype.name
        ep["reward"] = ep["reward"].astype(np.float32).reshape(length)
    _flags(ep, record, path, length)
    meta: dict[str, Any] = {"source": str(path.resolve()), "dreamer": record}
    if "action" in ep:
        _action(ep, record, meta, path, action_convention, discrete)
    return ep, meta


def _flags(ep: dict[str, np.ndarray], record: dict[str, Any], path: Path, length: int) -> None:
    for key in FLAG_KEYS:
        if key in ep and ep[key].dtype != np.bool_:
            record["dtypes"][key] = ep[key].dtype.name
            ep[key] = ep[key].astype(bool)
    if "is_first" not in ep:
        ep["is_first"] = np.arange(length) == 0
        record["derived"].append("is_first")
    if "is_last" not in ep:
        ep["is_last"] = np.arange(length) == length - 1
        record["derived"].append("is_last")
    if "is_terminal" not in ep:
        if "discount" in ep:
            ep["is_terminal"] = np.asarray(ep["discount"]).reshape(length) == 0
        else:
            ep["is_terminal"] = np.zeros(length, bool)  # unknown: treat as a time-limit end
        record["derived"].append("is_terminal")


def _action(
    ep: dict[str, np.ndarray],
    record: dict[str, Any],
    meta: dict[str, Any],
    path: Path,
    convention: str,
    discrete: str | bool,
) -> None:
    act = ep["action"]
    info: dict[str, Any] = {"dtype": act.dtype.name, "shape": list(act.shape[1:])}
    if convention == "auto":
        convention = "led_to" if act.dtype.kind == "f" and len(act) > 1 and not act[0].any() else "after"
    if convention == "led_to":  # row t held the action that led to o_t: move it to row t-1
        act = np.concatenate([act[1:], np.zeros_like(act[:1])])
        info["shift"] = True
    one_hot = _is_one_hot(act) if discrete == "auto" else bool(discrete) and act.ndim == 2 and act.dtype.kind == "f"
    if one_hot:
        info["one_hot"] = int(act.shape[1])
        info["zero_rows"] = np.flatnonzero(~act.any(1)).tolist()
        meta["num_actions"] = int(act.shape[1])
        act = act.argmax(1).astype(np.int64)
    elif act.dtype.kind in "iub":
        if act.ndim == 2 and act.shape[1] == 1:
            act = act[:, 0]
        if act.ndim != 1:
            raise FormatError(f"{path}: integer 'action' has shape {list(act.shape)}, expected [T] ids")
        act = act.astype(np.int64)
    else:
        act = act.astype(np.float32).reshape(len(act), -1)
    ep["action"] = act
    record["action"] = info
