"""A self-contained HTML report: real vs predicted video, per-step metric plots, loss curves.

Everything is embedded (GIFs and PNGs as base64), so the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def side_by_side(truth: np.ndarray, pred: np.ndarray, context: np.ndarray, scale: int = 2) -> np.ndarray:
    """Frames [T,H,2W+gap,C] showing real (left) and model (right); context frames are shown on both sides
    with a green border, predicted frames with a red border on the model side."""
    real = np.concatenate([context, truth], 0)
    model = np.concatenate([context, pred], 0)
    t, h, w, c = real.shape
    border = 2
    canvas = np.full((t, h + 2 * border, 2 * (w + 2 * border) + 4, c), 255, np.uint8)
    for i in range(t):
        colour = (40, 170, 60) if i < len(context) else (210, 50, 50)
        for j, frames in enumerate((real, model)):
            x0 = j * (w + 2 * border + 4)
            canvas[i, :, x0:x0 + w + 2 * border] = colour if j == 1 or i < len(context) else (120, 120, 120)
            canvas[i, border:border + h, x0 + border:x0 + border + w] = frames[i]
    return canvas.repeat(scale, 1).repeat(scale, 2)


def _gif(frames: np.ndarray, fps: int = 10) -> str:
    data = iio.imwrite("<bytes>", frames, extension=".gif", duration=int(1000 / fps), loop=0)
    return base64.b64encode(data).decode()


def metric_plot(table: Mapping[str, np.ndarray], name: str, unit: str) -> str:
    model, base = np.asarray(table[name]), np.asarray(table[f"baseline_{name}"])
    steps = np.arange(1, len(model) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(steps, model, label="world model (open loop)", color="#c0392b")
    ax.plot(steps, base, label="copy last frame", color="#7f8c8d", linestyle="--")
    ax.set_xlabel("prediction step")
    ax.set_ylabel(f"{name.upper()} {unit}".strip())
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def loss_plot(records: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> str | None:
    """Loss curves from ``metrics.jsonl`` records ({"step": s, "<name>": value, ...})."""
    rows = [r for r in records if "step" in r]
    if not rows:
        return None
    if keys is None:
        keys = sorted({k for r in rows for k in r if k.startswith(("loss/", "train/loss"))})
    keys = [k for k in keys if any(k in r for r in rows)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r and np.isfinite(r[key])]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color="#2c3e50")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


def write_report(path: str | Path, *, title: str, table: Mapping[str, np.ndarray],
                 samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 records: Sequence[Mapping[str, Any]] = (), summary: Mapping[str, Any] | None = None,
                 loss_keys: Sequence[str] | None = None) -> Path:
    """Write the HTML report. ``samples`` holds (context, truth, pred) uint8 frame arrays [T,H,W,C]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    psnr, base_psnr = np.asarray(table["psnr"]), np.asarray(table["baseline_psnr"])
    ssim, base_ssim = np.asarray(table["ssim"]), np.asarray(table["baseline_ssim"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}img{image-rendering:pixelated;margin:4px}"
             ".win{color:#1e8449;font-weight:600}.lose{color:#b03a2e}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if summary:
        parts.append("<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
            f"{html.escape(str(v))}</td></tr>" for k, v in summary.items()) + "</table>")
    parts.append("<h2>Real vs open-loop prediction</h2><p>Left: real video. Right: the model, which sees the "
                 "frames with a green border and predicts the ones with a red border from the actions alone.</p>")
    for context, truth, pred in samples:
        parts.append(f"<img src='data:image/gif;base64,{_gif(side_by_side(truth, pred, context))}'>")
    parts.append("<h2>Prediction quality per step</h2>")
    parts.append(f"<img src='data:image/png;base64,{metric_plot(table, 'psnr', '(dB)')}'>")
    parts.append(f"<img src='data:image/png;base64,{metric_plot(table, 'ssim', '')}'>")
    rows = ["<tr><th>step</th><th>PSNR model</th><th>PSNR copy-last</th><th>SSIM model</th>"
            "<th>SSIM copy-last</th></tr>"]
    for i in range(len(psnr)):
        cls = "win" if psnr[i] > base_psnr[i] else "lose"
        rows.append(f"<tr><td>{i + 1}</td><td class='{cls}'>{psnr[i]:.2f}</td><td>{base_psnr[i]:.2f}</td>"
                    f"<td>{ssim[i]:.4f}</td><td>{base_ssim[i]:.4f}</td></tr>")
    parts.append("<details open><summary>Table</summary><table>" + "".join(rows) + "</table></details>")
    curves = loss_plot(records, loss_keys)
    if curves:
        parts.append(f"<h2>Training losses</h2><img src='data:image/png;base64,{curves}'>")
    parts.append("</body></html>")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
