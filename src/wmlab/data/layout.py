"""On-disk layout of an episode store, and the few file operations that make it crash-safe.

::

    ROOT/
      store.json                 {"format": "wmlab-episode-store", "version": 1, "spec": {...} | null}
      .lock                      flock'ed only while the first episode fixes the spec
      episodes/
        20261121T153012123456789-0004242-a1b2c3/     one committed episode (id sorts by creation time)
          image.npy  action.npy  reward.npy  is_first.npy  ...   one uncompressed .npy per key
          meta.json              length, keys (dtype/shape), per-key stats, user metadata
        .tmp-<host>-<pid>-<id>/  an episode being written (or left by a crash): readers skip dot-names

An episode is written into its ``.tmp-`` folder and then renamed to its id: ``rename`` is atomic on
POSIX file systems, so a reader sees a whole episode or nothing, and a killed writer (even SIGKILL)
loses only the episode it was writing. Arrays are plain ``.npy`` so they can be memory-mapped with
``np.load(mmap_mode="r", allow_pickle=False)`` and a window of steps is read without decoding anything.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "wmlab-episode-store"
FORMAT_VERSION = 1
HEADER = "store.json"
EPISODES = "episodes"
META = "meta.json"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
STALE_TEMP_S = 3600.0  # a temp folder this old cannot belong to a live writer (commits take seconds)

_last_ns = 0


class StoreError(ValueError):
    """A store cannot be used as asked (read-only, newer format, folder that is not a store)."""


_REPAIR = "`wmlab data verify <store>` lists every damaged episode; re-import or delete its folder"


class CorruptFileError(ValueError):
    """A file of a committed episode is missing, truncated or inconsistent; the message names it."""

    def __init__(self, path: str | Path, problem: str | None = None) -> None:
        # One argument is a whole message: how a DataLoader worker's error is raised again in the main process.
        self.path, self.problem = (Path(path), problem) if problem is not None else (None, str(path))
        super().__init__(f"{path}: {problem}" if problem is not None else str(path))


class StoreNotFoundError(FileNotFoundError):
    """No episode store at the given path."""


def new_episode_id() -> str:
    """A unique id that sorts by creation time: UTC time to the nanosecond, pid, random suffix."""
    global _last_ns
    ns = max(time.time_ns(), _last_ns + 1)  # strictly increasing within a process
    _last_ns = ns
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 1_000_000_000))
    return f"{stamp}{ns % 1_000_000_000:09d}-{os.getpid():07d}-{secrets.token_hex(3)}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def temp_name(eid: str) -> str:
    return f"{TMP_PREFIX}{_host()}-{os.getpid()}-{eid}"


def is_episode_name(name: str) -> bool:
    return not name.startswith(".")


def write_episode_dir(episodes_dir: Path, eid: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write arrays + meta.json into a temp folder, then rename it to ``episodes_dir/eid`` (the commit)."""
    tmp = episodes_dir / temp_name(eid)
    final = episodes_dir / eid
    tmp.mkdir(parents=True)
    try:
        for key, arr in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        with open(tmp / META, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object or raise :class:`CorruptFileError` naming the file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CorruptFileError(path, "file is missing; run `wmlab data verify` on the store") from None
    except (OSError, ValueError) as e:
        raise CorruptFileError(path, f"unreadable JSON ({e}); the file is truncated or corrupt: {_REPAIR}") from None
    if not isinstance(data, dict):
        raise CorruptFileError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def write_json_atomic(path: Path, data: dict[str, Any], exclusive: bool = False) -> bool:
    """Write JSON via a temp file. ``exclusive``: only if ``path`` does not exist yet (returns False if it did)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(3)}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails if path exists: no writer overwrites another's header
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
            return True
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def open_npy(path: Path) -> np.ndarray:
    """Memory-map one ``.npy`` read-only, or raise :class:`CorruptFileError` naming the file."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise CorruptFileError(path, "file is missing; run `wmlab data verify` on the store") from None
    except (OSError, ValueError, EOFError) as e:
        raise CorruptFileError(path, f"unreadable .npy ({e}); the file is truncated or corrupt: {_REPAIR}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_dirs(episodes_dir: Path, max_age_s: float = STALE_TEMP_S) -> list[Path]:
    """Temp folders left by crashed writers: their process on this host is gone, or they are very old."""
    out = []
    host = _host()
    now = time.time()
    try:
        entries = list(os.scandir(episodes_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        parts = entry.name[len(TMP_PREFIX) :].split("-")
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # committed or cleaned meanwhile
        mine = len(parts) >= 2 and parts[0] == host and parts[1].isdigit()
        dead = mine and not _pid_alive(int(parts[1]))
        if dead or age > max_age_s:
            out.append(Path(entry.path))
    return out


def remove_stale_temp(episodes_dir: Path) -> list[Path]:
    removed = stale_temp_dirs(episodes_dir)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
