"""Episodes on disk: the schema, the store, random-window loading, import/export, verification.

::

    from wmlab.data import EpisodeStore, make_flags, make_loader, import_data, export_data, info
    from wmlab.data.verify import verify

    store = EpisodeStore("data/walker", mode="a")
    store.add({"image": frames, "action": actions, "reward": rewards, **make_flags(T, terminal=False)},
              meta={"env": "dmc:walker_walk", "split": "train"})
    for batch in make_loader(store, batch_size=16, length=64, workers=2):
        ...  # batch["image"]: uint8 [16, 64, H, W, 3]

``make_loader`` (torch) and the format modules load on first use, so ``import wmlab.data`` is cheap.
"""

from __future__ import annotations

from typing import Any

from wmlab.data.layout import CorruptFileError, StoreError, StoreNotFoundError
from wmlab.data.schema import EpisodeError, SpecMismatchError, make_flags, validate_episode
from wmlab.data.store import EpisodeStore
from wmlab.data.writer import EpisodeWriter

_LAZY = {
    "make_loader": "wmlab.data.loader",
    "NoWindowsError": "wmlab.data.loader",
    "import_data": "wmlab.data.formats",
    "export_data": "wmlab.data.formats",
    "read_episodes": "wmlab.data.formats",
    "list_formats": "wmlab.data.formats",
    "FormatError": "wmlab.data.formats",
    "info": "wmlab.data.verify",
    "Problem": "wmlab.data.verify",
}

__all__ = [
    "CorruptFileError",
    "EpisodeError",
    "EpisodeStore",
    "EpisodeWriter",
    "SpecMismatchError",
    "StoreError",
    "StoreNotFoundError",
    "make_flags",
    "validate_episode",
    "verify",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("verify", "loader", "formats"):  # submodules
        return importlib.import_module(f"wmlab.data.{name}")
    raise AttributeError(f"module 'wmlab.data' has no attribute {name!r}")
