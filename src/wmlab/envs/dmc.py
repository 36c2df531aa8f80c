"""dm_control as Gymnasium: every task of ``suite.ALL_TASKS``, GenRL's extra tasks and Stickman.

Ids are ``dmc:<domain>_<task>`` (``dmc:walker_walk``, ``dmc:ball_in_cup_catch``, ``dmc:stickman_flip``).
Observations: ``image`` rendered at the requested size by a MuJoCo camera (``render=fast``, the default: no
shadows or multisampling; ``render=full``: dm_control's own frames, 10× slower to draw) and ``proprio``,
the task's observation arrays flattened and concatenated. The action space is the task's own bounds;
:func:`wmlab.envs.make` normalises it to [-1, 1]. An episode that ends with discount 0 is *terminated*;
one that ends by the task's time limit (1000 steps for the suite) is *truncated*.

Extra tasks come from :mod:`wmlab.envs.dmc_extra` (``EXTRA_TASKS`` and ``load``) when that module exists.
"""

from __future__ import annotations

import functools
import os
import types

os.environ.setdefault("MUJOCO_GL", "egl")

from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from wmlab.envs.registry import suite  # noqa: E402
from wmlab.envs.wrappers import MujocoCamera, RenderedObservation  # noqa: E402

# Camera per domain where the default (0) is not the usual one for learning from pixels.
CAMERAS = {"quadruped": 2}


def _extra() -> types.ModuleType | None:
    """:mod:`wmlab.envs.dmc_extra` if it exists (an error inside it is raised, not hidden)."""
    try:
        from wmlab.envs import dmc_extra
    except ModuleNotFoundError as e:
        if e.name != "wmlab.envs.dmc_extra":
            raise
        return None
    return dmc_extra


@functools.cache
def _domains_and_tasks() -> tuple[tuple[str, str], ...]:
    from dm_control import suite as dm_suite

    extra = _extra()
    return tuple(dm_suite.ALL_TASKS) + tuple(extra.EXTRA_TASKS if extra else ())


def tasks() -> list[str]:
    return sorted(f"{d}_{t}" for d, t in _domains_and_tasks())


def _split(task: str) -> tuple[str, str]:
    for domain, name in _domains_and_tasks():
        if f"{domain}_{name}" == task:
            return domain, name
    raise ValueError(f"unknown dm_control task {task!r}")


def _load(domain: str, task: str, seed: int | None) -> Any:
    from dm_control import suite as dm_suite

    random = np.random.RandomState(seed)
    extra = _extra()
    if extra is not None and (domain, task) in extra.EXTRA_TASKS:
        return extra.load(domain, task, task_kwargs={"random": random}, environment_kwargs={})
    return dm_suite.load(domain, task, task_kwargs={"random": random})


class DMCEnv(RenderedObservation, gym.Env):
    """One dm_control task with pixel and proprio observations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: str, size: tuple[int, int] = (64, 64), camera: int | str | None = None,
                 render: str = "fast"):
        self.domain, self.task = _split(task)
        self.size = tuple(size)
        self._env = _load(self.domain, self.task, None)
        physics = self._env.physics
        self._camera: MujocoCamera | None = MujocoCamera(
            physics.model.ptr, self.size, camera=CAMERAS.get(self.domain, 0) if camera is None else camera,
            quality=render)
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                           spec.shape, np.float32)
        # Some tasks return Python floats, which dm_control's observation_spec() cannot describe.
        dim = sum(np.asarray(v).size for v in self._env.reset().observation.values())
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (*self.size, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
        })
        self.render_mode = "rgb_array"

    def _obs(self, time_step: Any) -> dict[str, np.ndarray]:
        proprio = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in time_step.observation.values()])
        return {"image": self.frame(), "proprio": proprio}

    def render(self) -> np.ndarray:
        if self._camera is None:
            raise RuntimeError("render() after close()")
        return self._camera.render(self._env.physics.data.ptr)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            # The task draws its random initial state from this generator.
            self._env.task._random = np.random.RandomState(seed)
        time_step = self._env.reset()
        return self._obs(time_step), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float64), self.action_space.low, self.action_space.high)
        time_step = self._env.step(action)
        reward = float(time_step.reward or 0.0)
        last = time_step.last()
        terminated = bool(last and time_step.discount == 0)
        return self._obs(time_step), reward, terminated, bool(last and not terminated), {}

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        # Frees dm_control's own GL context too, which some tasks make (quadruped escape, to upload terrain).
        self._env.physics.free()


@suite("dmc", tasks)
def build(task: str, size: tuple[int, int] = (64, 64), camera: int | str | None = None,
          render: str = "fast") -> gym.Env:
    return DMCEnv(task, size, camera, render)
