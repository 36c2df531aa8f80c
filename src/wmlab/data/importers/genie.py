"""GenieRedux CoinRun dataset folders.

::

    ROOT/info.json                                  dataset info (e.g. {"info": {"action_space": [7]}, ...})
    ROOT/<instance>/<session>/frames/000000.jpg     one frame per step (%06d)
    ROOT/<instance>/<session>/actions.json          actions of the session
    ROOT/<instance>/<session>/info.json             optional per-session metadata

``actions.json`` is either a plain list of action ids, one per frame (``action[t]`` chosen at frame
t), or GenieRedux's ``{"actions": [{"src_id": t-1, "tgt_id": t, "action": a, ...}, ...]}`` where a
record pairs frame ``src_id`` with the action that took it to ``tgt_id``; GenieRedux's loader trains on
exactly that pairing, so ``action[src_id] = a`` here (the record with ``src_id = -1`` carries no
transition and is dropped). The data has no rewards and no termination flags: episodes are stored
without ``reward`` and with ``is_terminal`` False.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from wmlab.data.formats import FormatError, register_reader
from wmlab.data.images import IMAGE_EXTS, as_size, read_image, resize_frames
from wmlab.data.schema import make_flags

ACTIONS = "actions.json"
INFO = "info.json"


def find_sessions(src: Path) -> list[Path]:
    """Session folders (holding ``frames/`` and ``actions.json``) under ``src``, sorted."""
    if (src / ACTIONS).is_file() and (src / "frames").is_dir():
        return [src]
    return sorted(p.parent for p in src.rglob(ACTIONS) if (p.parent / "frames").is_dir())


def looks_like_genie(src: Path) -> bool:
    if not src.is_dir():
        return False
    if (src / ACTIONS).is_file() and (src / "frames").is_dir():
        return True
    for pattern in ("*/*/" + ACTIONS, "*/" + ACTIONS):
        for p in src.glob(pattern):
            if (p.parent / "frames").is_dir():
                return True
    return False


def _read_json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable JSON ({e})") from None


def parse_actions(data: Any, length: int, path: Path) -> np.ndarray:
    """actions.json content → int64 [T] ids or float32 [T, A] (last row zeros where not given)."""
    if isinstance(data, dict):
        if "actions" not in data:
            raise FormatError(f"{path}: expected a list or {{'actions': [...]}}, found keys {sorted(data)}")
        data = data["actions"]
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a list of actions, found {type(data).__name__}")
    if data and isinstance(data[0], dict):
        values: list[Any] = [None] * length
        for i, rec in enumerate(data):
            src = rec.get("src_id", rec.get("src_frame_id"))
            if src is None or "action" not in rec:
                raise FormatError(f"{path}: record {i} lacks 'src_id' or 'action': {rec}")
            if int(src) < 0:
                continue
            if int(src) >= length:
                raise FormatError(f"{path}: record {i} names frame {src} but the session has {length} frames")
            values[int(src)] = rec["action"]
    else:
        if len(data) not in (length, length - 1):
            raise FormatError(f"{path}: {len(data)} actions for {length} frames; expected one per frame")
        values = list(data) + [None] * (length - len(data))
    known = [v for v in values if v is not None]
    if not known:
        raise FormatError(f"{path}: no actions")
    if isinstance(known[0], list):
        width = len(known[0])
        return np.array([v if v is not None else [0.0] * width for v in values], np.float32)
    return np.array([v if v is not None else 0 for v in values], np.int64)


def _declared_actions(info: dict[str, Any] | None) -> int | None:
    try:
        return int((info or {})["info"]["action_space"][-1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@register_reader("genie", detect=looks_like_genie)
def read_genie(src: Path, size: Any = None) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Yield ``(episode, meta)`` per session; ``meta`` keeps the dataset ``info.json`` and ids."""
    size = as_size(size)
    sessions = find_sessions(src)
    if not sessions:
        raise FormatError(f"{src}: no <instance>/<session>/ folders with frames/ and {ACTIONS}")
    info = _read_json(src / INFO) if (src / INFO).is_file() else None
    # All action files first (small JSON): the store spec needs the number of actions up front.
    frames_of, actions_of = {}, {}
    num_actions = _declared_actions(info) or 0
    for sess in sessions:
        frames = sorted((p for p in (sess / "frames").iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_frame_id)
        if not frames:
            raise FormatError(f"{sess / 'frames'}: no frames")
        ids = [_frame_id(p) for p in frames]
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise FormatError(f"{sess / 'frames'}: frame numbers are not consecutive ({ids[:3]}...{ids[-3:]})")
        acts = parse_actions(_read_json(sess / ACTIONS), len(frames), sess / ACTIONS)
        if acts.dtype == np.int64:
            num_actions = max(num_actions, int(acts.max()) + 1)
        frames_of[sess], actions_of[sess] = frames, acts
    for sess in sessions:
        frames = frames_of[sess]
        image = resize_frames(np.stack([read_image(p) for p in frames]), size)
        episode = {"image": image, "action": actions_of[sess], **make_flags(len(frames), terminal=False)}
        meta: dict[str, Any] = {"source": str(sess.resolve()), "genie": {"instance": sess.parent.name,
                                                                         "session": sess.name}}
        if info is not None:
            meta["genie"]["info"] = info
        if episode["action"].dtype == np.int64:
            meta["num_actions"] = num_actions
        if (sess / INFO).is_file():
            sess_info = _read_json(sess / INFO)
            if isinstance(sess_info, dict):
                meta.update({k: v for k, v in sess_info.items() if k not in ("source", "genie")})
        yield episode, meta


def _frame_id(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise FormatError(f"{path}: frame file names must be numbers like 000000.jpg") from None
