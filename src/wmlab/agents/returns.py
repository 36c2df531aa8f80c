"""Returns, return normalisation and action distributions of the Dreamer actor-critic.

Shape legend: ``N`` imagined trajectories, ``H`` horizon, ``A`` action size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.nn.dists import float32


def lambda_return(reward: Tensor, value: Tensor, disc: Tensor, lam: float) -> Tensor:
    """λ-returns ``[N,H]`` of a trajectory of ``H+1`` states ``s_0..s_H``.

    ``reward[:, t]``, ``value[:, t]`` and ``disc[:, t]`` (γ times the continue probability) belong to state
    ``s_t``, each ``[N,H+1]``; the reward of ``s_0`` is not used. The recursion runs backwards from
    ``R_H = v_H``: ``R_t = r_{t+1} + d_{t+1}·((1-λ)·v_{t+1} + λ·R_{t+1})``.
    """
    if not reward.shape == value.shape == disc.shape or reward.dim() != 2 or reward.shape[1] < 2:
        raise ValueError(f"lambda_return needs reward, value and disc of one shape [N,H+1] with H >= 1, got "
                         f"{tuple(reward.shape)}, {tuple(value.shape)}, {tuple(disc.shape)}")
    rets = [value[:, -1]]
    interm = reward[:, 1:] + disc[:, 1:] * (1 - lam) * value[:, 1:]  # [N,H]
    for t in reversed(range(reward.shape[1] - 1)):
        rets.append(interm[:, t] + disc[:, t + 1] * lam * rets[-1])
    return torch.stack(rets[1:][::-1], 1)


class ReturnNorm(nn.Module):
    """EMA of the ``low``–``high`` percentile range of returns; advantages are divided by ``max(1, range)``.

    Dividing by at least 1 shrinks large returns to a common scale but never amplifies the small, noisy
    returns of sparse-reward tasks. The state is two buffers, so it checkpoints with the model.
    """

    def __init__(self, low: float = 5.0, high: float = 95.0, decay: float = 0.99, enabled: bool = True) -> None:
        super().__init__()
        self.low, self.high, self.decay, self.enabled = low / 100.0, high / 100.0, decay, enabled
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        """Fold one batch of returns into the running percentiles."""
        if not self.enabled:
            return
        flat = returns.detach().float().flatten()
        q = torch.quantile(flat, torch.tensor([self.low, self.high], device=flat.device))
        rate = torch.where(self.count == 0, 1.0, 1.0 - self.decay)  # the first batch sets the range
        self.lo.lerp_(q[0], rate)
        self.hi.lerp_(q[1], rate)
        self.count += 1

    def scale(self) -> Tensor:
        """``max(1, hi - lo)`` (1 when disabled)."""
        if not self.enabled:
            return torch.ones((), device=self.lo.device)
        return torch.clamp(self.hi - self.lo, min=1.0)


class ActionDist:
    """The policy's distribution over one action.

    Continuous actions: a Normal (DreamerV3) or a Normal truncated to ``[-1, 1]`` (DreamerV2's
    ``trunc_normal``), each with its mean tanh-bounded and its std in ``[min_std, max_std]``. Discrete
    actions: a unimix categorical with one-hot samples and straight-through gradient. ``sample`` is
    reparameterised where the action space allows it: the truncated Normal draws by its inverse CDF, so
    a sample is a differentiable function of mean and std.
    """

    KINDS = ("normal", "trunc_normal")  # the continuous distributions ``dist`` may name
    _EPS = 1e-6  # keeps the inverse CDF off 0 and 1, where its derivative is infinite

    def __init__(self, out: Tensor, discrete: bool, min_std: float = 0.1, max_std: float = 1.0,
                 unimix: float = 0.01, dist: str = "normal", std_bias: float = 2.0) -> None:
        if dist not in self.KINDS:
            raise ValueError(f"actor dist={dist!r} must be one of {', '.join(self.KINDS)}")
        self.discrete = discrete
        self.truncated = dist == "trunc_normal" and not discrete
        with float32(out):
            out = out.float()
            if discrete:
                logp = F.log_softmax(out, -1)
                if unimix > 0:
                    logp = torch.log((1 - unimix) * logp.exp() + unimix / out.shape[-1])
                self.logp = logp
            else:
                mean, std = out.chunk(2, -1)
                self.mean = torch.tanh(mean)
                self.std = (max_std - min_std) * torch.sigmoid(std + std_bias) + min_std
                if self.truncated:  # standardised bounds α, β and the mass Z = Φ(β) - Φ(α) inside them
                    self.alpha = (-1.0 - self.mean) / self.std
                    self.beta = (1.0 - self.mean) / self.std
                    self.cdf_alpha = torch.special.ndtr(self.alpha)
                    self.mass = (torch.special.ndtr(self.beta) - self.cdf_alpha).clamp_min(self._EPS)

    def sample(self) -> Tensor:
        """``[..., A]``: a reparameterised (truncated) Normal sample, or a straight-through one-hot."""
        if self.discrete:
            probs = self.logp.exp()
            index = torch.multinomial(probs.detach().flatten(0, -2), 1).view(probs.shape[:-1])
            hard = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
            return hard + probs - probs.detach()
        if self.truncated:
            u = self.cdf_alpha + torch.rand_like(self.mean) * self.mass
            z = torch.special.ndtri(u.clamp(self._EPS, 1.0 - self._EPS))
            return (self.mean + self.std * z).clamp(-1.0, 1.0)
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        if self.discrete:
            probs = self.logp.exp()
            hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
            return hard + probs - probs.detach()
        return self.mean  # inside (-1, 1): also the truncated Normal's mode

    def log_prob(self, action: Tensor) -> Tensor:
        """``[...]`` log-probability of actions ``[..., A]`` (one-hot for discrete)."""
        action = action.detach().float()
        if self.discrete:
            return (self.logp * action).sum(-1)
        z = (action - self.mean) / self.std
        logp = -0.5 * z * z - torch.log(self.std) - 0.5 * math.log(2 * math.pi)
        if self.truncated:
            logp = logp - torch.log(self.mass)
        return logp.sum(-1)

    def entropy(self) -> Tensor:
        if self.discrete:
            return -(self.logp.exp() * self.logp).sum(-1)
        ent = torch.log(self.std) + 0.5 * math.log(2 * math.pi * math.e)
        if self.truncated:  # H = log(√(2πe)·σ·Z) + (α·φ(α) - β·φ(β)) / (2Z)
            pdf = lambda x: torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
            ent = ent + torch.log(self.mass) + (self.alpha * pdf(self.alpha) - self.beta * pdf(self.beta)) / (
                2 * self.mass)
        return ent.sum(-1)
