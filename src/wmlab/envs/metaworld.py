"""Meta-World v3 as ``metaworld:<task>`` for every MT50 task (``metaworld:drawer-open`` → ``drawer-open-v3``).

Images come from a fast MuJoCo camera (default ``corner2``; ``camera=`` picks any of the model's cameras:
``corner``, ``corner2``, ``corner3``, ``corner4``, ``topview``, ``behindGripper``, ``gripperPOV``). The corner
cameras hang upside down, so their images are turned upright. ``proprio`` is the 39-d state vector with the
goal visible (as in MT1/MT50); ``info["success"]`` is Meta-World's success flag. Episodes are truncated at
500 steps (Meta-World's own limit; it refuses to step further).

Object and goal positions are drawn from the env's own generator, which ``reset(seed=s)`` seeds: a seed
fixes the whole episode, and different seeds give different layouts (not only MT1's 50 fixed variants).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from wmlab.envs.registry import suite  # noqa: E402
from wmlab.envs.wrappers import MujocoCamera, RenderedObservation  # noqa: E402


def tasks() -> list[str]:
    from metaworld.env_dict import MT50_V3

    return sorted(name.removesuffix("-v3") for name in MT50_V3)


class MetaWorldEnv(RenderedObservation, gym.Env):
    """One Meta-World task with pixel and state observations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, size: tuple[int, int] = (64, 64), camera: str = "corner2",
                 flip: bool | None = None, render: str = "fast"):
        from metaworld.env_dict import MT50_V3

        env = MT50_V3[f"{task}-v3"]()
        # Goal visible in the state, positions drawn from env.np_random at every reset (what set_task would
        # freeze to one of 50 precomputed variants).
        env._partially_observable = False
        env.__dict__.pop("sawyer_observation_space", None)  # a cached property of the observability
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        self._env = env
        self.size = tuple(size)
        self._camera = MujocoCamera(env.model, self.size, camera=camera, flip=flip, quality=render)
        dim = env.sawyer_observation_space.shape[0]
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (*self.size, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
        })
        self.render_mode = "rgb_array"
        self._seeded = False

    def render(self) -> np.ndarray:
        return self._camera.render(self._env.data)

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.frame(), "proprio": np.asarray(state, np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        import mujoco

        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            # Meta-World ignores reset(seed=); its seed() seeds the generator that places objects and goal.
            self._env.seed(int(self.np_random.integers(2**31)) if seed is None else int(seed))
            self._seeded = True
        # Meta-World resets positions only; clear the solver's warm start and every other dynamic state too, or
        # the same seed gives (slightly) different rollouts depending on the previous episode.
        mujoco.mj_resetData(self._env.model, self._env.data)
        state, _ = self._env.reset()
        return self._obs(state), {"success": 0.0}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        state, reward, terminated, truncated, info = self._env.step(action)
        return self._obs(state), float(reward), bool(terminated), bool(truncated), {
            "success": float(info.get("success", 0.0))}

    def close(self) -> None:
        self._camera.close()
        self._env.close()


@suite("metaworld", tasks)
def build(task: str, size: tuple[int, int] = (64, 64), camera: str = "corner2", flip: bool | None = None,
          render: str = "fast") -> gym.Env:
    return MetaWorldEnv(task, size, camera, flip, render)
