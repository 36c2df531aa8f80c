"""EpisodeStore: an append-only folder of episodes, readable while other processes write to it.

See :mod:`wmlab.data.layout` for the files. Memory does not grow with the store: the store keeps only
ids, lengths and splits in memory, arrays are read through memory maps, and at most ``cache_size``
maps are open at a time (least recently used are dropped). Maps are opened lazily in the process that
reads, so a store can be handed to forked or spawned DataLoader workers.
"""

from __future__ import annotations

import bisect
import copy
import fcntl
import os
import shutil
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from wmlab.data import layout
from wmlab.data.layout import CorruptFileError, StoreError, StoreNotFoundError
from wmlab.data.schema import EpisodeError, check_against_spec, check_meta, spec_from_episode, validate_episode
from wmlab.data.stats import RunningStats, episode_stats

if TYPE_CHECKING:
    from wmlab.data.writer import EpisodeWriter

__all__ = ["EpisodeStore", "StoreError", "CorruptFileError", "StoreNotFoundError"]


@dataclass(frozen=True)
class Excluding:
    """A split selector for :meth:`EpisodeStore.ids` (and the loaders): every episode whose split is not
    ``split``, unsplit episodes included, e.g. the training data of a store collected without a split
    beside a held-out ``test`` split."""

    split: str

    def __repr__(self) -> str:
        return f"not {self.split!r}"


def selects(selector: str | Excluding | None, split: str | None) -> bool:
    """Whether ``selector`` (a split name, :class:`Excluding`, or None for every episode) picks episodes of
    ``split``."""
    if selector is None:
        return True
    if isinstance(selector, Excluding):
        return split != selector.split
    return split == selector


class EpisodeStore:
    """Append-only episode storage with random access to windows of steps.

    ``mode="r"`` opens an existing store (``FileNotFoundError`` naming the path if there is none);
    ``mode="a"`` creates it if needed and allows :meth:`add`. The first episode fixes the spec (image
    size, action kind and size, keys); later episodes that differ are rejected before anything is written.
    Episodes written by other processes appear after :meth:`refresh`.
    """

    def __init__(self, root: str | Path, mode: str = "r", *, cache_size: int = 128) -> None:
        if mode not in ("r", "a"):
            raise StoreError(f"mode must be 'r' (read) or 'a' (create/append), got {mode!r}")
        self.root = Path(root).expanduser()
        self.mode = mode
        self.cache_size = max(int(cache_size), 1)
        self._episodes_dir = self.root / layout.EPISODES
        if mode == "a":
            self._create()
        elif not (self.root / layout.HEADER).is_file():
            what = ("does not exist" if not self.root.exists()
                    else f"has no {layout.HEADER}, so it is not an episode store")
            raise StoreNotFoundError(
                f"episode store {self.root} {what}; create one with `wmlab collect env=... out={self.root}` "
                f"or `wmlab data import SRC out={self.root}`"
            )
        self._spec: dict[str, Any] | None = None
        self._read_header()
        self._ids: list[str] = []
        self._lengths: dict[str, int] = {}
        self._splits: dict[str, str | None] = {}
        self._num_steps = 0
        self._stats = RunningStats()
        self.skipped: dict[str, str] = {}  # episode id -> why it was left out (corrupt meta.json)
        self._cleaned = False
        self._reset_caches()
        self.refresh()

    # ----------------------------------------------------------------- creation / header
    def _create(self) -> None:
        header = self.root / layout.HEADER
        if not header.exists():
            ours = (layout.EPISODES, layout.HEADER, layout.LOCK)  # a concurrent creator may be halfway
            if self.root.exists() and any(n not in ours and not n.startswith(".") for n in os.listdir(self.root)):
                raise StoreError(
                    f"{self.root} exists and is not an episode store (no {layout.HEADER}); "
                    "pick a new or empty folder for out="
                )
            self.root.mkdir(parents=True, exist_ok=True)
            data = {"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION, "spec": None,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            layout.write_json_atomic(header, data, exclusive=True)
        self._episodes_dir.mkdir(exist_ok=True)

    def _read_header(self) -> None:
        path = self.root / layout.HEADER
        header = layout.read_json(path)
        if header.get("format") != layout.FORMAT_NAME:
            raise CorruptFileError(path, f"not a wmlab episode store header (format={header.get('format')!r})")
        if int(header.get("version", 0)) > layout.FORMAT_VERSION:
            raise StoreError(
                f"{self.root} was written by a newer wmlab (format version {header['version']} > "
                f"{layout.FORMAT_VERSION}); upgrade wmlab to read it"
            )
        self._spec = header.get("spec")

    def _ensure_spec(self, episode: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
        """Fix the store spec from the first episode; under a file lock so two first writers agree."""
        if self._spec is None:
            self._read_header()
        if self._spec is None:
            with open(self.root / layout.LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    header = layout.read_json(self.root / layout.HEADER)
                    if header.get("spec") is None:
                        header["spec"] = spec_from_episode(episode, meta)
                        layout.write_json_atomic(self.root / layout.HEADER, header)
                    self._spec = header["spec"]
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        return self._spec

    # ----------------------------------------------------------------- process-local caches
    def _reset_caches(self) -> None:
        self._pid = os.getpid()
        self._maps: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._metas: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        state["_metas"] = OrderedDict()
        return state

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:  # forked: never share maps across processes
            self._reset_caches()

    # ----------------------------------------------------------------- listing
    def refresh(self) -> None:
        """Pick up episodes committed (by any process) since the last refresh."""
        if self._spec is None:
            self._read_header()
        try:
            names = os.listdir(self._episodes_dir)
        except FileNotFoundError:
            return
        new = sorted(n for n in names if layout.is_episode_name(n) and n not in self._lengths and n not in self.skipped)
        for eid in new:
            path = self._episodes_dir / eid / layout.META
            try:
                info = layout.read_json(path)
                length = info["length"]
                if not isinstance(length, int) or length < 1 or not isinstance(info.get("keys"), dict):
                    raise CorruptFileError(path, "'length'/'keys' missing or invalid")
            except (CorruptFileError, KeyError) as e:
                msg = str(e) if isinstance(e, CorruptFileError) else f"{path}: missing field {e}"
                self.skipped[eid] = msg
                warnings.warn(f"skipping episode {eid}: {msg} (see `wmlab data verify {self.root}`)", stacklevel=2)
                continue
            self._register(eid, info)

    def _register(self, eid: str, info: dict[str, Any]) -> None:
        bisect.insort(self._ids, eid)
        self._lengths[eid] = int(info["length"])
        split = (info.get("meta") or {}).get("split")
        self._splits[eid] = split if isinstance(split, str) else None
        self._num_steps += int(info["length"])
        self._stats.add(info.get("stats") or {})

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, eid: object) -> bool:
        return eid in self._lengths

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, mode={self.mode!r}, episodes={len(self)}, steps={self.num_steps})"

    @property
    def num_steps(self) -> int:
        return self._num_steps

    @property
    def spec(self) -> dict[str, Any] | None:
        """Image shape, action kind/size, proprio size, keys (and per-key dtype/shape under "steps");
        ``None`` while the store holds no episode."""
        if self._spec is None:
            return None
        spec = copy.deepcopy(self._spec)
        spec["image"] = tuple(spec["image"])
        return spec

    def ids(self, split: str | Excluding | None = None) -> list[str]:
        """Episode ids in creation order; ``split`` keeps those whose metadata has that "split"
        (:class:`Excluding`: those that have any other split, or none)."""
        if split is None:
            return list(self._ids)
        return [e for e in self._ids if selects(split, self._splits[e])]

    def splits(self) -> dict[str | None, int]:
        """Number of episodes per split (``None``: no split given)."""
        out: dict[str | None, int] = {}
        for eid in self._ids:
            out[self._splits[eid]] = out.get(self._splits[eid], 0) + 1
        return out

    def split_of(self, eid: str) -> str | None:
        """The "split" in an episode's metadata (None if it has none)."""
        self._known(eid)
        return self._splits[eid]

    def length(self, eid: str) -> int:
        self._known(eid)
        return self._lengths[eid]

    def _known(self, eid: str) -> None:
        if eid not in self._lengths:
            hint = f" ({self.skipped[eid]})" if eid in self.skipped else " (call refresh() to see new episodes)"
            raise KeyError(f"no episode {eid!r} in {self.root}{hint}")

    # ----------------------------------------------------------------- reading
    def info(self, eid: str) -> dict[str, Any]:
        """The whole parsed ``meta.json`` of one episode (length, keys, stats, user metadata)."""
        self._known(eid)
        self._check_pid()
        info = self._metas.get(eid)
        if info is None:
            info = layout.read_json(self._episodes_dir / eid / layout.META)
            self._metas[eid] = info
            if len(self._metas) > 4 * self.cache_size:
                self._metas.popitem(last=False)
        else:
            self._metas.move_to_end(eid)
        return copy.deepcopy(info)

    def meta(self, eid: str) -> dict[str, Any]:
        """User metadata of one episode (env id, seed, policy, caption, split, ...)."""
        return self.info(eid).get("meta") or {}

    def resolve_keys(self, keys: Iterable[str] | None = None) -> list[str]:
        """``keys`` checked against the spec (KeyError naming an unknown one); None means all keys."""
        if self._spec is None:
            raise StoreError(f"store {self.root} holds no episodes yet")
        if keys is None:
            return list(self._spec["keys"])
        keys = list(keys)
        for key in keys:
            if key not in self._spec["steps"]:
                raise KeyError(f"store {self.root} has no key {key!r} (keys: {self._spec['keys']})")
        return keys

    def _array(self, eid: str, key: str) -> np.ndarray:
        self._check_pid()
        cached = self._maps.get((eid, key))
        if cached is not None:
            self._maps.move_to_end((eid, key))
            return cached
        path = self._episodes_dir / eid / f"{key}.npy"
        arr = layout.open_npy(path)
        dtype, shape = self._spec["steps"][key]
        want = (self._lengths[eid], *shape)
        if arr.shape != want or arr.dtype != np.dtype(dtype):
            raise CorruptFileError(
                path,
                f"holds {arr.dtype}{list(arr.shape)}, expected {dtype}{list(want)} from meta.json and the "
                "store spec; the file is corrupt"
            )
        self._maps[(eid, key)] = arr
        if len(self._maps) > self.cache_size:
            self._maps.popitem(last=False)
        return arr

    def load(self, eid: str, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Whole episode as read-only memory maps (nothing is read until it is indexed)."""
        self._known(eid)
        return {k: self._array(eid, k) for k in self.resolve_keys(keys)}

    def window(
        self,
        eid: str,
        start: int,
        length: int,
        keys: Iterable[str] | None = None,
        out: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Copy of steps ``[start, start+length)``; ``out`` (arrays of shape [length, ...]) is filled in place."""
        total = self.length(eid)
        if start < 0 or length < 1 or start + length > total:
            raise IndexError(f"window [{start}, {start + length}) is outside episode {eid} of {total} steps")
        if keys is None and out is not None:
            keys = list(out)
        res = {}
        for key in self.resolve_keys(keys):
            src = self._array(eid, key)[start : start + length]
            if out is not None and key in out:
                out[key][...] = src
                res[key] = out[key]
            else:
                res[key] = np.array(src)
        return res

    def stats(self) -> dict[str, dict[str, Any]]:
        """Store-wide per-key mean/std/min/max/count (per channel for image, per feature for vectors)."""
        return self._stats.summary()

    # ----------------------------------------------------------------- writing
    def add(self, episode: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> str:
        """Validate ``episode`` and commit it atomically; returns its id.

        Raises :class:`EpisodeError` (schema) or :class:`SpecMismatchError` (differs from the store)
        before writing anything."""
        if self.mode != "a":
            raise StoreError(f"store {self.root} is open read-only; open it with EpisodeStore(path, mode='a')")
        ep = validate_episode(episode)
        user_meta = check_meta(meta)
        split = user_meta.get("split")
        if split is not None and not isinstance(split, str):
            raise EpisodeError(f"episode metadata 'split' must be a string like 'train' or 'test', got {split!r}")
        spec = self._ensure_spec(ep, user_meta)
        check_against_spec(ep, spec, f"store {self.root}")
        if not self._cleaned:
            layout.remove_stale_temp(self._episodes_dir)
            self._cleaned = True
        eid = layout.new_episode_id()
        length = len(ep["image"])
        info = {
            "id": eid,
            "length": length,
            "keys": {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in sorted(ep.items())},
            "stats": episode_stats(ep),
            "meta": user_meta,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "format_version": layout.FORMAT_VERSION,
        }
        layout.write_episode_dir(self._episodes_dir, eid, ep, info)
        self._register(eid, info)
        return eid

    def remove(self, eids: Iterable[str]) -> None:
        """Delete committed episodes (e.g. an online run's episodes collected after the checkpoint it resumes
        from). Each folder is first renamed out of sight, so a concurrent reader never sees half of one."""
        if self.mode != "a":
            raise StoreError(f"store {self.root} is open read-only; open it with EpisodeStore(path, mode='a')")
        eids = list(eids)
        for eid in eids:
            self._known(eid)
        for eid in eids:
            gone = self._episodes_dir / layout.temp_name(eid)
            os.replace(self._episodes_dir / eid, gone)
            shutil.rmtree(gone, ignore_errors=True)
        self._ids, self._lengths, self._splits, self._num_steps = [], {}, {}, 0
        self._stats = RunningStats()
        self._reset_caches()
        self.refresh()

    def writer(self, meta: Mapping[str, Any] | None = None) -> "EpisodeWriter":
        """A step-by-step writer for online collection (see :class:`wmlab.data.writer.EpisodeWriter`)."""
        from wmlab.data.writer import EpisodeWriter

        return EpisodeWriter(self, meta)

    def size_bytes(self) -> int:
        """Bytes on disk of all committed episodes."""
        total = 0
        for eid in self._ids:
            with os.scandir(self._episodes_dir / eid) as it:
                total += sum(e.stat().st_size for e in it if e.is_file())
        return total


def open_training_store(path: str | Path, how_to_make: str) -> EpisodeStore:
    """The store a job reads its ``data=`` from, with one-line errors for a missing ``data=`` or no episodes.

    ``how_to_make`` completes both messages with the command that makes such a store (``wmlab collect ...``).
    """
    if not path:
        raise StoreNotFoundError(f"no data given: pass data=<episode store> ({how_to_make})")
    store = EpisodeStore(path, mode="r")
    if store.spec is None:
        raise StoreError(f"store {store.root} holds no episodes yet ({how_to_make})")
    return store
