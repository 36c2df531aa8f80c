"""Trainable jobs by name: ``wmlab train <job>``.

A job is a config dataclass, presets (dicts holding only their differences from the defaults), a ``run``
function that trains in a run folder, and an ``evaluate`` function that reads a finished run folder.
Jobs are imported lazily, so a job's heavy dependencies load only when it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from wmlab.config import ConfigError


def doc_field(text: str, default: Any = None, factory: Any = None) -> Any:
    """A config dataclass field with its one-line meaning (shown by ``--help``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class Job:
    name: str
    config_cls: type
    run: Callable[[Any], Any]
    evaluate: Callable[..., Any] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # ``method=<name>`` settings, applied over the preset and under the command line's own settings.
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Pools the evaluations of several runs (seeds of a setting) into one summary per setting.
    pool: Callable[[list[dict[str, Any]]], Any] | None = None


_MODULES = {
    "dreamer": "wmlab.jobs.dreamer",
    "genie": "wmlab.jobs.genie",
    "pretrain": "wmlab.jobs.pretrain",
    "world_model": "wmlab.jobs.world_model",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Job:
    if name not in _MODULES:
        raise ConfigError(f"unknown job {name!r}; jobs: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).JOB
