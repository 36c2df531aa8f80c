"""Building blocks: LayerNorm'd linear units, MLPs, and a stride-2 CNN encoder/decoder for any image size.

The units follow DreamerV3 (https://arxiv.org/abs/2301.04104): Linear/Conv without bias → LayerNorm
(eps 1e-3) → SiLU, truncated-normal fan-average init for hidden layers and a scaled uniform init for
output layers (scale 0 gives a zero-initialised head, e.g. the reward head).

Convolutions run in channels-last memory: an image batch ``[N,H,W,C]`` permuted to ``[N,C,H,W]`` already
has channels-last strides, the channel LayerNorm is a plain layer_norm over the contiguous last dim of
the permuted-back view, and oneDNN's fast bf16 kernels want that layout; no layout copies are made.
Under bf16 the deepest conv stages compute their weight gradient as one GEMM over im2col patches
(:class:`GemmGradConv2d`), which on CPU is several times faster than oneDNN's backward-weights kernel.

Shape legend: ``N`` batch (B·T flattened), ``H,W`` image size, ``C`` channels, ``F`` input features,
``E`` embedding size.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-3

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (silu, elu, gelu, relu, tanh)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _fans(weight: Tensor) -> tuple[int, int]:
    space = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * space, weight.shape[0] * space
    return fan_in, fan_out


def init_hidden_(module: nn.Module) -> None:
    """Truncated-normal init with fan-average variance for every Linear/Conv weight; biases to zero."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in, fan_out = _fans(m.weight)
            if isinstance(m, nn.ConvTranspose2d):  # weight is [in, out, k, k]
                fan_in, fan_out = fan_out, fan_in
            std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, 0.0, std, -2.0 * std, 2.0 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_output_(module: nn.Linear | nn.Conv2d | nn.ConvTranspose2d, scale: float = 1.0) -> None:
    """Uniform fan-average init scaled by ``scale`` for an output layer; ``scale=0`` zeroes it."""
    fan_in, fan_out = _fans(module.weight)
    limit = math.sqrt(3.0 * scale * 2.0 / (fan_in + fan_out))
    if scale == 0.0:
        nn.init.zeros_(module.weight)
    else:
        nn.init.uniform_(module.weight, -limit, limit)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same arguments and state) whose scale and bias gradients are exact under bf16 on CPU.

    PyTorch's CPU kernel for a low-precision input sums the scale and bias gradients over the rows in that
    precision: against fp32 they are off by about 10 % over 16k rows and by 50–70 % over the 1M pixel rows of
    a 32-channel map (torch 2.13; the input gradient is fine). So where those gradients are recorded the
    norm runs on the input cast to fp32 and casts its output back; without gradient (imagination, acting,
    evaluation) and on GPUs, whose kernels accumulate in fp32, it runs the native kernel unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (x.dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu" and torch.is_grad_enabled()
                and self.weight is not None and self.weight.requires_grad):
            return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class NormLinear(nn.Sequential):
    """Linear (no bias when normed) → LayerNorm → activation: the hidden unit of every DreamerV3 MLP."""

    def __init__(self, in_dim: int, out_dim: int, norm: bool = True, act: str = "silu") -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=not norm)]
        if norm:
            layers.append(LayerNorm(out_dim, eps=LN_EPS))
        layers.append(activation(act))
        super().__init__(*layers)
        init_hidden_(self)


class MLP(nn.Module):
    """``layers`` NormLinear units of width ``units``, then an optional linear output of size ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int | None, layers: int, units: int, norm: bool = True,
                 act: str = "silu", out_scale: float = 1.0) -> None:
        super().__init__()
        dims = [in_dim] + [units] * layers
        self.hidden = nn.Sequential(*[NormLinear(a, b, norm, act) for a, b in zip(dims[:-1], dims[1:])])
        self.out: nn.Linear | None = None
        if out_dim is not None:
            self.out = nn.Linear(dims[-1], out_dim)
            init_output_(self.out, out_scale)
        self.out_dim = out_dim if out_dim is not None else dims[-1]

    def forward(self, x: Tensor) -> Tensor:  # [..., F] -> [..., out_dim]
        # One 2-D matmul per layer: a non-contiguous 3-D input (a time slice of a sequence) would otherwise
        # take a batched-matmul path that copies the weight once per row (seconds on CPU).
        lead = x.shape[:-1]
        x = self.hidden(x.reshape(-1, x.shape[-1]))
        if self.out is not None:
            x = self.out(x)
        return x.view(*lead, x.shape[-1])


class ChannelNorm(LayerNorm):
    """LayerNorm over the channels of ``[N,C,H,W]`` (free of copies for channels-last tensors)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype matmuls/convs on ``x`` run in: the autocast dtype when autocast is on, else ``x.dtype``
    (float32 for integer ``x``)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype if x.is_floating_point() else torch.float32


def _gemm_weight_grad(high: Tensor, low: Tensor, kernel: int, padding: int) -> Tensor:
    """Weight gradient of a stride-2 convolution as one GEMM over im2col patches.

    ``high [N,Ch,H,W]`` is the high-resolution side, ``low [N,Cl,h,w]`` the low-resolution side; returns
    ``[Cl, Ch, k, k]`` = Σ low ⊗ patches(high), which is the Conv2d weight gradient (high = input,
    low = output gradient) and the ConvTranspose2d weight gradient (high = output gradient, low = input).
    """
    n, ch = high.shape[:2]
    cl, h, w = low.shape[1:]
    x = high.permute(0, 2, 3, 1)  # [N,H,W,Ch], contiguous for channels-last tensors
    if padding:
        x = F.pad(x, (0, 0, padding, padding, padding, padding))
    cols = x.unfold(1, kernel, 2).unfold(2, kernel, 2)[:, :h, :w]  # [N,h,w,Ch,k,k] view
    cols = cols.permute(0, 1, 2, 4, 5, 3).reshape(n * h * w, kernel * kernel * ch)  # im2col copy, Ch innermost
    grad = low.permute(0, 2, 3, 1).reshape(n * h * w, cl)
    return (grad.t() @ cols).view(cl, kernel, kernel, ch).permute(0, 3, 1, 2).contiguous()  # [Cl,Ch,k,k]


class _GemmWeightGradConv(torch.autograd.Function):
    """Stride-2 conv / transposed conv with native forward and input gradient, GEMM weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, transposed: bool, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.padding = transposed, padding
        if transposed:
            return F.conv_transpose2d(x, weight, None, 2, padding)
        return F.conv2d(x, weight, None, 2, padding)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        p, k = ctx.padding, weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [2, 2], [p, p], [1, 1], ctx.transposed, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = _gemm_weight_grad(grad, x, k, p) if ctx.transposed else _gemm_weight_grad(x, grad, k, p)
        return grad_x, grad_w, None, None


def _use_gemm_weight_grad(conv: nn.Conv2d | nn.ConvTranspose2d, dtype: torch.dtype, high_channels: int) -> bool:
    if (conv.stride != (2, 2) or conv.padding[0] != conv.padding[1] or conv.groups != 1
            or conv.dilation != (1, 1) or tuple(getattr(conv, "output_padding", (0, 0))) != (0, 0)):
        return False
    # oneDNN's bf16 backward-weights kernel runs ~10x below its forward on deep, low-resolution stages
    # (e.g. 128->256 channels, 8x8->4x4); one GEMM over the patches is 3-4x faster there. On shallow,
    # high-resolution stages the im2col copy costs more than it saves, and fp32 kernels are fine.
    return dtype == torch.bfloat16 and high_channels * conv.kernel_size[0] * conv.kernel_size[1] >= 2048


class GemmGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (stride 2) that computes its bf16 weight gradient as one GEMM where that is faster."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = compute_dtype(x)
        if not _use_gemm_weight_grad(self, dtype, self.in_channels):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            y = _GemmWeightGradConv.apply(x.to(dtype), self.weight.to(dtype), False, self.padding[0])
            return y if self.bias is None else y + self.bias.to(dtype).view(1, -1, 1, 1)


class GemmGradConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (stride 2) with the same GEMM weight gradient as :class:`GemmGradConv2d`."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        dtype = compute_dtype(x)
        if output_size is not None or not _use_gemm_weight_grad(self, dtype, self.out_channels):
            return super().forward(x, output_size)
        with torch.autocast(x.device.type, enabled=False):
            y = _GemmWeightGradConv.apply(x.to(dtype), self.weight.to(dtype), True, self.padding[0])
            return y if self.bias is None else y + self.bias.to(dtype).view(1, -1, 1, 1)


def conv_stages(height: int, width: int, min_res: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 stage: halve (rounding up) while both sides stay ≥ ``min_res``.

    64×64 → 4 stages to 4×4; 96×96 → 4 stages to 6×6; 64×96 → 4×6; 32×48 → 3 stages to 4×6.
    """
    if min(height, width) < 2 * min_res:
        raise ValueError(f"image size {height}x{width} is too small for cnn.min_res={min_res}: "
                         f"each side needs at least {2 * min_res} pixels (lower cnn.min_res or resize)")
    sizes = []
    h, w = height, width
    while min(-(-h // 2), -(-w // 2)) >= min_res:
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def stage_channels(depth: int, mults: tuple[int, ...], stages: int) -> list[int]:
    """Channels per stage: ``depth·mults[i]``; empty ``mults`` doubles per stage (1, 2, 4, 8, ...)."""
    if not mults:
        mults = tuple(2**i for i in range(stages))
    if len(mults) != stages:
        raise ValueError(f"cnn.mults has {len(mults)} entries but this image size needs {stages} stride-2 "
                         f"stages; set cnn.mults to {stages} values or leave it empty to double per stage")
    return [depth * m for m in mults]


def _same_pad(size: int, kernel: int) -> tuple[int, int]:
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    return total // 2, total - total // 2


def down_stage(c_in: int, c_out: int, h: int, w: int, kernel: int, norm: bool, act: str) -> list[nn.Module]:
    """One stride-2 "same" conv stage of an ``h × w`` map: [pad,] conv, [ChannelNorm,] activation.

    Even sizes pad symmetrically inside the conv; odd ones need an asymmetric ``ZeroPad2d`` before it.
    """
    (top, bottom), (left, right) = _same_pad(h, kernel), _same_pad(w, kernel)
    layers: list[nn.Module] = []
    if top == bottom and left == right:
        conv = GemmGradConv2d(c_in, c_out, kernel, 2, padding=(top, left), bias=not norm)
    else:
        layers.append(nn.ZeroPad2d((left, right, top, bottom)))
        conv = GemmGradConv2d(c_in, c_out, kernel, 2, bias=not norm)
    return layers + [conv] + ([ChannelNorm(c_out)] if norm else []) + [activation(act)]


class ConvEncoder(nn.Module):
    """Stride-2 convolutions down to ``min_res``, flattened: uint8-range images → ``[N, E]``.

    Input is float ``[N,H,W,C]`` already scaled to [-0.5, 0.5]; ``out_dim = C_last · h · w``.
    """

    def __init__(self, image: tuple[int, int, int], depth: int = 32, mults: tuple[int, ...] = (),
                 kernel: int = 4, min_res: int = 4, norm: bool = True, act: str = "silu") -> None:
        super().__init__()
        height, width, channels = image
        sizes = conv_stages(height, width, min_res)
        widths = stage_channels(depth, mults, len(sizes))
        layers: list[nn.Module] = []
        h, w, c_in = height, width, channels
        for (h_out, w_out), c_out in zip(sizes, widths):
            layers += down_stage(c_in, c_out, h, w, kernel, norm, act)
            h, w, c_in = h_out, w_out, c_out
        self.layers = nn.Sequential(*layers)
        init_hidden_(self)
        self.sizes = sizes
        self.widths = widths
        self.out_dim = c_in * h * w

    def forward(self, x: Tensor) -> Tensor:  # [N,H,W,C] -> [N,E]
        x = self.layers(x.permute(0, 3, 1, 2))  # [N,C,H,W] with channels-last strides
        return x.permute(0, 2, 3, 1).flatten(1)  # [N, h·w·C_last], contiguous in channels-last


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: features ``[N,F]`` → image mean ``[N,H,W,C]`` (centred on 0.5).

    A linear layer makes the smallest feature map, then stride-2 transposed convolutions double it
    (cropping where the encoder rounded an odd size up) back to the exact ``H×W``.
    """

    def __init__(self, in_dim: int, image: tuple[int, int, int], depth: int = 32, mults: tuple[int, ...] = (),
                 kernel: int = 4, min_res: int = 4, norm: bool = True, act: str = "silu",
                 out_scale: float = 1.0) -> None:
        super().__init__()
        height, width, channels = image
        sizes = conv_stages(height, width, min_res)
        widths = stage_channels(depth, mults, len(sizes))
        self.image = image
        self.sizes, self.widths = sizes, widths
        self.start = (sizes[-1][0], sizes[-1][1], widths[-1])  # (h, w, C_last)
        self.space = nn.Linear(in_dim, math.prod(self.start), bias=not norm)
        space_norm = [ChannelNorm(widths[-1])] if norm else []
        self.space_norm = nn.Sequential(*space_norm, activation(act))
        targets = [(height, width)] + sizes[:-1]  # output size of each transposed conv, top stage first
        outs = [channels] + widths[:-1]
        padding = (kernel - 2) // 2  # output 2·in (even kernel) or 2·in+1 (odd), then cropped
        self.crops: list[tuple[int, int]] = []
        layers: list[nn.Module] = []
        for i in reversed(range(len(sizes))):
            last = i == 0
            conv = GemmGradConvTranspose2d(widths[i], outs[i], kernel, 2, padding, bias=last or not norm)
            block: list[nn.Module] = [conv]
            if not last:
                block += ([ChannelNorm(outs[i])] if norm else []) + [activation(act)]
            layers.append(nn.Sequential(*block))
            self.crops.append(targets[i])
        self.layers = nn.ModuleList(layers)
        init_hidden_(self)
        init_output_(self.layers[-1][0], out_scale)

    def forward(self, x: Tensor, after: Callable[[Tensor, int], Tensor] | None = None) -> Tensor:
        """Features ``[N,F]`` → ``[N,H,W,C]``. ``after(map, stage)``, if given, transforms each hidden map
        ``[N,C,h,w]`` as it is made (``stage`` indexes ``sizes``: the smallest map first, 0 last)."""
        h, w, c = self.start
        x = self.space(x).reshape(-1, h, w, c).permute(0, 3, 1, 2)  # [N,C,h,w], channels-last strides
        x = self.space_norm(x)
        stage = len(self.sizes) - 1
        for layer, (th, tw) in zip(self.layers, self.crops):
            if after is not None:
                x = after(x, stage)
            x = layer(x)
            if x.shape[-2] != th or x.shape[-1] != tw:
                x = x[..., :th, :tw]
            stage -= 1
        return x.permute(0, 2, 3, 1) + 0.5  # [N,H,W,C]
