"""Typed configs: dataclass defaults, presets that hold only their differences, ``a.b.c=value`` overrides.

Every job's config is a tree of dataclasses whose fields carry the defaults and, in a comment or
``field(metadata={"doc": ...})``, their meaning. A preset is a flat dict of dotted keys to values; it is
applied on top of the defaults, then the user's ``key=value`` overrides on top of that. An unknown key is a
:class:`ConfigError` that names the key and the closest valid ones. The resolved tree is saved as YAML in
the run folder and can be loaded back into the same dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config key or value; the message names it and says how to fix it."""


class MissingDependencyError(ImportError):
    """An optional package a feature needs is not installed; the message gives the install command."""


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a.b": "1", "c": "x"}``."""
    out: dict[str, str] = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. steps=100)")
        key, value = arg.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"argument {arg!r} has an empty key")
        out[key] = value
    return out


def field_names(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config tree."""
    names = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            names += field_names(value, f"{prefix}{f.name}.")
        else:
            names.append(f"{prefix}{f.name}")
    return names


def _unknown(key: str, cfg: Any, prefix: str = "") -> ConfigError:
    names = field_names(cfg, prefix)
    key = prefix + key
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(names)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a string from the command line or a YAML scalar) to type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {key!r}: cannot parse {value!r}")
    if origin is typing.Literal:
        if isinstance(value, str):
            for arg in args:
                if str(arg) == value:
                    return arg
        if value in args:
            return value
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            value = yaml.safe_load(text) if text.startswith(("[", "(")) else [v for v in text.split(",") if v]
            if isinstance(value, str):
                value = [value]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"config key {key!r} needs {len(args)} values, got {value!r}")
            return tuple(coerce(v, a, key) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return origin(coerce(v, inner, key) for v in value)
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} needs a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return yaml.safe_load(value) if isinstance(value, str) else value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key {key!r} needs true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}") from None
    if tp is str:
        return str(value)
    if isinstance(tp, type) and issubclass(tp, Path):
        return Path(value)
    return value


def _resolve_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - forward refs that cannot be resolved
        return {f.name: f.type for f in dataclasses.fields(cls)}


def apply(cfg: T, overrides: Mapping[str, Any], _prefix: str = "") -> T:
    """Return a copy of ``cfg`` with dotted ``overrides`` applied and type-checked."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        names = {f.name for f in dataclasses.fields(cfg)}
        if head not in names:
            raise _unknown(key, cfg, _prefix)
        if rest:
            nested.setdefault(head, {})
            if not isinstance(nested[head], dict):
                raise ConfigError(f"config key {head!r} is set both whole and by field")
            nested[head][rest] = value
        else:
            nested[head] = ("__whole__", value)
    hints = _resolve_hints(type(cfg))
    changes = {}
    for head, value in nested.items():
        current = getattr(cfg, head)
        if isinstance(value, dict):
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"config key {_prefix + head!r} has no sub-keys ({', '.join(value)})")
            changes[head] = apply(current, value, f"{_prefix}{head}.")
        else:
            raw = value[1]
            if dataclasses.is_dataclass(current):
                if not isinstance(raw, Mapping):
                    raise ConfigError(f"config key {head!r} is a group; set its fields as {head}.<field>=value")
                changes[head] = apply(current, raw, f"{_prefix}{head}.")
            else:
                changes[head] = coerce(raw, hints.get(head, Any), _prefix + head)
    return dataclasses.replace(cfg, **changes)


def check_choices(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the key if a field of ``cfg`` (nested dataclasses included) holds a
    value its ``Literal`` type does not allow. :func:`apply` checks what comes from overrides and files; this
    checks a config built in Python, e.g. at a model's constructor."""
    hints = _resolve_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, tp = getattr(cfg, f.name), hints.get(f.name, Any)
        if dataclasses.is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.")
            continue
        literals = [tp] if typing.get_origin(tp) is typing.Literal else [
            a for a in typing.get_args(tp) if typing.get_origin(a) is typing.Literal]
        if literals and not (value is None and type(None) in typing.get_args(tp)):
            choices = [c for lit in literals for c in typing.get_args(lit)]
            if value not in choices:
                raise ConfigError(f"config key {prefix + f.name!r} must be one of "
                                  f"{', '.join(map(str, choices))}, got {value!r}")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolve(cfg: T, presets: Mapping[str, Mapping[str, Any]], preset: str | None,
            overrides: Mapping[str, Any]) -> T:
    """Defaults ← preset ← overrides. ``preset`` may name several, comma-separated, applied in order."""
    for name in [p for p in (preset or "").split(",") if p]:
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(presets) or '(none)'}")
        cfg = apply(cfg, flatten(presets[name]))
    return apply(cfg, overrides)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML/JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``path`` through a temporary file and a rename, so that readers see the old or the new file,
    never half of one (the temporary name is per process: concurrent writers never share it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)


def save(cfg: Any, path: str | Path) -> None:
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load(cls: type[T], path: str | Path) -> T:
    """Load a saved YAML config into ``cls`` (defaults fill keys the file lacks; unknown keys are errors)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    try:
        return apply(cls(), flatten(data))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def describe(cfg: Any) -> list[tuple[str, Any, str]]:
    """(dotted key, value, doc) for every leaf, for ``--help`` listings."""
    rows = []

    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", value, f.metadata.get("doc", "")))

    walk(cfg, "")
    return rows
