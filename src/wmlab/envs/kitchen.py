"""Franka Kitchen tasks as ``kitchen:<task>`` through Gymnasium-Robotics ``FrankaKitchen-v1``.

Tasks: microwave, kettle, burner (bottom burner), light (light switch), slide (slide cabinet), hinge (hinge
cabinet). The episode terminates when the task is done (``info["success"]`` = 1); it is truncated at 280
steps. Images come from a fast MuJoCo free camera looking at the counter (the view of Gymnasium-Robotics'
own renderer); ``proprio`` is the robot's 18-d state (9 joint positions and 9 velocities, with the env's
observation noise). Object states stay out of ``proprio``: they are what the images must show.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from wmlab.envs.registry import suite  # noqa: E402
from wmlab.envs.wrappers import MujocoCamera, RenderedObservation  # noqa: E402

TASKS = {"microwave": "microwave", "kettle": "kettle", "burner": "bottom burner", "light": "light switch",
         "slide": "slide cabinet", "hinge": "hinge cabinet"}
ROBOT_DIM = 18  # the first 18 entries of Gymnasium-Robotics' observation: robot qpos and qvel
VIEW = {"distance": 2.2, "azimuth": 70.0, "elevation": -35.0, "lookat": (-0.2, 0.5, 2.0)}


def tasks() -> list[str]:
    import gymnasium_robotics  # noqa: F401

    return sorted(TASKS)


class KitchenEnv(RenderedObservation, gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 12}

    def __init__(self, task: str, size: tuple[int, int] = (64, 64), camera: int | str | None = None,
                 render: str = "fast"):
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        self._env = gym.make("FrankaKitchen-v1", tasks_to_complete=[TASKS[task]], disable_env_checker=True)
        self.size = tuple(size)
        u = self._env.unwrapped
        self._camera = MujocoCamera(u.model, self.size, free_camera=VIEW, quality=render) if camera is None else \
            MujocoCamera(u.model, self.size, camera=camera, quality=render)
        self.action_space = gym.spaces.Box(-1.0, 1.0, self._env.action_space.shape, np.float32)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (*self.size, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (ROBOT_DIM,), np.float32),
        })
        self.render_mode = "rgb_array"

    def render(self) -> np.ndarray:
        return self._camera.render(self._env.unwrapped.data)

    def _obs(self, obs: dict) -> dict[str, np.ndarray]:
        return {"image": self.frame(), "proprio": np.asarray(obs["observation"][:ROBOT_DIM], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        obs, _ = self._env.reset(seed=seed)
        return self._obs(obs), {"success": 0.0}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._env.step(action)
        success = float(len(info.get("tasks_to_complete", [None])) == 0)
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), {"success": success}

    def close(self) -> None:
        self._camera.close()
        self._env.close()


@suite("kitchen", tasks)
def build(task: str, size: tuple[int, int] = (64, 64), camera: int | str | None = None,
          render: str = "fast") -> gym.Env:
    """``camera=None``: a free camera over the counter; or one of the model's cameras by name or index."""
    return KitchenEnv(task, size, camera, render)
