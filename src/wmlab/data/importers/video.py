"""Action-free video: video files, folders of frames, and list files naming them (SSv2-style).

Sources, one episode per video:

- a video file (``.mp4 .webm .avi .mov .mkv`` via ffmpeg, ``.gif`` via Pillow);
- a folder of frames (``.jpg/.png/...``, sorted by name) — one episode;
- a folder whose entries are videos and/or frame folders — one episode each, sorted by name;
- a list file: ``.json`` (a list of names, or of objects like Something-Something-V2's
  ``{"id": "78687", "label": "holding potato next to ...", "template": ...}``), or ``.txt/.csv``
  (``name<TAB or space or comma>caption`` per line). Names are resolved under ``video_root``
  (default: the list file's folder), trying the name itself, then ``name`` + a video extension,
  then a frame folder of that name. ``caption``/``text``/``label`` become ``meta["caption"]``.

Frames are decoded one at a time and resized in chunks, so long or high-resolution videos never sit
in memory at full size. Episodes carry ``image`` and the flags; no ``action``/``reward``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from wmlab.data.formats import FormatError, register_reader
from wmlab.data.images import IMAGE_EXTS, as_size, iter_video, read_image, resize_frames, video_fps
from wmlab.data.schema import make_flags

VIDEO_EXTS = (".mp4", ".webm", ".gif", ".avi", ".mov", ".mkv", ".m4v")
LIST_EXTS = (".json", ".txt", ".csv", ".lst")
_CHUNK = 64


def _is_frame_dir(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir())


def looks_like_video(src: Path) -> bool:
    if src.is_file():
        return src.suffix.lower() in VIDEO_EXTS + LIST_EXTS
    if not src.is_dir():
        return False
    for p in src.iterdir():
        if p.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS or _is_frame_dir(p):
            return True
    return False


def _entries_from_list(path: Path) -> list[dict[str, Any]]:
    """List file → ``[{"name": ..., optional caption/label/...}]``."""
    if path.suffix.lower() == ".json":
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise FormatError(f"{path}: unreadable JSON list ({e})") from None
        if isinstance(data, dict):
            data = data.get("videos", data.get("items"))
        if not isinstance(data, list):
            raise FormatError(f"{path}: expected a JSON list of videos (or {{'videos': [...]}})")
        out = []
        for i, item in enumerate(data):
            if isinstance(item, str):
                out.append({"name": item})
                continue
            keys = ("path", "video", "file", "id")
            name = next((item[k] for k in keys if isinstance(item, dict) and k in item), None)
            if name is None:
                raise FormatError(f"{path}: entry {i} names no video (give 'path', 'video', 'file' or 'id'): {item}")
            out.append({**{k: v for k, v in item.items() if k not in ("path", "video", "file")}, "name": str(name)})
        return out
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            sep = "\t" if "\t" in line else ("," if path.suffix.lower() == ".csv" else None)
            parts = line.split(sep, 1)
            entry: dict[str, Any] = {"name": parts[0].strip()}
            if len(parts) > 1 and parts[1].strip():
                entry["caption"] = parts[1].strip()
            out.append(entry)
    return out


def _resolve(name: str, root: Path, list_path: Path) -> Path:
    base = Path(name) if Path(name).is_absolute() else root / name
    candidates = [base] + [base.with_name(base.name + ext) for ext in VIDEO_EXTS]
    for cand in candidates:
        if cand.is_file() or _is_frame_dir(cand):
            return cand
    raise FormatError(f"{list_path}: video {name!r} not found under {root} (tried {base} and {base}.<ext>)")


def list_sources(src: Path, video_root: str | Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """``(video file or frame folder, extra metadata)`` pairs named by ``src``."""
    if src.is_file() and src.suffix.lower() in LIST_EXTS:
        root = Path(video_root).expanduser() if video_root else src.parent
        out = []
        for entry in _entries_from_list(src):
            extra = {k: v for k, v in entry.items() if k != "name"}
            caption = entry.get("caption") or entry.get("text") or entry.get("label")
            if caption is not None:
                extra["caption"] = caption
            out.append((_resolve(entry["name"], root, src), extra))
        return out
    if src.is_file():
        return [(src, {})]
    if any(p.suffix.lower() in IMAGE_EXTS for p in src.iterdir()):
        return [(src, {})]
    items = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS or _is_frame_dir(p))
    if not items:
        raise FormatError(f"{src}: no videos, frames or frame folders found")
    return [(p, {}) for p in items]


def _frames(path: Path, stride: int, max_frames: int | None) -> Iterator[np.ndarray]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        source: Iterator[np.ndarray] = (read_image(p) for p in files)
    else:
        source = iter_video(path)
    kept = 0
    for i, frame in enumerate(source):
        if i % stride:
            continue
        if max_frames is not None and kept >= max_frames:
            return
        kept += 1
        yield frame


def load_video(
    path: Path, size: tuple[int, int] | None, stride: int = 1, max_frames: int | None = None, crop: bool = True
) -> np.ndarray:
    """uint8 [T,H,W,3] frames of one video or frame folder, resized chunk by chunk."""
    chunks, pending, first_shape = [], [], None
    for frame in _frames(path, stride, max_frames):
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise FormatError(f"{path}: frames change size ({first_shape} then {frame.shape})")
        pending.append(frame)
        if len(pending) == _CHUNK:
            chunks.append(resize_frames(np.stack(pending), size, crop))
            pending = []
    if pending:
        chunks.append(resize_frames(np.stack(pending), size, crop))
    if not chunks:
        raise FormatError(f"{path}: no frames decoded")
    return np.concatenate(chunks)


@register_reader("video", detect=looks_like_video)
def read_video(
    src: Path,
    size: Any = None,
    video_root: str | Path | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    min_frames: int = 1,
    crop: bool = True,
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Yield ``(episode, meta)`` per video. ``size``: (H, W) (centre crop + antialiased resize unless
    ``crop=False``); ``stride``: keep every n-th frame; ``max_frames``: cut long videos;
    ``min_frames``: skip shorter ones."""
    size = as_size(size)
    if stride < 1:
        raise FormatError(f"stride must be >= 1, got {stride}")
    for path, extra in list_sources(src, video_root):
        frames = load_video(path, size, stride, max_frames, crop)
        if len(frames) < min_frames:
            continue
        meta: dict[str, Any] = {**extra, "source": str(path.resolve())}
        fps = None if path.is_dir() else video_fps(path)
        if fps:
            meta["fps"] = fps / stride
        yield {"image": frames, **make_flags(len(frames), terminal=False)}, meta
