"""Collection policies by name: ``random``, ``sticky`` (random with repeated actions), and a hook for more.

A policy is a callable ``policy(obs) -> action`` built by a factory ``factory(action_space, seed, **kwargs)``.
A trained agent joins the same way: register a factory that loads its checkpoint (a path in ``kwargs``) and
returns a callable, and ``collect(..., policy="name", policy_kwargs={...})`` uses it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

Policy = Callable[[dict], Any]
_POLICIES: dict[str, Callable[..., Policy]] = {}


class UnknownPolicyError(ValueError):
    """A policy name (or setting) that no registered policy takes."""


def register_policy(name: str) -> Callable[[Callable[..., Policy]], Callable[..., Policy]]:
    """Decorator: register ``factory(action_space, seed, **kwargs) -> policy`` under ``name``."""

    def wrap(factory: Callable[..., Policy]) -> Callable[..., Policy]:
        _POLICIES[name] = factory
        return factory

    return wrap


def policy_names() -> list[str]:
    return sorted(_POLICIES)


def check_policy(name: str, **kwargs: Any) -> None:
    """Raise :class:`UnknownPolicyError` for an unknown name or a setting its factory does not take."""
    if name not in _POLICIES:
        raise UnknownPolicyError(f"unknown policy {name!r}; choose from {', '.join(policy_names())}")
    try:
        inspect.signature(_POLICIES[name]).bind(None, 0, **kwargs)
    except TypeError as e:
        raise UnknownPolicyError(f"policy {name!r} does not take these settings {sorted(kwargs)}: {e}") from None


def make_policy(name: str, action_space: Any, seed: int, **kwargs: Any) -> Policy:
    """Build policy ``name`` for ``action_space``; ``seed`` fixes its random choices."""
    check_policy(name, **kwargs)
    return _POLICIES[name](action_space, seed, **kwargs)


def _sampler(action_space: Any, rng: np.random.Generator) -> Callable[[], Any]:
    if action_space.shape == ():  # Discrete
        n = int(action_space.n)
        return lambda: np.int64(rng.integers(n))
    low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
    return lambda: rng.uniform(low, high).astype(np.float32)


@register_policy("random")
def random_policy(action_space: Any, seed: int) -> Policy:
    """Uniform random actions."""
    sample = _sampler(action_space, np.random.default_rng(seed))
    return lambda obs: sample()


@register_policy("sticky")
def sticky_policy(action_space: Any, seed: int, prob: float = 0.75) -> Policy:
    """Random actions, each repeating the previous one with probability ``prob`` (so a new action lasts
    1 / (1 - prob) steps on average): longer, more coherent motion than uniform noise, the usual way to make
    random datasets whose frames show what actions do."""
    if not 0.0 <= prob < 1.0:
        raise UnknownPolicyError(f"sticky policy: prob must be in [0, 1), got {prob}")
    rng = np.random.default_rng(seed)
    sample = _sampler(action_space, rng)
    last = [sample()]

    def policy(obs: dict) -> Any:
        if rng.random() >= prob:
            last[0] = sample()
        return last[0]

    return policy
