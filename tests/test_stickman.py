"""The stickman domain: model structure, every task's contract, rendering and reward sanity."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wmlab.envs.stickman import TASK_NAMES, Physics, get_model_and_assets, load  # noqa: E402
from wmlab.envs.stickman.tasks import REWARDS, Stickman, lowest_point  # noqa: E402

GENRL_TASKS = {
    "stand", "walk", "run", "flip", "flipping", "backflip", "urlb_flip", "headstand", "hands_up", "boxing",
    "arabesque", "lying_down", "legs_up", "high_kick", "one_foot", "lunge_pose", "sit_knees",
}  # fmt: skip


@pytest.fixture(scope="module")
def physics() -> Physics:
    return Physics.from_xml_string(*get_model_and_assets())


def pose(physics: Physics, **qpos: float) -> Physics:
    """Reset to the standing pose, apply joint values (qpos or qvel_<joint>), rest the body on the floor."""
    with physics.reset_context():
        for name, value in qpos.items():
            if name.startswith("qvel_"):
                physics.named.data.qvel[name[5:]] = value
            else:
                physics.named.data.qpos[name] = value
    physics.named.data.qpos["rootz"] -= lowest_point(physics)
    physics.forward()
    return physics


def test_model_structure(physics: Physics) -> None:
    model = physics.model
    assert model.nu == 10
    motors = {model.id2name(i, "actuator") for i in range(model.nu)}
    assert motors == {f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle", "shoulder", "elbow")}
    bodies = {model.id2name(i, "body") for i in range(model.nbody)}
    for part in ("thigh", "shin", "foot", "upper_arm", "lower_arm", "hand"):
        assert {f"left_{part}", f"right_{part}"} <= bodies
    assert {"torso", "head"} <= bodies
    assert model.id2name(0, "camera") == "side"
    assert [model.id2name(i, "joint") for i in range(3)] == ["rootz", "rootx", "rooty"]
    # Standing at rest: feet on the floor, head on top, torso upright at the stand height.
    pose(physics)
    assert physics.torso_upright() == pytest.approx(1.0)
    assert physics.head_height() > physics.torso_height() > physics.hip_positions()[:, 2].max()
    assert physics.feet_heights().max() < 0.1
    assert 30 < model.body_mass.sum() < 60  # a light adult-sized figure, in kg


def test_task_list_matches_genrl() -> None:
    assert set(TASK_NAMES) == GENRL_TASKS and len(TASK_NAMES) == 17


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_resets_and_steps(task: str) -> None:
    env = load(task, random=0)
    ts = env.reset()
    assert set(ts.observation) == {"orientations", "height", "velocity"}
    rng = np.random.default_rng(0)
    for _ in range(15):
        ts = env.step(rng.uniform(-1, 1, env.action_spec().shape))
        assert all(np.all(np.isfinite(v)) for v in ts.observation.values())
        assert 0.0 <= ts.reward <= 1.0


def test_reset_starts_clear_of_the_floor(physics: Physics) -> None:
    # About 1 in 200 random poses would start inside the floor; the task lifts those clear.
    task = Stickman(REWARDS["stand"], random=0)
    lifted = 0
    for _ in range(1000):
        with physics.reset_context():
            task.initialize_episode(physics)
        assert lowest_point(physics) >= -1e-9
        lifted += physics.named.data.qpos["rootz"] > 0
    assert lifted > 0


def test_seed_determinism() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = load("walk", random=seed)
        obs = [env.reset().observation["orientations"]]
        for a in np.linspace(-1, 1, 5):
            obs.append(env.step(np.full(10, a)).observation["orientations"])
        return np.stack(obs)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_render_any_size(physics: Physics) -> None:
    pose(physics, right_shoulder=0.5, left_hip=0.3)
    for h, w in [(64, 64), (48, 80), (720, 960)]:  # the last is larger than the default 640x480 buffer
        img = physics.render(h, w, camera_id=0)
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        assert img.std() > 5
    assert np.array_equal(physics.render(64, 64, camera_id="side"), physics.render(64, 64, camera_id=0))


def test_stand_prefers_upright(physics: Physics) -> None:
    standing = REWARDS["stand"](pose(physics))
    lying = REWARDS["stand"](pose(physics, rooty=-np.pi / 2))
    assert standing > 0.95 and lying < 0.2


@pytest.mark.parametrize("task,speed", [("walk", 1.0), ("run", 8.0)])
def test_moving_at_target_speed_beats_rest(physics: Physics, task: str, speed: float) -> None:
    rest = REWARDS[task](pose(physics))
    moving = REWARDS[task](pose(physics, qvel_rootx=speed))
    backwards = REWARDS[task](pose(physics, qvel_rootx=-speed))
    assert physics.horizontal_velocity() == pytest.approx(-speed)
    assert moving > 0.95 and rest < 0.2 and backwards <= rest + 1e-9


def test_boxing_rewards_fast_hands(physics: Physics) -> None:
    still = REWARDS["boxing"](pose(physics))
    punching = REWARDS["boxing"](pose(physics, qvel_right_shoulder=12.0))
    assert physics.punch_speed() > 5.0
    assert punching > 0.9 and still < 0.05
    # Moving the whole body is not punching.
    assert REWARDS["boxing"](pose(physics, qvel_rootx=8.0)) < 0.05


def test_headstand_rewards_inverted_body(physics: Physics) -> None:
    upright = REWARDS["headstand"](pose(physics))
    inverted = REWARDS["headstand"](pose(physics, rooty=np.pi))
    assert inverted > 0.95 and upright < 0.3


def test_flip_direction(physics: Physics) -> None:
    pose(physics, rooty=np.pi, qvel_rooty=10.0)  # upside down, turning forward
    assert physics.spin() > 16
    assert REWARDS["flip"](physics) > 0.95
    assert REWARDS["backflip"](physics) < 0.2
    assert REWARDS["flipping"](physics) == pytest.approx(REWARDS["flip"](physics))


@pytest.mark.parametrize(
    "task,joints",
    [
        ("hands_up", {"left_shoulder": np.pi, "right_shoulder": np.pi}),
        ("lying_down", {"rooty": -np.pi / 2}),
        ("legs_up", {"rooty": -np.pi / 2, "left_hip": 1.57, "right_hip": 1.57}),
        ("high_kick", {"left_hip": 2.0, "rooty": -0.3}),
        ("arabesque", {"rooty": 1.2, "left_hip": -0.4, "right_hip": 1.0}),
        (
            "sit_knees",
            {"left_hip": 1.05, "right_hip": 1.05, "left_knee": -2.6, "right_knee": -2.6}
            | {"left_ankle": -0.7, "right_ankle": -0.7},
        ),
        ("lunge_pose", {"right_hip": 1.4, "right_knee": -1.4, "left_hip": -0.5, "left_knee": -1.1}),
    ],
)
def test_pose_beats_standing(physics: Physics, task: str, joints: dict) -> None:
    in_pose = REWARDS[task](pose(physics, **joints))
    standing = REWARDS[task](pose(physics))
    assert in_pose > 0.75 and standing < 0.3


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match="moonwalk.*stand.*sit_knees"):
        load("moonwalk")
