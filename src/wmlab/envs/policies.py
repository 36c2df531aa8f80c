"""Collection policies by name: ``random``, ``sticky`` (random with repeated actions), and a hook for
trained policies (``register_policy``). A policy is a callable ``policy(obs) -> action``."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Policy = Callable[[dict], Any]
_POLICIES: dict[str, Callable[..., Policy]] = {}


def register_policy(name: str) -> Callable[[Callable[..., Policy]], Callable[..., Policy]]:
    """Decorator: register ``factory(action_space, seed, **kwargs) -> policy`` under ``name``."""

    def wrap(factory: Callable[..., Policy]) -> Callable[..., Policy]:
        _POLICIES[name] = factory
        return factory

    return wrap


def make_policy(name: str, action_space: Any, seed: int, check_only: bool = False, **kwargs: Any) -> Policy | None:
    if name not in _POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(sorted(_POLICIES))}")
    if check_only:
        return None
    return _POLICIES[name](action_space, seed, **kwargs)


def _sampler(action_space: Any, rng: np.random.Generator) -> Callable[[], Any]:
    if action_space.shape == ():  # Discrete
        n = int(action_space.n)
        return lambda: np.int64(rng.integers(n))
    low, high = action_space.low, action_space.high
    return lambda: rng.uniform(low, high).astype(np.float32)


@register_policy("random")
def random_policy(action_space: Any, seed: int) -> Policy:
    """Uniform random actions."""
    sample = _sampler(action_space, np.random.default_rng(seed))
    return lambda obs: sample()


@register_policy("sticky")
def sticky_policy(action_space: Any, seed: int, prob: float = 0.75) -> Policy:
    """Random actions, each repeating the previous one with probability ``prob``: longer, more coherent motion
    than uniform noise, the usual way to make random datasets whose frames show what actions do."""
    rng = np.random.default_rng(seed)
    sample = _sampler(action_space, rng)
    last = [sample()]

    def policy(obs: dict) -> Any:
        if rng.random() >= prob:
            last[0] = sample()
        return last[0]

    return policy
