"""Procgen games as ``procgen:<game>`` (``procgen:coinrun``), through the gym3 API of ``procgen``.

Each episode plays one level: ``reset(seed=s)`` plays level ``s`` (so a dataset's episodes are distinct
levels, and train/test splits by seed range share none); without a seed the next level is drawn from the
env's generator. Procgen renders 64×64 only: :func:`wmlab.envs.make` resizes other sizes. 15 discrete
actions. An episode ends by dying or finishing the level (*terminated*; ``info["success"]`` says which) or
by Procgen's own step limit (*truncated*: 1000 steps, 500 in maze and leaper). Procgen starts the next
level by itself and shows no frame of the finished one, so the last frame before the end is kept as the
final observation.

Every ``reset`` builds a fresh one-level game, so an episode's frames depend only on its level and actions,
never on what the env object played before. Building is cheap (about 1–3 ms; only the first game of a
process takes about 2.5 s, while Procgen loads its assets), far below playing the episode; restoring a saved
state (``get_state``/``set_state``) would cost as much and still needs a game built for that level. The game
steps in the calling thread (``num_threads=0``, same frames): a single game gains nothing from Procgen's
thread pool, and handing each step to a pool thread adds up to a third to the step time on a busy machine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wmlab.envs.registry import suite

GAMES = ["bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot", "heist",
         "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot"]


# Procgen's per-game step limit (not reported by the env; measured by playing no-ops until the level ends).
TIMEOUTS = {"maze": 500, "leaper": 500}
MAX_LEVEL = 2**31 - 1  # level seeds are int32


def tasks() -> list[str]:
    import procgen  # noqa: F401  (fails here, with the extra to install, when procgen is missing)

    return list(GAMES)


class ProcgenEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, distribution_mode: str = "hard", use_backgrounds: bool = True):
        self.game = game
        self.options = {"distribution_mode": distribution_mode, "use_backgrounds": use_backgrounds}
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)})
        self.action_space = gym.spaces.Discrete(15)
        self.render_mode = "rgb_array"
        self._env = None
        self._last: np.ndarray | None = None
        self._timeout = TIMEOUTS.get(game, 1000)
        self._steps = 0

    def _start(self, level: int) -> np.ndarray:
        """Replace the game with a new one that plays only level ``level``; return its first frame."""
        from procgen import ProcgenGym3Env

        if self._env is not None:
            self._env.close()
        self._env = ProcgenGym3Env(num=1, env_name=self.game, start_level=int(level), num_levels=1,
                                   rand_seed=int(level), num_threads=0, **self.options)
        _, obs, _ = self._env.observe()
        return obs["rgb"][0].copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None and not 0 <= int(seed) <= MAX_LEVEL:
            raise ValueError(f"procgen level seed must be in [0, {MAX_LEVEL}], got {seed}")
        level = int(seed) if seed is not None else int(self.np_random.integers(0, MAX_LEVEL))
        self._last = self._start(level)
        self._steps = 0
        return {"image": self._last}, {"level": level}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        self._env.act(np.array([int(action)], np.int32))
        reward, obs, first = self._env.observe()
        self._steps += 1
        if first[0]:  # the level ended; the observation already shows the next one
            success = bool(self._env.get_info()[0].get("prev_level_complete", 0))
            timeout = not success and self._steps >= self._timeout
            return {"image": self._last.copy()}, float(reward[0]), not timeout, timeout, {"success": float(success)}
        self._last = obs["rgb"][0].copy()
        return {"image": self._last}, float(reward[0]), False, False, {"success": 0.0}

    def render(self) -> np.ndarray:
        return self._last

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


@suite("procgen", tasks)
def build(task: str, size: tuple[int, int] = (64, 64), distribution_mode: str = "hard",
          use_backgrounds: bool = True) -> gym.Env:
    return ProcgenEnv(task, distribution_mode, use_backgrounds)  # 64×64; make() resizes
