"""Stickman: a planar humanoid domain for dm_control with GenRL's 17 tasks.

>>> from wmlab.envs.stickman import load
>>> env = load("walk", random=0)          # a dm_control.rl.control.Environment
>>> frame = env.physics.render(64, 64, camera_id="side")
"""

from wmlab.envs.stickman.physics import Physics, get_model_and_assets
from wmlab.envs.stickman.tasks import TASK_NAMES, Stickman, load

__all__ = ["Physics", "Stickman", "TASK_NAMES", "get_model_and_assets", "load"]
