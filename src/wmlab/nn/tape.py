"""Linear layers inside a Python time loop, with the weight gradient computed once over all steps.

In a recurrence unrolled in Python (the RSSM's ``observe``), autograd gives every step its own weight
gradient: a thin ``[out, B] @ [B, in]`` product per step, then an in-place add into the running sum —
``T`` passes over a full weight-sized buffer, which on CPU costs more than the step's forward matmul.
:class:`StepLinear` instead records each step's input and output gradient and, once the whole loop has
been differentiated, forms the weight gradient as one ``[out, B·T] @ [B·T, in]`` GEMM. Besides being
faster, the sum is then accumulated in the GEMM's fp32 accumulator instead of T bf16 additions.

Shape legend: ``B`` batch, ``T`` steps, ``in``/``out`` the layer's widths.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wmlab.nn.blocks import compute_dtype


class _Tape:
    """Per-step ``(input, output gradient)`` pairs of one weight, filled while the steps are differentiated.

    The tape holds tensors only between a step's backward and the weight's: the autograd nodes hold the tape
    (``ctx.tape``), so a tape holding the steps' inputs from the forward on would keep every pass's graph
    alive through a cycle Python's collector cannot see (a Dreamer run grew by tens of MB per update).
    The inputs are saved for backward the usual way instead, and freed with the graph.
    """

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: list[tuple[Tensor, Tensor] | None] = []


class _TapedWeight(torch.autograd.Function):
    """Identity on the weight whose backward runs after every step's and sums the tape in one GEMM."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, tape: _Tape) -> Tensor:
        ctx.tape = tape
        ctx.set_materialize_grads(False)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, _unused: Tensor | None) -> tuple[Tensor | None, None]:
        tape: _Tape = ctx.tape
        pairs = [p for p in tape.pairs if p is not None]
        tape.pairs = [None] * len(tape.pairs)  # emptied: ready for another backward (retain_graph=True)
        if not pairs:
            return None, None
        inputs = torch.cat([x for x, _ in pairs])  # [B·T, in]
        grads = torch.cat([g for _, g in pairs])  # [B·T, out]
        return grads.t() @ inputs, None  # [out, in]


class _TapedMatmul(torch.autograd.Function):
    """``x @ weight.T`` for one step; backward returns the input gradient and records the output one."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, tape: _Tape) -> Tensor:
        ctx.tape, ctx.index = tape, len(tape.pairs)
        tape.pairs.append(None)
        ctx.save_for_backward(x, weight)
        return x @ weight.t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        ctx.tape.pairs[ctx.index] = (x, grad)
        return (grad @ weight if ctx.needs_input_grad[0] else None), None, None


class StepLinear:
    """``linear`` applied at many steps of one forward pass; make one per pass (it holds the tape).

    Falls back to the plain layer when no gradient is needed. Under autocast the weight is cast once
    for the whole pass, as autocast would.
    """

    def __init__(self, linear: nn.Linear, like: Tensor) -> None:
        self.linear = linear
        self.dtype = compute_dtype(like)
        self.taped = torch.is_grad_enabled() and linear.weight.requires_grad
        self.weight: Tensor = linear.weight
        if self.taped:
            self.tape = _Tape()
            self.weight = _TapedWeight.apply(linear.weight.to(self.dtype), self.tape)
        self.bias = linear.bias

    def __call__(self, x: Tensor) -> Tensor:  # [B,in] -> [B,out]
        if not self.taped:
            return self.linear(x)
        return _taped_linear(x, self.weight, self.bias, self.tape, self.dtype)


# Under torch.compile the taped steps run eagerly: the tape is a Python list that grows by one entry per step,
# which dynamo cannot put in a graph; kept out, a debug-size Dreamer update compiles to 36 graphs instead of 49.
@torch.compiler.disable
def _taped_linear(x: Tensor, weight: Tensor, bias: Tensor | None, tape: _Tape, dtype: torch.dtype) -> Tensor:
    with torch.autocast(x.device.type, enabled=False):
        y = _TapedMatmul.apply(x.to(dtype), weight, tape)
        return y if bias is None else y + bias.to(dtype)
