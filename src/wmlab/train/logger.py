"""What a run leaves behind for people and plots: metrics.jsonl, TensorBoard scalars, videos, optional W&B.

``run_dir/metrics.jsonl`` holds one JSON object per logged step (``{"step": 100, "time": 12.3,
"train/loss": 0.5, ...}``); it is what reports plot, so every scalar sent anywhere is written there too.
TensorBoard events go to ``run_dir/tb``. Videos are mp4 files under ``run_dir/videos`` plus a frame-strip
image in TensorBoard (its own video support needs moviepy, which is not a dependency).
Only the main process (rank 0) makes a logger that writes; the others get a silent one.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmlab.config import ConfigError, MissingDependencyError


def _scalar(value: Any) -> float | None:
    """A loggable float for numbers and one-element tensors/arrays; None for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.number)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.item())
    return None


def _json_value(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # keep metrics.jsonl valid JSON for other readers


def as_video(frames: Any, name: str) -> np.ndarray:
    """Check and normalise frames to uint8 ``[N,T,H,W,3]``."""
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"video {name!r} must be uint8 frames, got {arr.dtype}; convert with (x*255).clip(0,255)")
    if arr.ndim == 4:
        arr = arr[None]
    if arr.ndim != 5 or arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        raise ValueError(f"video {name!r} must be [T,H,W,C] or [N,T,H,W,C] with C in (1, 3), got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def tile(video: np.ndarray) -> np.ndarray:
    """``[N,T,H,W,3]`` → ``[T,H,N*W,3]``: samples side by side, padded to even sides for H.264."""
    n, t, h, w, c = video.shape
    out = video.transpose(1, 2, 0, 3, 4).reshape(t, h, n * w, c)  # [T,H,N*W,C]
    return np.pad(out, ((0, 0), (0, out.shape[1] % 2), (0, out.shape[2] % 2), (0, 0)), mode="edge")


def strip(video: np.ndarray, max_frames: int = 16) -> np.ndarray:
    """``[N,T,H,W,3]`` → one image ``[N*H, K*W, 3]`` of up to ``max_frames`` evenly spaced frames per row."""
    n, t, h, w, c = video.shape
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    sel = video[:, idx]  # [N,K,H,W,C]
    return sel.transpose(0, 2, 1, 3, 4).reshape(n * h, len(idx) * w, c)


def write_mp4(path: str | Path, frames: Any, fps: int = 10) -> Path:
    """Write uint8 frames ``[T,H,W,C]`` or ``[N,T,H,W,C]`` (samples side by side) as an H.264 mp4."""
    import imageio.v2 as imageio

    path = Path(path)
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's mp4 writer; without it imageio picks another plugin)
    except ImportError:
        raise MissingDependencyError(f"writing {path} needs the imageio-ffmpeg package; install it with "
                                     f"`pip install imageio-ffmpeg`") from None
    video = as_video(frames, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(str(path), list(tile(video)), fps=fps, codec="libx264", macro_block_size=1,
                     quality=8, ffmpeg_log_level="error")
    return path


class RunLogger:
    """Writes scalars/videos of one run; a no-op unless ``enabled`` (the main process)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "wmlab", config: dict | None = None, start_step: int = 0):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.start = time.time()
        self.tb = None
        self.wandb_run = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._drop_after(start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a crashed run wrote after the checkpoint we resume from.
            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1)
        if wandb:
            self.wandb_run = _start_wandb(self.run_dir, wandb_project, config)

    def _drop_after(self, step: int) -> None:
        """On resume, drop rows a crashed run logged after the checkpoint: they describe discarded training."""
        if not self.metrics_path.exists():
            return
        keep, dropped = [], 0
        for line in self.metrics_path.read_text().splitlines():
            try:
                row_step = json.loads(line).get("step", 0)
            except json.JSONDecodeError:
                dropped += 1  # a line cut short by a crash
                continue
            if row_step > step:
                dropped += 1
            else:
                keep.append(line)
        if dropped:
            tmp = self.metrics_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, self.metrics_path)

    def log(self, step: int, values: dict[str, Any]) -> dict[str, Any]:
        """Write ``values`` (scalars to everything; other JSON-able values to metrics.jsonl only)."""
        if not self.enabled:
            return values
        row: dict[str, Any] = {"step": step, "time": round(time.time() - self.start, 3)}
        scalars: dict[str, float] = {}
        for key, value in values.items():
            s = _scalar(value)
            if s is not None:
                scalars[key] = s
                row[key] = value if isinstance(value, int) and not isinstance(value, bool) else _json_value(s)
            else:
                try:
                    json.dumps(value)
                except TypeError:
                    raise ValueError(f"cannot log {key!r}: a {type(value).__name__} is neither a scalar nor "
                                     f"JSON-able; log videos with log_video and return numbers") from None
                row[key] = value
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, s in scalars.items():
                self.tb.add_scalar(key, s, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)
        return row

    def video(self, name: str, frames: Any, step: int, fps: int = 10) -> Path | None:
        """Write ``videos/<name>_<step>.mp4`` and a frame strip to TensorBoard; returns the mp4 path."""
        video = as_video(frames, name)
        if not self.enabled:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "video"
        path = write_mp4(self.run_dir / "videos" / f"{safe}_{step:08d}.mp4", video, fps)
        image = strip(video)
        if self.tb is not None:
            self.tb.add_image(name, image, step, dataformats="HWC")
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Image(image)}, step=step)
        return path

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _start_wandb(run_dir: Path, project: str, config: dict | None) -> Any:
    """Start (or resume) a W&B run, offline unless the user set WANDB_MODE; one id per run_dir."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("wandb=true needs the wandb package (pip install wandb); or set wandb=false") from None
    os.environ.setdefault("WANDB_MODE", "offline")
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
    id_file.write_text(run_id + "\n")
    return wandb.init(project=project, dir=str(run_dir), config=config or {}, id=run_id, resume="allow")
