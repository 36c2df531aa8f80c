"""Registry of dataset formats: import into an :class:`EpisodeStore`, export out of one.

A format module registers a reader (``src → (episode, meta)`` pairs, with a cheap ``detect(src)``)
and/or a writer (``store → files``) under a name::

    @register_reader("dreamer", detect=looks_like_dreamer)
    def read_dreamer(src: Path, size=None, action_convention="auto") -> Iterator[tuple[dict, dict]]: ...

Modules are imported on first use, so heavy dependencies (minari, ffmpeg) load only when needed.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from wmlab.config import ConfigError, coerce
from wmlab.data.schema import EpisodeError
from wmlab.data.store import EpisodeStore

_MODULES = (
    "wmlab.data.importers.genie",
    "wmlab.data.importers.dreamer_npz",
    "wmlab.data.importers.video",
    "wmlab.data.exporters.dreamer_npz",
    "wmlab.data.exporters.genie",
    "wmlab.data.exporters.minari",
)
_READERS: dict[str, tuple[Callable[..., Iterator[tuple[dict, dict]]], Callable[[Path], bool] | None]] = {}
_WRITERS: dict[str, Callable[..., Path]] = {}
_loaded = False


class FormatError(ValueError):
    """Unknown format, undetectable source, bad option, or a source file that breaks the format."""


@dataclass
class ImportReport:
    """What :func:`import_data` did (also attached to the returned store as ``store.last_import``)."""

    added: int = 0
    skipped_existing: int = 0


def register_reader(name: str, detect: Callable[[Path], bool] | None = None) -> Callable:
    def deco(fn: Callable) -> Callable:
        _READERS[name] = (fn, detect)
        return fn

    return deco


def register_writer(name: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        _WRITERS[name] = fn
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_formats() -> dict[str, list[str]]:
    """``{"import": [...], "export": [...]}`` format names."""
    _load()
    return {"import": sorted(_READERS), "export": sorted(_WRITERS)}


def detect_format(src: str | Path) -> str:
    """Name of the first registered reader whose ``detect`` accepts ``src``."""
    _load()
    src = Path(src)
    for name, (_, detect) in _READERS.items():
        if detect is not None and detect(src):
            return name
    raise FormatError(f"cannot tell the format of {src}; pass format= one of {sorted(_READERS)}")


def options_of(fn: Callable) -> dict[str, tuple[Any, Any]]:
    """``{option: (type, default)}`` of a reader's or writer's keyword options."""
    hints = typing.get_type_hints(fn)
    return {n: (hints.get(n, Any), p.default) for n, p in inspect.signature(fn).parameters.items()
            if n not in ("src", "store", "out") and p.kind is p.POSITIONAL_OR_KEYWORD}


def typed_options(fn: Callable, opts: dict[str, Any], what: str) -> dict[str, Any]:
    """``opts`` checked against ``fn``'s options and converted to their annotated types, so that
    command-line strings work (``compress=false`` is False, ``stride=2`` is 2)."""
    known = options_of(fn)
    out = {}
    for key, value in opts.items():
        if key not in known:
            raise FormatError(f"{what} has no option {key!r}; valid options: {', '.join(known)}")
        tp = known[key][0]
        try:
            out[key] = value if tp is Any else coerce(value, tp, key)
        except ConfigError as e:
            raise FormatError(f"{what}: {e}") from None
    return out


def describe_formats() -> dict[str, dict[str, dict[str, Any]]]:
    """``{"import"|"export": {format: {option: default}}}`` for ``wmlab data import|export --help``."""
    _load()
    return {"import": {n: {k: d for k, (_, d) in options_of(fn).items() if k != "size"}
                       for n, (fn, _) in sorted(_READERS.items())},
            "export": {n: {k: d for k, (_, d) in options_of(fn).items()} for n, fn in sorted(_WRITERS.items())}}


def read_episodes(src: str | Path, format: str | None = None, **opts: Any) -> Iterator[tuple[dict, dict]]:
    """Iterate ``(episode, meta)`` pairs of a source without writing anything."""
    _load()
    src = Path(src).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"import source {src} does not exist; check the path (`wmlab data import --help` "
                                f"lists the formats it reads)")
    name = format or detect_format(src)
    if name not in _READERS:
        raise FormatError(f"unknown import format {name!r}; known: {sorted(_READERS)}")
    reader = _READERS[name][0]
    return reader(src, **typed_options(reader, opts, f"import format {name!r}"))


def import_data(
    src: str | Path,
    out: str | Path,
    format: str | None = None,
    size: Any = None,
    split: str | None = None,
    skip_existing: bool = True,
    **opts: Any,
) -> EpisodeStore:
    """Import ``src`` (format auto-detected unless given) into the store at ``out`` (created if needed).

    ``size`` resizes frames to (H, W); ``split`` tags every imported episode ("train"/"test");
    ``skip_existing`` skips sources already imported into ``out`` (so an interrupted import can be
    re-run). Format options (``opts``) are listed in each reader's docstring."""
    skip_existing = coerce(skip_existing, bool, "skip_existing")
    split = None if split is None else str(split)
    episodes = read_episodes(src, format, size=size, **opts)
    store = EpisodeStore(out, "a")
    seen = {store.meta(e).get("source") for e in store.ids()} if skip_existing and len(store) else set()
    report = ImportReport()
    for episode, meta in episodes:
        if skip_existing and meta.get("source") in seen:
            report.skipped_existing += 1
            continue
        if split is not None:
            meta["split"] = split
        try:
            store.add(episode, meta)
        except EpisodeError as e:
            raise type(e)(f"{meta.get('source', src)}: {e}") from None
        report.added += 1
    store.last_import = report
    return store


def export_data(store: EpisodeStore | str | Path, out: str | Path, format: str, **opts: Any) -> Path:
    """Write every episode of ``store`` to ``out`` in ``format``; returns the written path."""
    _load()
    if format not in _WRITERS:
        raise FormatError(f"unknown export format {format!r}; known: {sorted(_WRITERS)}")
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store, "r")
    writer = _WRITERS[format]
    return writer(store, Path(out).expanduser(), **typed_options(writer, opts, f"export format {format!r}"))
