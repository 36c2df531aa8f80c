"""Meta-World v3 as ``metaworld:<task>`` for every MT50 task (``metaworld:drawer-open``).

Images come from a fast MuJoCo camera (default ``corner2``, flipped upright: Meta-World's corner cameras
render upside down); ``proprio`` is the 39-d state vector; ``info["success"]`` is Meta-World's success flag.
Episodes are truncated at 500 steps (Meta-World's own limit). ``reset(seed=s)`` plays goal variant ``s mod 50``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from wmlab.envs.registry import suite  # noqa: E402
from wmlab.envs.wrappers import MujocoCamera  # noqa: E402


def tasks() -> list[str]:
    import metaworld

    return sorted(name.removesuffix("-v3") for name in metaworld.MT50.ENV_NAMES) if hasattr(
        metaworld.MT50, "ENV_NAMES") else sorted(n.removesuffix("-v3") for n in metaworld.ALL_V3_ENVIRONMENTS)


class MetaWorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, size: tuple[int, int] = (64, 64), camera: str = "corner2"):
        import metaworld  # noqa: F401  (registers the Meta-World/ ids)

        self._env = gym.make("Meta-World/MT1", env_name=f"{task}-v3", disable_env_checker=True)
        self.size = tuple(size)
        # Meta-World draws each episode's goal from 50 task variants with a generator that reset(seed) does not
        # reach; choose the variant ourselves so that a seed fixes the whole episode.
        wrapper = self._env
        while not hasattr(wrapper, "tasks") and hasattr(wrapper, "env"):
            wrapper = wrapper.env
        self._tasks = list(wrapper.tasks)
        wrapper.sample_tasks_on_reset = False
        u = self._env.unwrapped
        self._camera = MujocoCamera(u.model, self.size, camera=camera, flip=camera.startswith("corner"))
        self.action_space = gym.spaces.Box(-1.0, 1.0, self._env.action_space.shape, np.float32)
        dim = self._env.observation_space.shape[0]
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (*self.size, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
        })
        self.render_mode = "rgb_array"

    def render(self) -> np.ndarray:
        return self._camera.render(self._env.unwrapped.data)

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.render(), "proprio": np.asarray(state, np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        import mujoco

        super().reset(seed=seed)
        # Meta-World resets positions only; clear the solver's warm start and every other dynamic state too, or
        # the same seed gives (slightly) different rollouts depending on the previous episode.
        u = self._env.unwrapped
        mujoco.mj_resetData(u.model, u.data)
        variant = seed % len(self._tasks) if seed is not None else int(self.np_random.integers(len(self._tasks)))
        u.set_task(self._tasks[variant])
        state, _ = self._env.reset(seed=seed)
        return self._obs(state), {"success": 0.0}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        state, reward, terminated, truncated, info = self._env.step(action)
        return self._obs(state), float(reward), bool(terminated), bool(truncated), {
            "success": float(info.get("success", 0.0))}

    def close(self) -> None:
        self._camera.close()
        self._env.close()


@suite("metaworld", tasks, extra="metaworld")
def build(task: str, size: tuple[int, int] = (64, 64), camera: str = "corner2") -> gym.Env:
    return MetaWorldEnv(task, size, camera)
