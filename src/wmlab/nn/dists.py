"""Distributions and losses the DreamerV3 world model needs, as plain tensor functions.

DreamerV3 (Hafner et al. 2023, https://arxiv.org/abs/2301.04104) predicts rewards and values as a
categorical over bins in symlog space ("two-hot"), uses one-hot categorical latents mixed with 1% uniform
("unimix") and sampled with straight-through gradients, and balances the KL between posterior and prior
with free bits. Every function here computes in float32 whatever the ambient autocast says: these are the
numerically delicate ops (log-softmax, log of small probabilities, KL) that bf16 would spoil.

Shape legend: ``...`` any leading dims, ``S`` categorical latents, ``K`` classes per latent,
``N`` two-hot bins.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


@contextlib.contextmanager
def float32(x: Tensor) -> Iterator[None]:
    """Disable autocast inside the block (for the device type of ``x``); cast inputs with ``.float()``."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1+|x|): compresses large magnitudes so one loss scale fits rewards of any size."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot:
    """Scalar ↔ categorical over ``num_bins`` equally spaced bins in symlog space.

    ``encode`` puts the symlog of a scalar on its two neighbouring bins with weights that interpolate it
    linearly, so ``decode(encode(x)) == x`` inside the range. The loss is the cross-entropy between that
    target and the predicted logits; the prediction is the expectation of the bins, mapped back with symexp.
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        if num_bins < 2 or not low < high:
            raise ValueError(f"two-hot needs num_bins >= 2 and low < high, got {num_bins}, {low}, {high}")
        self.num_bins = num_bins
        self.low = low
        self.high = high

    def bins(self, device: torch.device) -> Tensor:
        """Bin centres in symlog space, float32 ``[N]``. Made on each call (a few hundred values): a cache
        keyed by device would make ``torch.compile`` recompile once it fills."""
        return torch.linspace(self.low, self.high, self.num_bins, device=device)

    def encode(self, x: Tensor) -> Tensor:
        """Scalars ``[...]`` → two-hot targets ``[..., N]`` (float32; values outside the range clip)."""
        with float32(x):
            y = symlog(x.float()).clamp(self.low, self.high)
            pos = (y - self.low) / (self.high - self.low) * (self.num_bins - 1)
            below = pos.floor().clamp(0, self.num_bins - 2)
            frac = (pos - below).unsqueeze(-1)
            below = below.long().unsqueeze(-1)
            target = torch.zeros(*x.shape, self.num_bins, device=x.device)
            target.scatter_(-1, below, 1.0 - frac)
            target.scatter_add_(-1, below + 1, frac)
        return target

    def decode(self, logits: Tensor) -> Tensor:
        """Logits ``[..., N]`` → predicted scalar ``[...]``: symexp of the expected bin."""
        with float32(logits):
            probs = torch.softmax(logits.float(), -1)
            return symexp((probs * self.bins(logits.device)).sum(-1))

    def loss(self, logits: Tensor, x: Tensor) -> Tensor:
        """Cross-entropy of logits ``[..., N]`` against the two-hot encoding of targets ``[...]``."""
        target = self.encode(x)
        with float32(logits):
            return -(target * F.log_softmax(logits.float(), -1)).sum(-1)


def unimix_logprobs(logits: Tensor, unimix: float) -> Tensor:
    """Log-probabilities ``[..., K]`` of softmax(logits) mixed with ``unimix`` of the uniform distribution.

    The mixture keeps every probability at least ``unimix / K``, which bounds the KL and keeps the
    straight-through gradient alive for classes the network has almost ruled out.
    """
    with float32(logits):
        logits = logits.float()
        if unimix <= 0.0:
            return F.log_softmax(logits, -1)
        probs = torch.softmax(logits, -1)
        probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
        return torch.log(probs)


def sample_onehot(logprobs: Tensor, uniform: Tensor | None = None) -> Tensor:
    """Straight-through one-hot sample ``[..., K]`` from log-probabilities.

    The forward value is an exact one-hot drawn by inverting the CDF with ``uniform`` (one U(0,1) number per
    categorical, shape ``[...]``; drawn here if not given): K times fewer random numbers than Gumbel-max,
    which matters when imagination samples 32 latents of 32 classes for a thousand states per step. The
    backward pass sees the gradient of the probabilities.
    """
    with float32(logprobs):
        probs = logprobs.float().exp()
        if uniform is None:
            uniform = torch.rand(probs.shape[:-1], device=probs.device)
        cdf = probs.detach().cumsum(-1)
        index = (cdf < uniform.unsqueeze(-1) * cdf[..., -1:]).sum(-1).clamp_max(probs.shape[-1] - 1)
        hard = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        return _straight_through(hard, probs)


def _straight_through(hard: Tensor, probs: Tensor) -> Tensor:
    """``hard`` forward, the gradient of ``probs`` backward (just ``hard`` when no gradient is recorded)."""
    if not (probs.requires_grad and torch.is_grad_enabled()):
        return hard
    return hard + (probs - probs.detach())


def mode_onehot(logprobs: Tensor) -> Tensor:
    """Straight-through one-hot of the most likely class ``[..., K]``."""
    with float32(logprobs):
        probs = logprobs.float().exp()
        hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return _straight_through(hard, probs)


def categorical_kl(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p‖q) of categoricals given log-probabilities ``[..., S, K]``, summed over ``S`` → ``[...]``."""
    with float32(logp):
        logp, logq = logp.float(), logq.float()
        return (logp.exp() * (logp - logq)).sum((-2, -1))


def categorical_entropy(logp: Tensor) -> Tensor:
    """Entropy of categoricals ``[..., S, K]``, summed over ``S`` → ``[...]``."""
    with float32(logp):
        logp = logp.float()
        return -(logp.exp() * logp).sum((-2, -1))


def kl_balance(post: Tensor, prior: Tensor, free_nats: float = 1.0,
               free_avg: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """DreamerV3's KL terms from posterior and prior log-probabilities ``[..., S, K]``.

    Returns ``(dyn, rep, kl)``:
    ``dyn = max(free, KL(sg(post)‖prior))`` trains the prior toward the posterior;
    ``rep = max(free, KL(post‖sg(prior)))`` makes the posterior predictable; ``kl`` is the raw value ``[...]``.
    Below ``free_nats`` a term is constant, so it sends no gradient: the model is not pushed to squeeze
    out information it needs once the KL is already small. The clamp applies to every step (``dyn`` and
    ``rep`` are ``[...]``, DreamerV3) or, with ``free_avg``, once to the mean over all steps (scalars,
    DreamerV2): there, steps below the threshold still get gradient while the average is above it.
    """
    kl = categorical_kl(post, prior)
    dyn = categorical_kl(post.detach(), prior)
    rep = categorical_kl(post, prior.detach())
    if free_avg:
        dyn, rep = dyn.mean(), rep.mean()
    return dyn.clamp_min(free_nats), rep.clamp_min(free_nats), kl.detach()


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of a Bernoulli with ``logits`` for float targets in [0,1], elementwise."""
    with float32(logits):
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")


class _SquaredErrorSum(torch.autograd.Function):
    """Σ (pred - scale·target)² over trailing dims, in float32, with one saved difference tensor.

    Written out because images make this the largest elementwise op of a world-model step: autograd's
    version makes and walks ~10 full-size temporaries, this one 3.
    """

    @staticmethod
    def forward(ctx: Any, pred: Tensor, target: Tensor, dims: int, scale: float) -> Tensor:
        diff = torch.sub(pred.float(), target, alpha=scale) if scale != 1.0 else pred.float() - target
        ctx.save_for_backward(diff)
        ctx.pred_dtype, ctx.dims = pred.dtype, dims
        flat = diff.flatten(-dims) if dims > 1 else diff
        return torch.linalg.vecdot(flat, flat)  # [lead]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (diff,) = ctx.saved_tensors
        g = grad.reshape(*grad.shape, *([1] * ctx.dims))
        return (diff * (2.0 * g)).to(ctx.pred_dtype), None, None, None


def mse_sum(pred: Tensor, target: Tensor, dims: int, target_scale: float = 1.0) -> Tensor:
    """Squared error of ``pred`` against ``target_scale · target`` summed over the last ``dims`` dims.

    DreamerV3's image and vector loss. ``target`` may be an integer tensor (uint8 frames with
    ``target_scale = 1/255``) and never needs a gradient.
    """
    with float32(pred):
        target = target if not target.is_floating_point() else target.float()
        return _SquaredErrorSum.apply(pred, target.detach(), dims, target_scale)
