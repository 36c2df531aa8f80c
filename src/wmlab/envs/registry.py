"""One registry of environments by string id: ``<suite>:<task>``.

Suites register themselves with :func:`suite`; their modules are imported only when one of their ids is
made or listed, so a missing optional dependency fails only for that suite, with the command that installs it.

    env = make("dmc:walker_walk", size=(64, 64), action_repeat=2)
    obs, info = env.reset(seed=0)        # obs["image"]: uint8 [64,64,3]
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from wmlab.config import MissingDependencyError  # noqa: F401  (raised here; re-exported by wmlab.envs)

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the user chose a backend


class UnknownEnvError(ValueError):
    """An env id that no suite defines."""


@dataclass
class Suite:
    name: str
    tasks: Callable[[], list[str]]
    build: Callable[..., gym.Env]


_SUITES: dict[str, Suite] = {}
# Suite modules, imported lazily by prefix, and the command that installs each one's dependencies.
_MODULES = {
    "dmc": ("wmlab.envs.dmc", "pip install wmlab[dmc]"),
    "metaworld": ("wmlab.envs.metaworld", "pip install wmlab[metaworld]"),
    # procgen-mirror's metadata pins numpy<2 and gym<1, so it installs without dependencies.
    "procgen": ("wmlab.envs.procgen", "pip install --no-deps procgen-mirror==0.10.7 gym3==0.3.3 gym==0.26.2 "
                "gym-notices cffi pycparser cloudpickle"),
    "kitchen": ("wmlab.envs.kitchen", "pip install wmlab[kitchen]"),
}


def suite(name: str, tasks: Callable[[], list[str]]) -> Callable[[Callable[..., gym.Env]], Any]:
    """Decorator: register ``build(task, size=(H, W), **kwargs) -> gym.Env`` as suite ``name``.

    ``tasks()`` lists the suite's task names. ``build`` returns the bare env: Dict observations with an
    ``image`` (at ``size`` if it can render at any size) and its native action space; :func:`make` adds
    the common wrappers."""

    def wrap(build: Callable[..., gym.Env]) -> Callable[..., gym.Env]:
        _SUITES[name] = Suite(name, tasks, build)
        return build

    return wrap


def _load_suite(name: str) -> Suite:
    """The suite ``name``, its module imported; :class:`MissingDependencyError` if its package is missing."""
    if name not in _MODULES:
        raise UnknownEnvError(f"unknown env suite {name!r}; suites: {', '.join(sorted(_MODULES))}")
    module, install = _MODULES[name]
    try:
        if name not in _SUITES:
            importlib.import_module(module)
        _SUITES[name].tasks()  # the task list comes from the simulator package itself
    except ImportError as e:
        if (e.name or "").startswith("wmlab"):
            raise  # our own bug, not a missing dependency
        raise MissingDependencyError(f"env suite {name!r} needs {e.name!r}, which is not installed; "
                                     f"install it with `{install}`") from e
    return _SUITES[name]


def list_envs(suites: list[str] | None = None) -> list[str]:
    """Every registered env id, sorted.

    With ``suites`` named, a suite whose package is missing raises :class:`MissingDependencyError`; without,
    such suites are left out with a warning that says how to install them."""
    ids = []
    for name in suites or sorted(_MODULES):
        try:
            ids += [f"{name}:{task}" for task in _load_suite(name).tasks()]
        except MissingDependencyError as e:
            if suites:
                raise
            warnings.warn(f"{e}; its envs are not listed", stacklevel=2)
    return sorted(ids)


def render_setting(render: str) -> dict[str, str]:
    """The ``render=`` keyword to pass to :func:`make` for a job's ``render`` setting: none for the default
    ``fast`` (so suites without a MuJoCo camera, e.g. Procgen, take it), else ``{"render": render}``."""
    return {} if render == "fast" else {"render": render}


def make(env_id: str, size: tuple[int, int] = (64, 64), action_repeat: int = 1, time_limit: int | None = None,
         seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Build env ``env_id`` with ``image`` observations of ``size`` (height, width).

    The suite's env renders at ``size`` where it can (MuJoCo suites); otherwise the image is resized
    (Procgen renders 64×64 only). Continuous actions are normalised to [-1, 1]. ``action_repeat`` repeats
    each action (rewards summed); ``time_limit`` caps an episode at that many agent steps (after action
    repeat; the suite's own limit still applies); ``seed`` seeds the first reset that gives no seed of its
    own. Other keyword arguments go to the suite (e.g. ``camera=``; ``render="fast"|"full"`` for the MuJoCo
    suites, see :class:`wmlab.envs.wrappers.MujocoCamera`); one the suite does not take is an error that lists
    the ones it does.
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
    if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
        raise ValueError(f"image size must be two positive ints (height, width), got {size!r}")
    size = (int(size[0]), int(size[1]))
    if int(action_repeat) < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    if time_limit is not None and int(time_limit) < 1:
        raise ValueError(f"time_limit must be >= 1 agent step or None, got {time_limit}")
    params = inspect.signature(s.build).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = [n for n in params if n not in ("task", "size")]
        raise ValueError(f"{name}:{task} takes no setting {', '.join(map(repr, unknown))}; its settings: "
                         f"{', '.join(takes) or 'none'}")
    env = s.build(task, size=size, **kwargs)
    if action_repeat > 1:  # innermost, so that only the frame of the last repeat is rendered (and resized)
        env = wrappers.ActionRepeat(env, int(action_repeat))
    if env.observation_space["image"].shape[:2] != size:
        env = wrappers.ResizeImage(env, size)
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and not ((space.low == -1).all() and (space.high == 1).all()
                                                  and space.dtype == np.float32):
        env = wrappers.NormalizeAction(env)
    if time_limit is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=int(time_limit))
    if seed is not None:
        env = wrappers.SeedFirstReset(env, seed)
    return env
