"""Random windows of episodes as batches of tensors, from one or several DataLoader workers.

Every valid (episode, start) pair is equally likely, so an episode of length L contributes
L - length + 1 windows; episodes shorter than ``length`` are skipped. Batch ``i`` of the stream is
drawn from ``(seed, i)`` alone, whichever worker draws it, so a given seed and store give the same
batches every run, with any number of workers, and a loader restored from its ``state_dict`` (as the
trainer does on resume) continues the stream where it stopped. Workers re-list the store every
``refresh_s`` seconds, so online RL sees newly written episodes.

Batches are dicts of tensors shaped [B, T, ...]: image uint8 [B,T,H,W,3], bools as torch.bool,
everything else as stored. Windows are assembled in the worker straight into one array per key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wmlab.data.store import EpisodeStore


class NoWindowsError(ValueError):
    """The store (or split) has no episode long enough for the requested window length."""


class WindowIndex:
    """All valid (episode, start) pairs of a store, sampled uniformly without listing them."""

    def __init__(self, store: EpisodeStore, length: int, split: str | None = None) -> None:
        self.store, self.length, self.split = store, int(length), split
        self.update()

    def update(self) -> None:
        eids = self.store.ids(self.split)
        lengths = np.array([self.store.length(e) for e in eids], dtype=np.int64)
        keep = lengths >= self.length
        self.eids = [e for e, k in zip(eids, keep) if k]
        self.counts = lengths[keep] - self.length + 1
        self.cum = np.cumsum(self.counts)
        self._longest = int(lengths.max()) if len(lengths) else 0
        self._total_eps = len(eids)

    @property
    def num_windows(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    def check(self) -> None:
        if self.num_windows:
            return
        where = f"{self.store.root}" + (f" (split={self.split!r})" if self.split is not None else "")
        if not self._total_eps:
            raise NoWindowsError(f"no episodes in {where}; collect or import data first")
        raise NoWindowsError(
            f"no episode in {where} has {self.length} steps (longest of {self._total_eps}: {self._longest}); "
            f"lower length= or collect longer episodes"
        )

    def sample(self, rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray]:
        self.check()
        flat = rng.integers(0, self.num_windows, size=n)
        idx = np.searchsorted(self.cum, flat, side="right")
        starts = flat - (self.cum[idx] - self.counts[idx])
        return [self.eids[i] for i in idx], starts


class WindowDataset(IterableDataset):
    """Infinite stream of batches of random windows (one batch per item: use ``batch_size=None``)."""

    def __init__(
        self,
        store: EpisodeStore | str | Path,
        batch_size: int,
        length: int,
        keys: Iterable[str] | None = None,
        seed: int = 0,
        split: str | None = None,
        refresh_s: float = 10.0,
    ) -> None:
        super().__init__()
        # A store object travels to workers without its open maps (see EpisodeStore.__getstate__).
        self.store = store if isinstance(store, EpisodeStore) else None
        self.root = str(store.root if isinstance(store, EpisodeStore) else store)
        self.batch_size, self.length = int(batch_size), int(length)
        self.keys = None if keys is None else list(keys)
        self.seed, self.split, self.refresh_s = int(seed), split, float(refresh_s)
        self.start = 0  # index of the first batch the stream yields

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        store = self.store if self.store is not None else EpisodeStore(self.root, "r")
        # The DataLoader takes batches from its workers in turn, so worker w makes batches w, w+W, w+2W...
        batch_index = self.start + worker
        index = WindowIndex(store, self.length, self.split)
        keys = store.resolve_keys(self.keys)
        steps = store.spec["steps"]
        last_refresh = time.monotonic()
        while True:
            if self.refresh_s >= 0 and time.monotonic() - last_refresh >= self.refresh_s:
                store.refresh()
                index.update()
                last_refresh = time.monotonic()
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, batch_index]))
            batch_index += workers
            eids, starts = index.sample(rng, self.batch_size)
            # [B, T, ...] per key. In a worker the tensors are born in shared memory, so handing the
            # batch to the main process costs no copy.
            batch = {k: _empty((self.batch_size, self.length, *steps[k][1]), steps[k][0], info is not None)
                     for k in keys}
            views = {k: v.numpy() for k, v in batch.items()}
            for i, (eid, start) in enumerate(zip(eids, starts)):
                store.window(eid, int(start), self.length, keys, out={k: v[i] for k, v in views.items()})
            yield batch


def _empty(shape: tuple[int, ...], dtype: str, shared: bool) -> torch.Tensor:
    proto = torch.from_numpy(np.empty(0, dtype=np.dtype(dtype)))
    if not shared:
        return proto.new_empty(shape)
    # Allocate straight into shared memory (as torch's default_collate does in workers), so sending
    # the batch to the main process copies nothing; fall back to the public (copying) call.
    try:
        storage = proto._typed_storage()._new_shared(int(np.prod(shape)), device=proto.device)
        return proto.new(storage).view(shape)
    except AttributeError:
        return proto.new_empty(shape).share_memory_()


class WindowLoader:
    """A :class:`~torch.utils.data.DataLoader` over a :class:`WindowDataset` that counts the batches it has
    handed out: ``state_dict()`` is that position, and ``load_state_dict()`` before the first batch makes
    the stream start there."""

    def __init__(self, dataset: WindowDataset, **loader_kwargs: Any) -> None:
        self.dataset = dataset
        self.position = 0
        self._kwargs = loader_kwargs
        self._loader: DataLoader | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._loader is None:
            self.dataset.start = self.position
            self._loader = DataLoader(self.dataset, **self._kwargs)
        for batch in self._loader:
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._loader is not None:
            raise RuntimeError("WindowLoader.load_state_dict must come before the first batch")
        self.position = int(state["position"])


def make_loader(
    store_or_path: EpisodeStore | str | Path,
    batch_size: int,
    length: int,
    workers: int = 0,
    keys: Iterable[str] | None = None,
    seed: int = 0,
    split: str | None = None,
    *,
    refresh_s: float = 10.0,
    pin_memory: bool = False,
    prefetch: int = 2,
    context: str | None = None,
) -> WindowLoader:
    """Infinite iterable of batches ``{key: Tensor[B, T, ...]}`` of random windows of ``length`` steps.

    ``keys`` limits what is read (e.g. leave out "image" for a proprio model); ``split`` samples only
    episodes whose metadata has that split; ``refresh_s`` is how often workers look for new episodes
    (negative: never); ``context`` picks the worker start method ("fork", "spawn", "forkserver";
    default: the platform's). Raises :class:`NoWindowsError` now if no episode is long enough."""
    store = store_or_path if isinstance(store_or_path, EpisodeStore) else EpisodeStore(store_or_path, "r")
    if batch_size < 1 or length < 1:
        raise ValueError(f"batch_size and length must be >= 1, got batch_size={batch_size}, length={length}")
    WindowIndex(store, length, split).check()
    store.resolve_keys(keys)  # unknown keys fail here, naming the key
    dataset = WindowDataset(store, batch_size, length, keys, seed, split, refresh_s)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch, persistent_workers=True, multiprocessing_context=context)
    # Its own generator: starting the iteration then draws the workers' base seed from it, not from the global
    # RNG, which would shift every later draw of a resumed run (the trainer restores the global RNG).
    generator = torch.Generator().manual_seed(int(seed))
    return WindowLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory, generator=generator,
                        **kwargs)
