"""Extra dm_control tasks: the registry, every task's contract, and the rewards' direction."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from dm_control import suite  # noqa: E402

from wmlab.envs import dmc_extra  # noqa: E402
from wmlab.envs.stickman import TASK_NAMES  # noqa: E402
from wmlab.envs.stickman.tasks import lowest_point  # noqa: E402

GENRL_EXTRAS = {
    "walker": {
        "walk_backwards", "run_backwards", "arabesque", "lying_down", "legs_up", "high_kick", "one_foot",
        "lunge_pose", "sit_knees", "headstand", "urlb_flip", "flipping", "flip", "backflip",
    },
    "cheetah": {"run_backward", "flip", "flip_backward", "flipping", "standing", "lying_down"},
    "quadruped": {"stand", "jump", "roll", "roll_fast", "lie_down", "two_legs"},
}  # fmt: skip
NON_STICKMAN = [pair for pair in dmc_extra.EXTRA_TASKS if pair[0] != "stickman"]


def test_registry_lists_every_extra_once() -> None:
    tasks = dmc_extra.EXTRA_TASKS
    assert len(tasks) == len(set(tasks)) == 17 + 14 + 6 + 6
    assert {t for d, t in tasks if d == "stickman"} == set(TASK_NAMES)
    for domain, names in GENRL_EXTRAS.items():
        assert {t for d, t in tasks if d == domain} == names
    assert not set(tasks) & set(suite.ALL_TASKS)  # no clash with the suite's own tasks


@pytest.mark.parametrize("domain,task", NON_STICKMAN + [("stickman", "run")], ids="_".join)
def test_task_resets_and_steps(domain: str, task: str) -> None:
    env = dmc_extra.load(domain, task, task_kwargs={"random": 0})
    spec = env.action_spec()
    rng = np.random.default_rng(0)
    ts = env.reset()
    for _ in range(10):
        ts = env.step(rng.uniform(spec.minimum, spec.maximum))
        assert all(np.all(np.isfinite(v)) for v in ts.observation.values())
        assert 0.0 <= ts.reward <= 1.0


def test_seed_determinism_and_time_limit() -> None:
    def first_obs(seed: int) -> np.ndarray:
        env = dmc_extra.load("walker", "flip", task_kwargs={"random": seed, "time_limit": 1.0})
        return env.reset().observation["orientations"]

    np.testing.assert_array_equal(first_obs(5), first_obs(5))
    assert not np.array_equal(first_obs(5), first_obs(6))
    env = dmc_extra.load("cheetah", "flip", task_kwargs={"random": 0, "time_limit": 0.5})
    env.reset()
    steps = 0
    while not env.step(np.zeros(env.action_spec().shape)).last():
        steps += 1
    assert steps + 1 == 50  # 0.5 s at the cheetah's 10 ms control step


def test_unknown_task_and_bad_kwargs() -> None:
    with pytest.raises(ValueError, match="walker_walk.*walker_flip.*quadruped_two_legs") as err:
        dmc_extra.load("walker", "walk")
    assert isinstance(err.value, dmc_extra.UnknownTaskError)
    with pytest.raises(ValueError, match="seed.*allowed"):
        dmc_extra.load("walker", "flip", task_kwargs={"seed": 0})


def test_render_and_floor_under_backwards_motion() -> None:
    env = dmc_extra.load("walker", "run_backwards", task_kwargs={"random": 0})
    env.reset()
    img = env.physics.render(64, 96, camera_id=0)
    assert img.shape == (64, 96, 3) and img.std() > 5
    # The floor is re-centred so a body moving backwards stays on rendered ground.
    floor_x, half_length = env.physics.named.model.geom_pos["floor", "x"], env.physics.named.model.geom_size["floor", 0]
    assert floor_x - half_length < -100


def _set(physics, **values: float):
    with physics.reset_context():
        for name, value in values.items():
            if name.startswith("qvel_"):
                physics.named.data.qvel[name[5:]] = value
            else:
                physics.named.data.qpos[name] = value
    return physics


def test_walker_backwards_rewards_backward_motion() -> None:
    physics = dmc_extra.load("walker", "run_backwards").physics
    reward = dmc_extra.WALKER_REWARDS["run_backwards"]
    assert reward(_set(physics, qvel_rootx=-8.0)) > 0.95
    assert reward(_set(physics, qvel_rootx=8.0)) < 0.2


def test_walker_headstand_rewards_inverted_body() -> None:
    physics = dmc_extra.load("walker", "headstand").physics
    reward = dmc_extra.WALKER_REWARDS["headstand"]
    _set(physics, rooty=np.pi)
    physics.named.data.qpos["rootz"] -= lowest_point(physics)  # rest on the floor, upside down
    physics.forward()
    assert lowest_point(physics) == pytest.approx(0.0, abs=1e-9)
    assert reward(physics) > 0.9
    assert reward(_set(physics)) < 0.3


def test_cheetah_spins_by_direction() -> None:
    physics = dmc_extra.load("cheetah", "flip").physics
    r = dmc_extra.CHEETAH_REWARDS
    _set(physics, qvel_rooty=10.0)  # nose down: a forward flip
    assert physics.spin() > 5
    assert r["flip"](physics) == 1.0 and r["flip_backward"](physics) == 0.0 and r["flipping"](physics) == 1.0
    _set(physics, qvel_rooty=-10.0)
    assert r["flip"](physics) == 0.0 and r["flip_backward"](physics) == 1.0 and r["flipping"](physics) == 1.0
    assert r["run_backward"](_set(physics, qvel_rootx=-10.0)) == 1.0
    assert r["run_backward"](_set(physics, qvel_rootx=10.0)) == 0.0


def test_quadruped_height_rewards() -> None:
    physics = dmc_extra.load("quadruped", "jump").physics
    r = dmc_extra.QUADRUPED_REWARDS
    high = _set(physics, root=[0, 0, 2.0, 1, 0, 0, 0])
    jump_high = r["jump"](high)
    assert jump_high > 0.95 and r["stand"](high) == 1.0 and r["lie_down"](high) < 0.01
    low = _set(physics, root=[0, 0, 0.15, 1, 0, 0, 0])
    assert r["lie_down"](low) == 1.0 and r["jump"](low) < jump_high - 0.3
    upside_down = _set(physics, root=[0, 0, 2.0, 0, 1, 0, 0])
    assert r["stand"](upside_down) < 0.01 and r["jump"](upside_down) < 0.01
