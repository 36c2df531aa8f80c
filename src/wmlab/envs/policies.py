"""Collection policies by name: ``random``, ``sticky`` (random with repeated actions), ``expert`` (Meta-World's
scripted policies), and a hook for more.

A policy is a callable ``policy(obs) -> action`` built by a factory ``factory(action_space, seed, **kwargs)``;
a factory that takes an ``env_id`` argument is given the id of the env it acts in.
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


def _with_env(name: str, kwargs: dict[str, Any], env_id: str | None) -> dict[str, Any]:
    if "env_id" in kwargs:
        raise UnknownPolicyError(f"policy {name!r}: env_id is set from the env being collected, not a setting")
    if "env_id" in inspect.signature(_POLICIES[name]).parameters:
        return {**kwargs, "env_id": env_id}
    return kwargs


def check_policy(name: str, env_id: str | None = None, **kwargs: Any) -> None:
    """Raise :class:`UnknownPolicyError` for an unknown name or a setting its factory does not take."""
    if name not in _POLICIES:
        raise UnknownPolicyError(f"unknown policy {name!r}; choose from {', '.join(policy_names())}")
    try:
        inspect.signature(_POLICIES[name]).bind(None, 0, **_with_env(name, kwargs, env_id))
    except TypeError as e:
        raise UnknownPolicyError(f"policy {name!r} does not take these settings {sorted(kwargs)}: {e}") from None
    check = getattr(_POLICIES[name], "check", None)
    if check is not None:
        check(**_with_env(name, kwargs, env_id))


def make_policy(name: str, action_space: Any, seed: int, env_id: str | None = None, **kwargs: Any) -> Policy:
    """Build policy ``name`` for ``action_space`` in env ``env_id``; ``seed`` fixes its random choices."""
    check_policy(name, env_id, **kwargs)
    return _POLICIES[name](action_space, seed, **_with_env(name, kwargs, env_id))


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


def _expert_class(env_id: str | None, noise: float = 0.0) -> Any:
    if noise < 0:
        raise UnknownPolicyError(f"expert policy: noise must be >= 0 (std of Gaussian action noise), got {noise}")
    if env_id is None or not env_id.startswith("metaworld:"):
        raise UnknownPolicyError(f"policy 'expert' has scripted experts for metaworld:* envs only, not {env_id!r}; "
                                 f"use policy=random or policy=sticky")
    from metaworld.policies import ENV_POLICY_MAP

    task = env_id.split(":", 1)[1]
    if f"{task}-v3" not in ENV_POLICY_MAP:
        raise UnknownPolicyError(f"Meta-World has no scripted policy for {task!r}")
    return ENV_POLICY_MAP[f"{task}-v3"]


@register_policy("expert")
def expert_policy(action_space: Any, seed: int, env_id: str | None = None, noise: float = 0.0) -> Policy:
    """Meta-World's scripted policy for the task (``metaworld.policies``), acting from the 39-d state in
    ``obs["proprio"]``, plus Gaussian action noise of std ``noise``: demonstration videos, like the robot videos
    the video-pretraining methods learn from."""
    expert = _expert_class(env_id, noise)()
    rng = np.random.default_rng(seed)
    low, high = action_space.low, action_space.high

    def policy(obs: dict) -> Any:
        action = np.asarray(expert.get_action(np.asarray(obs["proprio"], np.float64)), np.float64)
        if noise:
            action = action + rng.normal(0.0, noise, action.shape)
        return np.clip(action, low, high).astype(np.float32)

    return policy


expert_policy.check = _expert_class  # type: ignore[attr-defined]  # checked before any worker starts
