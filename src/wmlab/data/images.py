"""Frame decoding and resizing shared by the importers.

Resizing is a centre crop to the target aspect ratio followed by an antialiased bilinear resize
(``torch.nn.functional.interpolate(antialias=True)``): plain bilinear without the low-pass aliases
badly when a 240p video is shrunk to 64x64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_CHUNK = 64  # frames resized at a time (bounds the float32 temporary)


class ImageReadError(ValueError):
    """A frame or video file cannot be decoded; the message names it."""


def as_size(size: int | Iterable[int] | str | None) -> tuple[int, int] | None:
    """``64`` / ``(64, 64)`` / ``"64x64"`` / ``"64,64"`` → ``(H, W)``."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.lower().replace("x", ",").strip("()[] ").split(",")
        size = [int(p) for p in parts if p.strip()]
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be H,W (e.g. 64 or 64x64), got {size}")
    return size  # type: ignore[return-value]


def to_rgb(frame: np.ndarray, source: str) -> np.ndarray:
    """Any uint8 HxW, HxWx1, HxWx3, HxWx4 frame → HxWx3."""
    if frame.dtype != np.uint8:
        raise ImageReadError(f"{source}: frames have dtype {frame.dtype}, expected 8-bit images")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"{source}: frame shape {frame.shape} is not an image (H, W, C)")
    if frame.shape[-1] == 1:
        return np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None, crop: bool = True) -> np.ndarray:
    """uint8 [T,H,W,3] → uint8 [T,h,w,3]; ``crop`` centre-crops to the target aspect ratio first."""
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    import torch
    import torch.nn.functional as F

    h, w = frames.shape[1:3]
    th, tw = size
    if crop:
        scale = min(h / th, w / tw)
        ch, cw = max(1, round(th * scale)), max(1, round(tw * scale))
        top, left = (h - ch) // 2, (w - cw) // 2
        frames = frames[:, top : top + ch, left : left + cw]
    out = np.empty((len(frames), th, tw, 3), np.uint8)
    for i in range(0, len(frames), _CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + _CHUNK])).permute(0, 3, 1, 2).float()  # (N,3,H,W)
        y = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        out[i : i + _CHUNK] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def read_image(path: Path) -> np.ndarray:
    """One image file → uint8 [H,W,3]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e})") from None


def iter_video(path: Path) -> Iterator[np.ndarray]:
    """Decode a video file (mp4/webm/avi/mov/mkv via ffmpeg, gif via Pillow) frame by frame."""
    import imageio.v3 as iio

    try:
        for frame in iio.imiter(path):
            yield to_rgb(np.asarray(frame), str(path))
    except ImageReadError:
        raise
    except Exception as e:  # decoder errors come in many types (OSError, RuntimeError, StopIteration, ...)
        raise ImageReadError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from None


def video_fps(path: Path) -> float | None:
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path)
    except Exception:
        return None
    if meta.get("fps"):
        return float(meta["fps"])
    if meta.get("duration"):  # gif: milliseconds per frame
        return 1000.0 / float(meta["duration"])
    return None
