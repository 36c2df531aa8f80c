"""Pose and motion rewards for planar legged bodies (the stickman and dm_control's walker).

Each reward is a function of a physics object with the measurements of
:class:`wmlab.envs.stickman.physics.PlanarLegsMixin` and returns a float in [0, 1]. Terms are built with
:func:`dm_control.utils.rewards.tolerance` like the suite's walker rewards: a term is 1 inside its bounds
and decays smoothly over ``margin`` outside them, and terms are combined by weighted means (soft "and"
that still gives a gradient) or products (hard "and").

Heights are in metres and refer to the stickman's proportions (standing: torso centre 1.25, hips 1.0,
knees 0.55, ankles 0.1), which match the walker's legs, so one set of thresholds serves both bodies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dm_control.utils import rewards

STAND_HEIGHT = 1.15  # torso height above which "standing" is fully met
POSE_HEIGHT = 1.0  # lower torso height for poses done on one leg or leaning (kicks, arabesque)
DOWN_HEIGHT = 0.12  # a body part at or below this height lies on the floor
INVERTED_FEET_HEIGHT = 1.2  # feet above this and ...
INVERTED_HIP_HEIGHT = 0.7  # ... hips above this: the body is upside down (head- or handstand)
FOOT_UP_HEIGHT = 0.5  # the lifted foot when balancing on one leg / legs up while lying
KICK_HEIGHT = 1.15  # the kicking foot in a high kick (above the hips)
LUNGE_TORSO_HEIGHT = 0.75  # torso in a lunge, back knee on the floor
LUNGE_KNEE_HEIGHT = 0.4  # front knee in a lunge (shin upright)
SIT_TORSO_HEIGHT = 0.35  # torso when kneeling and sitting on the heels
SIT_HIP_TO_ANKLE = 0.15  # horizontal hip-ankle gap below which the thighs rest on the shins
HANDS_UP_HEIGHT = 1.8  # mean hand height with the arms raised overhead
PUNCH_SPEED = 5.0  # m/s, hand speed relative to the body for a punch
FLIP_SPIN = 16.0  # kg m^2/s, angular momentum of a fast (back)flip
URLB_SPIN = 5.0  # kg m^2/s, the gentler spin target of the URLB flip task

PlanarBody = Any  # a dm_control Physics with the PlanarLegsMixin measurements


def at_least(x: float, bound: float, margin: float | None = None) -> float:
    """1 when ``x >= bound``, Gaussian decay below over ``margin`` (default: half the bound)."""
    return float(rewards.tolerance(x, bounds=(bound, float("inf")), margin=bound / 2 if margin is None else margin))


def at_most(x: float, bound: float = DOWN_HEIGHT, margin: float | None = None) -> float:
    """1 when ``x <= bound``, Gaussian decay above over ``margin`` (default: 1.5 x the bound)."""
    return float(rewards.tolerance(x, bounds=(-float("inf"), bound), margin=1.5 * bound if margin is None else margin))


def linear_at_least(x: float, target: float, margin: float, value_at_margin: float) -> float:
    """1 when ``x >= target``, linear decay to 0 below ``target - margin`` (speeds, spins)."""
    return float(
        rewards.tolerance(
            x, bounds=(target, float("inf")), margin=margin, value_at_margin=value_at_margin, sigmoid="linear"
        )
    )


def upright(physics: PlanarBody) -> float:
    """0 upside down .. 1 upright."""
    return (1 + physics.torso_upright()) / 2


def stand(physics: PlanarBody, height: float = STAND_HEIGHT) -> float:
    """Torso high (weight 3) and upright (weight 1), as in the suite's walker."""
    return (3 * at_least(physics.torso_height(), height) + upright(physics)) / 4


def move(physics: PlanarBody, speed: float, height: float = STAND_HEIGHT) -> float:
    """Stand while moving at ``speed`` m/s (negative: backwards); at rest still earns 1/6 of standing."""
    if speed == 0:
        return stand(physics, height)
    going = linear_at_least(np.sign(speed) * physics.horizontal_velocity(), abs(speed), abs(speed) / 2, 0.5)
    return stand(physics, height) * (5 * going + 1) / 6


def headstand(physics: PlanarBody) -> float:
    """Upside down: feet high (weight 3), hips up (1), torso inverted (1)."""
    feet_up = at_least(float(np.mean(physics.feet_heights())), INVERTED_FEET_HEIGHT)
    hips_up = at_least(float(np.mean(physics.hip_positions()[:, 2])), INVERTED_HIP_HEIGHT)
    inverted = 1 - upright(physics)
    return (3 * feet_up + hips_up + inverted) / 5


def flip(physics: PlanarBody, spin: float = FLIP_SPIN) -> float:
    """Be upside down while spinning with angular momentum ``spin`` (> 0 forward, < 0 backward)."""
    spinning = linear_at_least(np.sign(spin) * physics.spin(), abs(spin), abs(spin) / 2, 0.5)
    return headstand(physics) * (5 * spinning + 1) / 6


def flipping(physics: PlanarBody, spin: float = FLIP_SPIN) -> float:
    """Flip in whichever direction pays more."""
    return max(flip(physics, abs(spin)), flip(physics, -abs(spin)))


def urlb_flip(physics: PlanarBody, height: float = STAND_HEIGHT) -> float:
    """URLB's flip: stand while spinning forward; no spin earns 1/6 of standing."""
    spinning = linear_at_least(physics.spin(), URLB_SPIN, URLB_SPIN, 0.0)
    return stand(physics, height) * (5 * spinning + 1) / 6


def _low_high_feet(physics: PlanarBody) -> tuple[np.ndarray, np.ndarray]:
    """(support foot, lifted foot) positions, [3] each."""
    feet = physics.feet_positions()  # [2, 3]
    order = np.argsort(feet[:, 2])
    return feet[order[0]], feet[order[1]]


def arabesque(physics: PlanarBody) -> float:
    """Stand on one foot with the other raised behind to hip height; a foot raised in front pays 1/10."""
    low, high = _low_high_feet(physics)
    standing = at_least(physics.torso_height(), POSE_HEIGHT)
    feet = (at_most(low[2]) + 2 * at_least(high[2], POSE_HEIGHT)) / 3
    behind = 1.0 if high[0] < low[0] else 0.1
    return standing * feet * behind


def lying_down(physics: PlanarBody) -> float:
    """Torso on the floor (weight 3) and horizontal (1), hips, knees and feet on the floor (1 each)."""
    torso_down = at_most(physics.torso_height())
    horizontal = 1 - abs(physics.torso_upright())
    hips = at_most(float(np.mean(physics.hip_positions()[:, 2])))
    knees = at_most(float(np.mean(physics.knee_positions()[:, 2])))
    feet = at_most(float(np.mean(physics.feet_heights())))
    return (3 * torso_down + horizontal + hips + knees + feet) / 7


def legs_up(physics: PlanarBody) -> float:
    """Lie on the back or front with both feet lifted."""
    lying = (3 * at_most(physics.torso_height()) + 1 - abs(physics.torso_upright())) / 4
    return lying * at_least(float(np.mean(physics.feet_heights())), FOOT_UP_HEIGHT)


def high_kick(physics: PlanarBody) -> float:
    """Stand on one foot and raise the other above the hips (weight 3), support foot down (1)."""
    low, high = _low_high_feet(physics)
    standing = at_least(physics.torso_height(), POSE_HEIGHT)
    return standing * (3 * at_least(high[2], KICK_HEIGHT) + at_most(low[2])) / 4


def one_foot(physics: PlanarBody) -> float:
    """Stand with one foot on the floor and the other lifted."""
    low, high = _low_high_feet(physics)
    return at_least(physics.torso_height(), POSE_HEIGHT) * at_least(high[2], FOOT_UP_HEIGHT) * at_most(low[2])


def lunge_pose(physics: PlanarBody) -> float:
    """Upright torso, back knee on the floor with its shin flat, front knee up with its thigh level."""
    torso = (3 * at_least(physics.torso_height(), LUNGE_TORSO_HEIGHT) + upright(physics)) / 4
    knees = physics.knee_positions()[:, 2]  # [2]
    front, back = int(np.argmax(knees)), int(np.argmin(knees))
    if front == back:  # both knees level: call the left one the front
        front, back = 0, 1
    legs = (
        at_most(knees[back])
        + at_least(knees[front], LUNGE_KNEE_HEIGHT)
        + 1
        - physics.thigh_verticality()[front]
        + 1
        - physics.shin_verticality()[back]
    ) / 4
    return torso * legs


def sit_knees(physics: PlanarBody) -> float:
    """Kneel sitting on the heels (a praying pose): torso up, knees and feet down, hips over ankles."""
    torso = (3 * at_least(physics.torso_height(), SIT_TORSO_HEIGHT) + upright(physics)) / 4
    knees_down = at_most(float(np.mean(physics.knee_positions()[:, 2])))
    legs = (3 * knees_down + at_most(float(np.mean(physics.feet_heights())))) / 4
    gap = float(np.mean(np.abs(physics.hip_positions()[:, 0] - physics.ankle_positions()[:, 0])))
    folded = at_most(gap, SIT_HIP_TO_ANKLE, margin=0.3)
    return torso * legs * folded


def hands_up(physics: PlanarBody) -> float:
    """Stand with both hands raised overhead (stickman only)."""
    return stand(physics) * at_least(float(np.mean(physics.hand_heights())), HANDS_UP_HEIGHT)


def boxing(physics: PlanarBody) -> float:
    """Stand while punching: hand speed 5 m/s pays fully, 2.5 m/s half, still hands nothing (stickman only)."""
    return stand(physics) * linear_at_least(physics.punch_speed(), PUNCH_SPEED, PUNCH_SPEED / 2, 0.5)
