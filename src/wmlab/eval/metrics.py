"""Video-prediction metrics: PSNR and SSIM per prediction step, and the copy-last-frame baseline.

Shapes: B batch, T time (prediction steps), H, W, C image.  Frames are uint8 [B,T,H,W,C].
PSNR/SSIM come from torchmetrics on [0,1] floats; they are computed per frame and averaged over the batch,
so every step of the horizon gets its own number.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _to_float(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 [B,T,H,W,C] → float32 [B*T,C,H,W] in [0,1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [B,T,H,W,C], got dtype {x.dtype}")
    if x.ndim != 5:
        raise ValueError(f"frames must be uint8 [B,T,H,W,C], got shape {tuple(x.shape)}")
    b, t, h, w, c = x.shape
    return x.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float().div_(255.0)


def psnr_per_step(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> np.ndarray:
    """PSNR in dB for each step of the horizon, averaged over the batch → float64 [T].

    Each frame's PSNR is computed on its own (``data_range`` 1), then averaged, as video-prediction papers do.
    A frame identical to the truth would be infinite; it is capped at 100 dB so means stay finite.
    """
    p, y = _to_float(pred), _to_float(truth)
    if p.shape != y.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from truth shape {tuple(truth.shape)}")
    b, t = pred.shape[:2]
    values = peak_signal_noise_ratio(p, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    values = torch.nan_to_num(values, posinf=100.0).clamp(max=100.0)
    return values.reshape(b, t).mean(0).double().numpy()


def pooled_psnr_per_step(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> np.ndarray:
    """PSNR in dB of the mean squared error over the batch, for each step of the horizon → float64 [T].

    Unlike the mean of per-frame PSNRs, a frame predicted exactly (an agent standing still, copied by the
    copy-last baseline) adds zero error instead of an unbounded PSNR, so data with many still frames does not
    let one exact frame outweigh many wrong ones.
    """
    p, y = _to_float(pred), _to_float(truth)
    if p.shape != y.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from truth shape {tuple(truth.shape)}")
    b, t = pred.shape[:2]
    mse = (p.double() - y.double()).pow(2).reshape(b, t, -1).mean(-1).mean(0)
    return (-10 * torch.log10(mse.clamp_min(1e-10))).numpy()


def ssim_per_step(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> np.ndarray:
    """SSIM (Gaussian window, σ 1.5; smaller for images under 16 px) for each step of the horizon, averaged over
    the batch → float64 [T]."""
    p, y = _to_float(pred), _to_float(truth)
    if p.shape != y.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from truth shape {tuple(truth.shape)}")
    b, t = pred.shape[:2]
    # The Gaussian window spans int(3.5σ+0.5)·2+1 pixels: shrink σ for images under 16 pixels a side.
    side = min(p.shape[-1], p.shape[-2])
    sigma = min(1.5, max(0.2, ((side - 1) // 2 - 0.5) / 3.5))
    values = structural_similarity_index_measure(p, y, data_range=1.0, reduction="none", sigma=sigma)
    return values.reshape(b, t).mean(0).double().numpy()


def copy_last_baseline(context: torch.Tensor | np.ndarray, horizon: int) -> np.ndarray:
    """The baseline every table carries: repeat the last context frame ``horizon`` times → uint8 [B,horizon,H,W,C]."""
    last = np.asarray(context)[:, -1:]
    return np.repeat(last, horizon, axis=1)


def prediction_table(pred: np.ndarray, truth: np.ndarray, context: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step PSNR/SSIM of a model's prediction beside the copy-last-frame baseline."""
    base = copy_last_baseline(context, truth.shape[1])
    return {
        "psnr": psnr_per_step(pred, truth),
        "ssim": ssim_per_step(pred, truth),
        "baseline_psnr": psnr_per_step(base, truth),
        "baseline_ssim": ssim_per_step(base, truth),
    }
