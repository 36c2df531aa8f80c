"""One registry of environments by string id: ``<suite>:<task>``.

Suites register themselves with :func:`suite`; their modules are imported only when one of their ids is
made or listed, so a missing optional dependency fails only for that suite, with the pip extra to install.

    env = make("dmc:walker_walk", size=(64, 64), action_repeat=2)
    obs, info = env.reset(seed=0)        # obs["image"]: uint8 [64,64,3]
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the user chose a backend


class UnknownEnvError(ValueError):
    """An env id that no suite defines."""


@dataclass
class Suite:
    name: str
    tasks: Callable[[], list[str]]
    build: Callable[..., gym.Env]
    extra: str  # the pip extra that brings its dependencies


_SUITES: dict[str, Suite] = {}
# Suite modules, imported lazily by prefix.
_MODULES = {
    "dmc": ("wmlab.envs.dmc", "dmc"),
    "metaworld": ("wmlab.envs.metaworld", "metaworld"),
    "procgen": ("wmlab.envs.procgen", "procgen"),
    "kitchen": ("wmlab.envs.kitchen", "kitchen"),
}


def suite(name: str, tasks: Callable[[], list[str]], extra: str) -> Callable[[Callable[..., gym.Env]], Any]:
    """Decorator: register ``build(task, size=..., seed=..., **kwargs) -> gym.Env`` as suite ``name``."""

    def wrap(build: Callable[..., gym.Env]) -> Callable[..., gym.Env]:
        _SUITES[name] = Suite(name, tasks, build, extra)
        return build

    return wrap


def _load_suite(name: str) -> Suite:
    if name not in _SUITES:
        if name not in _MODULES:
            raise UnknownEnvError(f"unknown env suite {name!r}; suites: {', '.join(sorted(_MODULES))}")
        module, extra = _MODULES[name]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ImportError(f"env suite {name!r} needs a package that is not installed ({e.name}); "
                              f"install it with `pip install wmlab[{extra}]`") from e
    return _SUITES[name]


def list_envs(suites: list[str] | None = None) -> list[str]:
    """Every registered env id (of the given suites), sorted."""
    ids = []
    for name in suites or sorted(_MODULES):
        ids += [f"{name}:{task}" for task in _load_suite(name).tasks()]
    return sorted(ids)


def make(env_id: str, size: tuple[int, int] = (64, 64), action_repeat: int = 1, time_limit: int | None = None,
         seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Build env ``env_id`` with ``image`` observations of ``size`` (height, width).

    ``action_repeat`` repeats each action (rewards summed); ``time_limit`` caps an episode at that many agent
    steps (after action repeat); ``seed`` seeds the first reset. Other keyword arguments go to the suite.
    """
    from wmlab.envs import wrappers

    name, sep, task = env_id.partition(":")
    if not sep or not task:
        raise UnknownEnvError(f"env id {env_id!r} is not <suite>:<task> (e.g. dmc:walker_walk)")
    s = _load_suite(name)
    tasks = s.tasks()
    if task not in tasks:
        close = difflib.get_close_matches(task, tasks, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(f'{name}:{c}' for c in close)}?" if close else \
            f"list them with wmlab.envs.list_envs(['{name}'])"
        raise UnknownEnvError(f"unknown env id {env_id!r}; {hint}")
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"image size must be positive (height, width), got {size}")
    env = s.build(task, size=size, **kwargs)
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be ≥ 1, got {action_repeat}")
    if action_repeat > 1:
        env = wrappers.ActionRepeat(env, action_repeat)
    if time_limit is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=int(time_limit))
    if seed is not None:
        env = wrappers.SeedFirstReset(env, seed)
    return env
