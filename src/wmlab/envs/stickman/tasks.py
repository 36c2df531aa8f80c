"""The stickman's tasks: one :class:`Stickman` task class, parametrised by a reward function.

The task set follows GenRL (Mazzaglia et al., 2024, https://arxiv.org/abs/2406.18043): locomotion
(stand / walk / run as in the suite's walker), flips, and static poses. Reward definitions live in
:mod:`wmlab.envs.stickman.rewards`; this module adds episode initialisation, observations and the
control timing, which match the suite's walker (25 s episodes, 40 Hz control).
"""

from __future__ import annotations

import collections
import functools
from typing import Callable

import mujoco
import numpy as np
from dm_control.rl import control
from dm_control.suite import base
from dm_control.suite.utils import randomizers

from wmlab.envs.stickman import rewards
from wmlab.envs.stickman.physics import Physics, get_model_and_assets

DEFAULT_TIME_LIMIT = 25.0  # seconds
CONTROL_TIMESTEP = 0.025  # seconds (10 physics steps of 2.5 ms)
WALK_SPEED = 1.0  # m/s, as the suite's walker
RUN_SPEED = 8.0  # m/s, as the suite's walker

RewardFn = Callable[[Physics], float]

# name -> reward; the order is the documented task order.
REWARDS: dict[str, RewardFn] = {
    "stand": rewards.stand,
    "walk": functools.partial(rewards.move, speed=WALK_SPEED),
    "run": functools.partial(rewards.move, speed=RUN_SPEED),
    "flip": functools.partial(rewards.flip, spin=rewards.FLIP_SPIN),
    "flipping": rewards.flipping,
    "backflip": functools.partial(rewards.flip, spin=-rewards.FLIP_SPIN),
    "urlb_flip": rewards.urlb_flip,
    "headstand": rewards.headstand,
    "hands_up": rewards.hands_up,
    "boxing": rewards.boxing,
    "arabesque": rewards.arabesque,
    "lying_down": rewards.lying_down,
    "legs_up": rewards.legs_up,
    "high_kick": rewards.high_kick,
    "one_foot": rewards.one_foot,
    "lunge_pose": rewards.lunge_pose,
    "sit_knees": rewards.sit_knees,
}
TASK_NAMES: tuple[str, ...] = tuple(REWARDS)


def lowest_point(physics: Physics) -> float:
    """Height of the lowest point of any body geom (capsules and spheres; the floor excluded)."""
    model, data = physics.model, physics.data
    body_geoms = model.geom_bodyid > 0
    radius = model.geom_size[:, 0]
    # A capsule reaches |z-component of its axis| * half-length beyond its centre; a sphere does not.
    is_capsule = model.geom_type == mujoco.mjtGeom.mjGEOM_CAPSULE
    axis_z = np.abs(data.geom_xmat[:, 8])  # [G], zz entry of each geom's rotation matrix
    reach = np.where(is_capsule, axis_z * model.geom_size[:, 1], 0.0) + radius
    return float(np.min(data.geom_xpos[body_geoms, 2] - reach[body_geoms]))


class Stickman(base.Task):
    """A stickman task: random initial joint angles, walker-style observations, one reward function."""

    def __init__(self, reward_fn: RewardFn, random: int | np.random.RandomState | None = None) -> None:
        self._reward_fn = reward_fn
        super().__init__(random=random)

    def initialize_episode(self, physics: Physics) -> None:
        """Random joint angles and body rotation, then raised until no limb is inside the floor.

        The body then falls under gravity from there, like the suite's walker, so agents learn to
        get up from any pose; the lift avoids the explosive contact forces of deep floor penetration.
        """
        randomizers.randomize_limited_and_rotational_joints(physics, self.random)
        physics.forward()
        depth = lowest_point(physics)
        if depth < 0:
            physics.named.data.qpos["rootz"] -= depth
        super().initialize_episode(physics)

    def get_observation(self, physics: Physics) -> collections.OrderedDict:
        """Body orientations, torso height and joint velocities (as the suite's walker)."""
        obs = collections.OrderedDict()
        obs["orientations"] = physics.orientations()
        obs["height"] = np.asarray(physics.torso_height(), np.float64)
        obs["velocity"] = physics.velocity()
        return obs

    def get_reward(self, physics: Physics) -> float:
        """The task's reward, in [0, 1]."""
        return float(self._reward_fn(physics))


def load(
    task: str,
    time_limit: float = DEFAULT_TIME_LIMIT,
    random: int | np.random.RandomState | None = None,
    environment_kwargs: dict | None = None,
) -> control.Environment:
    """Build the stickman environment for ``task`` (one of :data:`TASK_NAMES`)."""
    if task not in REWARDS:
        raise ValueError(f"unknown stickman task {task!r}; choose one of: {', '.join(TASK_NAMES)}")
    physics = Physics.from_xml_string(*get_model_and_assets())
    return control.Environment(
        physics,
        Stickman(REWARDS[task], random=random),
        time_limit=time_limit,
        control_timestep=CONTROL_TIMESTEP,
        **(environment_kwargs or {}),
    )
