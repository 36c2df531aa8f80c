"""The episode schema shared by every system, and the checks that keep bad episodes out of a store.

An episode is ``dict[str, np.ndarray]``; every array has the same leading length ``T``:

- ``image``        uint8   [T, H, W, 3]   the observation o_t
- ``proprio``      float32 [T, P]         optional low-dimensional observation
- ``reward``       float32 [T]            reward that arrived with o_t (0 on row 0)
- ``action``       float32 [T, A] or int64 [T]   chosen after seeing o_t (last row: nothing chosen)
- ``is_first``     bool    [T]            True on row 0 only
- ``is_last``      bool    [T]            True on the final row only
- ``is_terminal``  bool    [T]            True on the final row only if the episode ended by termination
- any other key    numeric/bool [T, ...]  kept as it is

Action-free video is the same without ``action``/``reward``. Validation is strict (no silent casts):
a wrong dtype is usually a bug upstream, and the error says which cast fixes it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import numpy as np

FLAG_KEYS = ("is_first", "is_last", "is_terminal")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_RESERVED = {"meta"}


class EpisodeError(ValueError):
    """An episode (or its metadata) does not follow the schema; the message names the key and the fix."""


class SpecMismatchError(EpisodeError):
    """An episode is valid on its own but does not match the spec the store was created with."""


def make_flags(length: int, terminal: bool = False) -> dict[str, np.ndarray]:
    """``is_first``/``is_last``/``is_terminal`` for one whole episode of ``length`` steps.

    ``terminal`` says the episode ended by termination (not a time limit or a cut)."""
    if length < 1:
        raise EpisodeError(f"episode length must be >= 1, got {length}")
    is_first = np.zeros(length, bool)
    is_first[0] = True
    is_last = np.zeros(length, bool)
    is_last[-1] = True
    is_terminal = np.zeros(length, bool)
    is_terminal[-1] = bool(terminal)
    return {"is_first": is_first, "is_last": is_last, "is_terminal": is_terminal}


def _shape(a: np.ndarray) -> str:
    return "[" + ",".join(str(s) for s in a.shape) + "]"


def validate_episode(episode: Mapping[str, Any], *, check_finite: bool = True) -> dict[str, np.ndarray]:
    """Check ``episode`` against the schema; return it as a plain dict of arrays.

    Raises :class:`EpisodeError` with a one-line message naming the key, what was found and what is
    expected. Arrays are passed through ``np.asarray`` (lists are fine) but never cast."""
    if not isinstance(episode, Mapping):
        raise EpisodeError(f"an episode must be a dict of arrays, got {type(episode).__name__}")
    ep: dict[str, np.ndarray] = {}
    for key, value in episode.items():
        if not isinstance(key, str) or not _KEY_RE.match(key) or key in _RESERVED:
            raise EpisodeError(
                f"episode key {key!r} is not allowed: use letters, digits, '_', '.', '-' (and not 'meta')"
            )
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise EpisodeError(
                f"episode key {key!r} has dtype {arr.dtype}, expected a numeric or bool dtype "
                "(strings/objects belong in the episode metadata)"
            )
        if arr.ndim == 0:
            raise EpisodeError(f"episode key {key!r} is a scalar, expected a per-step array [T, ...]")
        ep[key] = arr
    for key in ("image", *FLAG_KEYS):
        if key not in ep:
            raise EpisodeError(f"episode is missing key {key!r} (keys found: {sorted(ep)})")
    length = len(ep["image"])
    if length < 1:
        raise EpisodeError("episode key 'image' has 0 steps, expected at least 1")
    for key, arr in ep.items():
        if len(arr) != length:
            raise EpisodeError(
                f"episode key {key!r} has {len(arr)} steps but 'image' has {length}; all keys need the same length"
            )
    _check_image(ep["image"])
    _check_flags(ep)
    if "reward" in ep:
        _check_dtype_shape(ep["reward"], "reward", np.float32, 1, "[T]")
    if "proprio" in ep:
        _check_dtype_shape(ep["proprio"], "proprio", np.float32, 2, "[T, P]")
    if "action" in ep:
        _check_action(ep["action"])
    if check_finite:
        for key, arr in ep.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr.reshape(length, -1)).all(axis=1))[0])  # first bad step
                raise EpisodeError(f"episode key {key!r} holds NaN/inf (first at step {bad}); expected finite values")
    return ep


def _check_dtype_shape(arr: np.ndarray, key: str, dtype: Any, ndim: int, what: str) -> None:
    if arr.dtype != dtype:
        raise EpisodeError(
            f"episode key {key!r} has dtype {arr.dtype}, expected {np.dtype(dtype)} {what} "
            f"(cast with .astype(np.{np.dtype(dtype).name}))"
        )
    if arr.ndim != ndim:
        raise EpisodeError(f"episode key {key!r} has shape {_shape(arr)}, expected {what}")


def _check_image(img: np.ndarray) -> None:
    if img.dtype != np.uint8:
        raise EpisodeError(
            f"episode key 'image' has dtype {img.dtype}, expected uint8 [T,H,W,3] "
            "(scale floats in [0,1] by 255 and cast with .astype(np.uint8))"
        )
    if img.ndim != 4 or img.shape[-1] != 3:
        hint = " (channels-first? use .transpose(0,2,3,1))" if img.ndim == 4 and img.shape[1] == 3 else ""
        raise EpisodeError(f"episode key 'image' has shape {_shape(img)}, expected [T,H,W,3]{hint}")


def _check_action(act: np.ndarray) -> None:
    if act.dtype == np.int64:
        if act.ndim != 1:
            raise EpisodeError(f"episode key 'action' is int64 with shape {_shape(act)}, expected [T] (discrete ids)")
        if (act < 0).any():
            raise EpisodeError(f"episode key 'action' holds negative ids (min {int(act.min())}), expected ids >= 0")
    elif act.dtype == np.float32:
        if act.ndim != 2:
            raise EpisodeError(f"episode key 'action' is float32 with shape {_shape(act)}, expected [T, A]")
    else:
        raise EpisodeError(
            f"episode key 'action' has dtype {act.dtype}, expected float32 [T, A] (continuous) or int64 [T] (discrete)"
        )


def _check_flags(ep: dict[str, np.ndarray]) -> None:
    for key in FLAG_KEYS:
        arr = ep[key]
        if arr.dtype != np.bool_ or arr.ndim != 1:
            raise EpisodeError(
                f"episode key {key!r} has dtype {arr.dtype} shape {_shape(arr)}, expected bool [T] "
                f"(build flags with wmlab.data.make_flags(T, terminal))"
            )
    first, last, term = ep["is_first"], ep["is_last"], ep["is_terminal"]
    if not first[0] or first[1:].any():
        raise EpisodeError(
            f"episode key 'is_first' is True at steps {np.flatnonzero(first).tolist()[:5]}, expected only at step 0"
        )
    if not last[-1] or last[:-1].any():
        raise EpisodeError(
            f"episode key 'is_last' is True at steps {np.flatnonzero(last).tolist()[:5]}, "
            f"expected only at the final step {len(last) - 1}"
        )
    if term[:-1].any():
        raise EpisodeError(
            f"episode key 'is_terminal' is True at steps {np.flatnonzero(term).tolist()[:5]}, "
            f"expected at most the final step {len(term) - 1}"
        )


def step_spec(episode: Mapping[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (dtype name, per-step shape)}`` of a validated episode."""
    return {k: (v.dtype.name, tuple(int(s) for s in v.shape[1:])) for k, v in sorted(episode.items())}


def spec_from_episode(episode: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The store spec an episode implies; ``meta["num_actions"]`` declares a discrete action count."""
    steps = step_spec(episode)
    act = steps.get("action")
    discrete = act is not None and act[0] == "int64"
    num_actions = None
    if discrete and meta and meta.get("num_actions") is not None:
        num_actions = int(meta["num_actions"])
    return {
        "image": list(steps["image"][1]),
        "action_dim": None if act is None else (1 if discrete else act[1][0]),
        "action_discrete": bool(discrete),
        "num_actions": num_actions,
        "proprio_dim": steps["proprio"][1][0] if "proprio" in steps else None,
        "keys": sorted(steps),
        "steps": {k: [d, list(s)] for k, (d, s) in steps.items()},
    }


def check_against_spec(episode: Mapping[str, np.ndarray], spec: Mapping[str, Any], where: str) -> None:
    """Raise :class:`SpecMismatchError` if ``episode`` does not fit the store spec ``spec``.

    ``where`` names the store in the message."""
    steps = step_spec(episode)
    want = {k: (d, tuple(s)) for k, (d, s) in spec["steps"].items()}
    missing, extra = sorted(set(want) - set(steps)), sorted(set(steps) - set(want))
    if missing:
        raise SpecMismatchError(
            f"episode is missing key {missing[0]!r} that every episode in {where} has (keys there: {sorted(want)})"
        )
    if extra:
        raise SpecMismatchError(
            f"episode has key {extra[0]!r} that the episodes in {where} lack (keys there: {sorted(want)}); "
            "drop it or use another store"
        )
    for key in sorted(steps):
        (d_new, s_new), (d_old, s_old) = steps[key], want[key]
        if (d_new, s_new) != (d_old, s_old):
            hint = " (resize the frames, e.g. size=(H,W) on import)" if key == "image" and s_new != s_old else ""
            raise SpecMismatchError(
                f"episode key {key!r} has per-step {d_new} shape {s_new} but {where} holds {d_old} shape {s_old}{hint}"
            )
    n = spec.get("num_actions")
    if n is not None and "action" in episode and len(episode["action"]) and int(episode["action"].max()) >= n:
        raise SpecMismatchError(
            f"episode key 'action' holds id {int(episode['action'].max())} but {where} declares num_actions={n}"
        )


def check_meta(meta: Any) -> dict[str, Any]:
    """Return ``meta`` as a JSON-able dict (numpy scalars/arrays become Python values) or raise."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise EpisodeError(f"episode metadata must be a dict, got {type(meta).__name__}")
    try:
        return json.loads(json.dumps(dict(meta), default=_to_json, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise EpisodeError(f"episode metadata is not JSON-able: {e}") from None


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} {value!r:.60} is not JSON serialisable")
