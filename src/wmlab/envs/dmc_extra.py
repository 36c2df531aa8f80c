"""dm_control tasks beyond the suite: the stickman domain and GenRL's extra walker/cheetah/quadruped tasks.

GenRL (Mazzaglia et al., 2024, https://arxiv.org/abs/2406.18043) evaluates behaviours such as flips,
yoga poses and backwards running on the suite's own bodies. Here they are tasks on dm_control's
unmodified models and Physics classes (subclassed only to add measurements), with three deliberate
changes: floors are re-centred at x=0 so bodies moving backwards stay on a rendered floor; the
cheetah's "flipping" pays for spinning either way (a boolean slip made GenRL's backward branch
ignore spin); the quadruped's "two_legs" lifted-feet term has a real margin (GenRL's integer
division made it a step function).

``load(domain, task, task_kwargs={"random": seed})`` builds any pair in :data:`EXTRA_TASKS`;
:func:`dm_control.suite.load` stays the way to build the suite's own tasks.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the user chose a backend

import functools  # noqa: E402
from typing import Callable  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from dm_control.rl import control  # noqa: E402
from dm_control.suite import cheetah, common, quadruped, walker  # noqa: E402
from lxml import etree  # noqa: E402

from wmlab.envs.stickman import rewards as pose  # noqa: E402
from wmlab.envs.stickman import tasks as stickman_tasks  # noqa: E402
from wmlab.envs.stickman.physics import AnySizeRenderMixin, PlanarLegsMixin  # noqa: E402


class UnknownTaskError(ValueError):
    """A (domain, task) pair that this module does not define."""


def _recentre_floor(xml: str | bytes, name: str, half_length: float) -> bytes:
    """The model with its floor plane centred at the origin and ``half_length`` long in x."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    floor = root.find(f".//geom[@name='{name}']")
    floor.set("pos", "0 0 0")
    floor.set("size", " ".join([str(half_length), *floor.get("size").split()[1:]]))
    return etree.tostring(root)


# ---- walker ------------------------------------------------------------------------------------


class WalkerPhysics(AnySizeRenderMixin, PlanarLegsMixin, walker.Physics):
    """The suite's walker with the leg measurements the pose rewards read."""


class WalkerPose(walker.PlanarWalker):
    """A walker task whose reward is any function of the physics (random start as the suite's)."""

    def __init__(self, reward_fn: Callable[[WalkerPhysics], float], random=None) -> None:
        super().__init__(move_speed=0, random=random)
        self._reward_fn = reward_fn

    def get_reward(self, physics: WalkerPhysics) -> float:
        return float(self._reward_fn(physics))


WALKER_REWARDS: dict[str, Callable] = {
    "walk_backwards": functools.partial(pose.move, speed=-walker._WALK_SPEED, height=walker._STAND_HEIGHT),
    "run_backwards": functools.partial(pose.move, speed=-walker._RUN_SPEED, height=walker._STAND_HEIGHT),
    "arabesque": pose.arabesque,
    "lying_down": pose.lying_down,
    "legs_up": pose.legs_up,
    "high_kick": pose.high_kick,
    "one_foot": pose.one_foot,
    "lunge_pose": pose.lunge_pose,
    "sit_knees": pose.sit_knees,
    "headstand": pose.headstand,
    "urlb_flip": functools.partial(pose.urlb_flip, height=walker._STAND_HEIGHT),
    "flipping": pose.flipping,
    "flip": functools.partial(pose.flip, spin=pose.FLIP_SPIN),
    "backflip": functools.partial(pose.flip, spin=-pose.FLIP_SPIN),
}


def _walker_env(reward_fn, time_limit=walker._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    xml, assets = walker.get_model_and_assets()
    physics = WalkerPhysics.from_xml_string(_recentre_floor(xml, "floor", 500), assets)
    return control.Environment(
        physics,
        WalkerPose(reward_fn, random=random),
        time_limit=time_limit,
        control_timestep=walker._CONTROL_TIMESTEP,
        **(environment_kwargs or {}),
    )


# ---- cheetah -----------------------------------------------------------------------------------

CHEETAH_DOWN_HEIGHT = 0.15  # torso / foot on the floor
CHEETAH_HIGH_HEIGHT = 1.0  # raised foot when standing up on the other
CHEETAH_FEET_UP_HEIGHT = 0.225  # mean foot height when lying with the feet in the air
CHEETAH_SPIN = 5.0  # kg m^2/s


class CheetahPhysics(AnySizeRenderMixin, cheetah.Physics):
    """The suite's cheetah plus its spin and feet."""

    def spin(self) -> float:
        """Angular momentum about y through the centre of mass (kg m^2/s); > 0 is a forward flip."""
        mujoco.mj_subtreeVel(self.model.ptr, self.data.ptr)
        return float(self.named.data.subtree_angmom["torso", 1])

    def feet_heights(self) -> np.ndarray:
        """(back, front) foot heights, [2]."""
        return self.named.data.xpos[["bfoot", "ffoot"], "z"].copy()


class CheetahPose(cheetah.Cheetah):
    """A cheetah task whose reward is any function of the physics (random start as the suite's)."""

    def __init__(self, reward_fn: Callable[[CheetahPhysics], float], random=None) -> None:
        super().__init__(random=random)
        self._reward_fn = reward_fn

    def get_reward(self, physics: CheetahPhysics) -> float:
        return float(self._reward_fn(physics))


def _cheetah_spin(physics: CheetahPhysics, direction: float) -> float:
    return pose.linear_at_least(direction * physics.spin(), CHEETAH_SPIN, CHEETAH_SPIN, 0.0)


def _cheetah_standing(physics: CheetahPhysics) -> float:
    """Stand up on one foot: the lower foot on the floor and the other high."""
    low, high = np.sort(physics.feet_heights())
    return pose.at_most(low, CHEETAH_DOWN_HEIGHT) * pose.at_least(high, CHEETAH_HIGH_HEIGHT)


def _cheetah_lying_down(physics: CheetahPhysics) -> float:
    """Torso on the floor, feet in the air (on its back)."""
    torso_down = pose.at_most(physics.named.data.xpos["torso", "z"], CHEETAH_DOWN_HEIGHT)
    feet_up = pose.at_least(float(np.mean(physics.feet_heights())), CHEETAH_FEET_UP_HEIGHT)
    return (torso_down + feet_up) / 2


CHEETAH_REWARDS: dict[str, Callable] = {
    "run_backward": lambda p: pose.linear_at_least(-p.speed(), cheetah._RUN_SPEED, cheetah._RUN_SPEED, 0.0),
    "flip": functools.partial(_cheetah_spin, direction=1.0),
    "flip_backward": functools.partial(_cheetah_spin, direction=-1.0),
    "flipping": lambda p: max(_cheetah_spin(p, 1.0), _cheetah_spin(p, -1.0)),
    "standing": _cheetah_standing,
    "lying_down": _cheetah_lying_down,
}


def _cheetah_env(reward_fn, time_limit=cheetah._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    xml, assets = cheetah.get_model_and_assets()
    physics = CheetahPhysics.from_xml_string(_recentre_floor(xml, "ground", 200), assets)
    return control.Environment(
        physics, CheetahPose(reward_fn, random=random), time_limit=time_limit, **(environment_kwargs or {})
    )


# ---- quadruped ---------------------------------------------------------------------------------

QUADRUPED_JUMP_HEIGHT = 1.0  # centre-of-mass height
QUADRUPED_LIE_HEIGHT = 0.2  # torso height lying down
QUADRUPED_FOOT_DOWN = 0.2  # toes on the floor
QUADRUPED_FOOT_UP = 0.8  # toes raised when standing on two legs


class QuadrupedPhysics(AnySizeRenderMixin, quadruped.Physics):
    """The suite's quadruped plus centre-of-mass and toe heights."""

    def com_height(self) -> float:
        return float(self.named.data.sensordata["center_of_mass"][2])

    def toe_heights(self) -> np.ndarray:
        """Heights of the four toes, [4]."""
        return self.named.data.xpos[quadruped._TOES, "z"].copy()


class QuadrupedPose(quadruped.Move):
    """A quadruped task whose reward is any function of the physics (random start as the suite's)."""

    def __init__(self, reward_fn: Callable[[QuadrupedPhysics], float], random=None) -> None:
        super().__init__(desired_speed=0.0, random=random)
        self._reward_fn = reward_fn

    def get_reward(self, physics: QuadrupedPhysics) -> float:
        return float(self._reward_fn(physics))


def _quadruped_upright(physics: QuadrupedPhysics) -> float:
    return float(quadruped._upright_reward(physics))


def _quadruped_speed(physics: QuadrupedPhysics, speed: float) -> float:
    """Upright while moving at ``speed`` m/s in any direction (GenRL's "roll")."""
    moving = pose.linear_at_least(float(np.linalg.norm(physics.torso_velocity())), speed, speed, 0.5)
    return _quadruped_upright(physics) * moving


def _quadruped_two_legs(physics: QuadrupedPhysics) -> float:
    toes = np.sort(physics.toe_heights())
    down = pose.at_most(float(toes[:2].mean()), QUADRUPED_FOOT_DOWN)
    up = pose.at_least(float(toes[2:].mean()), QUADRUPED_FOOT_UP)
    return down * up


QUADRUPED_REWARDS: dict[str, Callable] = {
    "stand": _quadruped_upright,
    "jump": lambda p: _quadruped_upright(p)
    * pose.linear_at_least(p.com_height(), QUADRUPED_JUMP_HEIGHT, QUADRUPED_JUMP_HEIGHT, 0.5),
    "roll": functools.partial(_quadruped_speed, speed=quadruped._WALK_SPEED),
    "roll_fast": functools.partial(_quadruped_speed, speed=quadruped._RUN_SPEED),
    "lie_down": lambda p: pose.at_most(float(p.named.data.xpos["torso", "z"]), QUADRUPED_LIE_HEIGHT),
    "two_legs": _quadruped_two_legs,
}


def _quadruped_env(reward_fn, time_limit=quadruped._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    xml = quadruped.make_model(floor_size=quadruped._DEFAULT_TIME_LIMIT * quadruped._RUN_SPEED)
    physics = QuadrupedPhysics.from_xml_string(xml, common.ASSETS)
    return control.Environment(
        physics,
        QuadrupedPose(reward_fn, random=random),
        time_limit=time_limit,
        control_timestep=quadruped._CONTROL_TIMESTEP,
        **(environment_kwargs or {}),
    )


# ---- registry ----------------------------------------------------------------------------------


def _stickman_env(task, time_limit=stickman_tasks.DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    return stickman_tasks.load(task, time_limit=time_limit, random=random, environment_kwargs=environment_kwargs)


_FACTORIES: dict[tuple[str, str], Callable[..., control.Environment]] = {
    **{("stickman", t): functools.partial(_stickman_env, t) for t in stickman_tasks.TASK_NAMES},
    **{("walker", t): functools.partial(_walker_env, fn) for t, fn in WALKER_REWARDS.items()},
    **{("cheetah", t): functools.partial(_cheetah_env, fn) for t, fn in CHEETAH_REWARDS.items()},
    **{("quadruped", t): functools.partial(_quadruped_env, fn) for t, fn in QUADRUPED_REWARDS.items()},
}

EXTRA_TASKS: list[tuple[str, str]] = list(_FACTORIES)
_TASK_KWARGS = ("random", "time_limit")


def load(
    domain: str,
    task: str,
    task_kwargs: dict | None = None,
    environment_kwargs: dict | None = None,
) -> control.Environment:
    """Build the environment for one (domain, task) pair of :data:`EXTRA_TASKS`.

    ``task_kwargs`` may hold ``random`` (seed or ``np.random.RandomState``) and ``time_limit``
    (seconds); ``environment_kwargs`` go to :class:`dm_control.rl.control.Environment`.
    """
    factory = _FACTORIES.get((domain, task))
    if factory is None:
        valid = ", ".join(f"{d}_{t}" for d, t in EXTRA_TASKS)
        raise UnknownTaskError(f"unknown extra dm_control task {domain}_{task!s}; valid ones: {valid}")
    task_kwargs = dict(task_kwargs or {})
    bad = sorted(set(task_kwargs) - set(_TASK_KWARGS))
    if bad:
        raise ValueError(f"task_kwargs {bad} not understood for {domain}_{task}; allowed keys: {list(_TASK_KWARGS)}")
    return factory(environment_kwargs=environment_kwargs, **task_kwargs)
