"""Step-by-step episode writing for online collection.

An agent interacting with an env produces one step at a time. :class:`EpisodeWriter` buffers the
steps of the current episode in memory and commits the whole episode atomically (one
:meth:`EpisodeStore.add`) when a step arrives with ``is_last=True``; then it starts the next episode.
A crash loses only the episode in progress, and readers never see half an episode. Use one writer
per env stream (e.g. one per env of a vectorised env)::

    writer = store.writer({"env": "dmc:walker_walk", "policy": "random"})
    obs = env.reset()
    while collecting:
        act = policy(obs)
        eid = writer.add({**obs, "action": act, "reward": r, "is_last": done, "is_terminal": term})
        # eid is the committed episode id on the last step, else None

Scalar/list step values are cast to the schema dtypes (reward → float32, flags → bool, integer
actions → int64, float actions/proprio → float32); images must already be uint8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from wmlab.data.schema import EpisodeError

if TYPE_CHECKING:
    from wmlab.data.store import EpisodeStore

_FLAGS = ("is_first", "is_last", "is_terminal")


def _cast(key: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if key in _FLAGS:
        return arr.astype(bool)
    if key == "reward":
        return arr.astype(np.float32)
    if key == "action":
        return arr.astype(np.int64) if arr.dtype.kind in "iub" else arr.astype(np.float32)
    if key == "proprio":
        return arr.astype(np.float32)
    return np.array(arr)  # own copy: envs reuse their buffers


class EpisodeWriter:
    """Buffers one episode's steps and commits it to ``store`` on the step with ``is_last``."""

    def __init__(self, store: "EpisodeStore", meta: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.meta = dict(meta or {})
        self._steps: list[dict[str, np.ndarray]] = []
        self._pending_meta: dict[str, Any] = {}

    def __len__(self) -> int:
        """Steps buffered for the episode in progress."""
        return len(self._steps)

    def add(self, step: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> str | None:
        """Append one step; on ``is_last`` commit and return the episode id, else return None.

        Missing flags default to the obvious: ``is_first`` on the first buffered step, ``is_last`` and
        ``is_terminal`` False. ``meta`` is merged into this episode's metadata."""
        row = {k: _cast(k, v) for k, v in step.items()}
        row.setdefault("is_first", np.asarray(not self._steps))
        row.setdefault("is_last", np.asarray(False))
        row.setdefault("is_terminal", np.asarray(False))
        if self._steps and set(row) != set(self._steps[0]):
            raise EpisodeError(
                f"step {len(self._steps)} has keys {sorted(row)} "
                f"but the episode's first step had {sorted(self._steps[0])}"
            )
        self._steps.append(row)
        if meta:
            self._pending_meta.update(meta)
        if bool(row["is_last"]):
            return self.commit()
        return None

    def commit(self, meta: Mapping[str, Any] | None = None) -> str:
        """Store the buffered steps as one episode now. If the last step lacks ``is_last`` (collection
        stopped mid-episode), it is marked as a truncation: ``is_last`` True, ``is_terminal`` False."""
        if not self._steps:
            raise EpisodeError("no steps buffered: add() at least one step before commit()")
        episode = {k: np.stack([s[k] for s in self._steps]) for k in self._steps[0]}
        if not episode["is_last"][-1]:
            episode["is_last"][-1] = True
            episode["is_terminal"][-1] = False
        full_meta = {**self.meta, **self._pending_meta, **(meta or {})}
        eid = self.store.add(episode, full_meta)  # validates; on error the buffer is kept for inspection
        self.discard()
        return eid

    def discard(self) -> None:
        """Drop the episode in progress."""
        self._steps = []
        self._pending_meta = {}

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        # An unfinished episode is dropped, like a crash would: only complete episodes are stored.
        self.discard()
