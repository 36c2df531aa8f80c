"""Check a store file by file, and summarise it.

:func:`verify` reads every episode completely (files present and readable, shapes and dtypes as in
``meta.json`` and the store spec, equal lengths, consistent flags, finite values) and reports every
bad episode by file name instead of stopping at the first. Reading everything is the point: the
store itself trusts ``meta.json`` and only touches the steps it is asked for.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wmlab.data import layout
from wmlab.data.layout import CorruptFileError
from wmlab.data.schema import EpisodeError, check_against_spec, validate_episode
from wmlab.data.store import EpisodeStore


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a store: the file (or folder) and what is wrong with it."""

    path: str
    message: str
    episode: str | None = None
    kind: str = "error"  # "error": data is bad; "leftover": an interrupted write left a temp folder

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def verify(path: str | Path, fix: bool = False) -> list[Problem]:
    """All problems found in the store at ``path`` (empty list: the store is sound).

    ``fix=True`` deletes temp folders left by crashed writers (never data of committed episodes)."""
    root = Path(path).expanduser()
    if not (root / layout.HEADER).is_file():
        raise layout.StoreNotFoundError(f"no episode store at {root} (no {layout.HEADER}); check the path, or "
                                        f"create one with `wmlab collect` or `wmlab data import`")
    problems: list[Problem] = []
    spec = None
    try:
        header = layout.read_json(root / layout.HEADER)
        spec = header.get("spec")
    except CorruptFileError as e:
        problems.append(Problem(str(root / layout.HEADER), e.problem))
    episodes = root / layout.EPISODES
    stale = {p.name for p in layout.stale_temp_dirs(episodes)}
    names = sorted(os.listdir(episodes)) if episodes.is_dir() else []
    for name in names:
        entry = episodes / name
        if name.startswith(layout.TMP_PREFIX):
            if name in stale:
                if fix:
                    shutil.rmtree(entry, ignore_errors=True)
                    msg = "temp folder of an interrupted write: removed"
                else:
                    msg = "temp folder of an interrupted write (the episode was lost); remove it with fix=True"
                problems.append(Problem(str(entry), msg, kind="leftover"))
            continue
        if not layout.is_episode_name(name):
            continue
        if not entry.is_dir():
            problems.append(Problem(str(entry), "unexpected file in episodes/ (each episode is a folder)"))
            continue
        problems += check_episode(entry, spec)
    return problems


def check_episode(folder: Path, spec: dict[str, Any] | None) -> list[Problem]:
    """Problems of one committed episode folder."""
    eid = folder.name
    meta_path = folder / layout.META
    try:
        info = layout.read_json(meta_path)
        length, keys = int(info["length"]), dict(info["keys"])
    except CorruptFileError as e:
        return [Problem(str(meta_path), e.problem, eid)]
    except (KeyError, TypeError, ValueError) as e:
        return [Problem(str(meta_path), f"missing or invalid field ({e})", eid)]
    problems = []
    arrays: dict[str, np.ndarray] = {}
    for key, desc in keys.items():
        file = folder / f"{key}.npy"
        try:
            arr = layout.open_npy(file)
        except CorruptFileError as e:
            problems.append(Problem(str(file), e.problem, eid))
            continue
        want_shape, want_dtype = tuple(desc.get("shape", ())), desc.get("dtype")
        if arr.shape != want_shape or arr.dtype.name != want_dtype:
            problems.append(
                Problem(str(file), f"holds {arr.dtype.name}{list(arr.shape)}, "
                        f"meta.json says {want_dtype}{list(want_shape)}", eid)
            )
            continue
        if arr.shape[0] != length:
            problems.append(Problem(str(file), f"has {arr.shape[0]} steps, meta.json says {length}", eid))
            continue
        arrays[key] = arr
    extra = sorted(p.name for p in folder.glob("*.npy") if p.stem not in keys)
    for name in extra:
        problems.append(Problem(str(folder / name), "file not listed in meta.json", eid))
    if problems:
        return problems
    try:
        validate_episode(arrays)
        if spec is not None:
            check_against_spec(arrays, spec, "the store spec")
    except EpisodeError as e:
        key = _key_in(str(e), arrays)
        where = folder / f"{key}.npy" if key else folder
        problems.append(Problem(str(where), str(e), eid))
    return problems


def _key_in(message: str, arrays: dict[str, np.ndarray]) -> str | None:
    for key in sorted(arrays, key=len, reverse=True):
        if f"'{key}'" in message:
            return key
    return None


def info(path: str | Path) -> dict[str, Any]:
    """Summary of a store: episodes, steps, spec, per-key stats, splits, lengths, size on disk."""
    store = path if isinstance(path, EpisodeStore) else EpisodeStore(path, "r")
    lengths = np.array([store.length(e) for e in store.ids()], dtype=np.int64)
    splits: dict[str, dict[str, int]] = {}
    for eid in store.ids():
        name = store.split_of(eid) or "none"
        s = splits.setdefault(name, {"episodes": 0, "steps": 0})
        s["episodes"] += 1
        s["steps"] += store.length(eid)
    return {
        "path": str(store.root),
        "episodes": len(store),
        "steps": store.num_steps,
        "spec": store.spec,
        "lengths": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "max": int(lengths.max()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
        },
        "splits": splits,
        "stats": store.stats(),
        "size_bytes": store.size_bytes(),
        "skipped": dict(store.skipped),
    }
