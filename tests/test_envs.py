"""One conformance test over the whole env registry, plus the registry's errors and the wrappers."""

from __future__ import annotations

import os
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

os.environ.setdefault("MUJOCO_GL", "egl")

from wmlab import envs  # noqa: E402
from wmlab.envs import registry  # noqa: E402
from wmlab.envs.wrappers import ActionRepeat, MujocoCamera, NormalizeAction, RenderedObservation, resize  # noqa: E402

ALL = envs.list_envs()
SIZE = (24, 32)  # non-square and not the default: every suite must render at any size


def test_registry_covers_the_suites():
    from dm_control import suite

    from wmlab.envs import dmc_extra

    ids = set(ALL)
    assert {f"dmc:{d}_{t}" for d, t in suite.ALL_TASKS} <= ids
    assert {f"dmc:{d}_{t}" for d, t in dmc_extra.EXTRA_TASKS} <= ids
    assert sum(i.startswith("dmc:stickman_") for i in ids) == 17
    assert sum(i.startswith("metaworld:") for i in ids) == 50
    assert {"metaworld:drawer-open", "metaworld:button-press-topdown-wall", "metaworld:reach"} <= ids
    assert sum(i.startswith("procgen:") for i in ids) == 16
    assert {f"kitchen:{t}" for t in ("microwave", "kettle", "burner", "light", "slide", "hinge")} <= ids


def _rollout(env: gym.Env, seed: int, steps: int) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = [obs["image"].copy()]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs["image"].copy())
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    return frames


@pytest.mark.parametrize("env_id", ALL)
def test_env_conforms(env_id):
    env = envs.make(env_id, size=SIZE)
    try:
        space = env.observation_space
        assert isinstance(space, gym.spaces.Dict) and "image" in space.spaces
        assert space["image"].shape == (*SIZE, 3) and space["image"].dtype == np.uint8
        if isinstance(env.action_space, gym.spaces.Box):
            assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
        else:
            assert isinstance(env.action_space, gym.spaces.Discrete)
        first = _rollout(env, seed=3, steps=3)
        again = _rollout(env, seed=3, steps=3)
        assert len(first) == len(again) and all((a == b).all() for a, b in zip(first, again)), \
            "the same seed must give the same rollout"
        obs, _ = env.reset(seed=3)
        assert space.contains(obs), f"{env_id}: observation not in its space"
        if "proprio" in obs:
            assert obs["proprio"].dtype == np.float32 and np.isfinite(obs["proprio"]).all()
        other, _ = env.reset(seed=4)
        if not env_id.startswith("dmc:lqr"):  # LQR's start differs by a tiny offset (same frame at this size)
            assert any((obs[k] != other[k]).any() for k in obs), "different seeds must give different starts"
        assert obs["image"].std() > 0, "rendered image is blank"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env, skip_render_check=True, skip_close_check=True)
    finally:
        env.close()


def test_extra_dmc_tasks_resolve_and_are_optional(monkeypatch):
    from dm_control import suite

    from wmlab.envs import dmc, dmc_extra

    assert {f"dmc:{d}_{t}" for d, t in dmc_extra.EXTRA_TASKS} <= set(ALL)
    # Without the module, the suite's own tasks remain and nothing else breaks.
    monkeypatch.setitem(sys.modules, "wmlab.envs.dmc_extra", None)
    monkeypatch.delattr(envs, "dmc_extra", raising=False)
    dmc._domains_and_tasks.cache_clear()
    try:
        assert dmc.tasks() == sorted(f"{d}_{t}" for d, t in suite.ALL_TASKS)
        with pytest.raises(envs.UnknownEnvError, match="dmc:stickman_walk"):
            envs.make("dmc:stickman_walk")
    finally:
        dmc._domains_and_tasks.cache_clear()


def test_missing_suite_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "procgen", None)  # import procgen now fails as if not installed
    monkeypatch.delitem(sys.modules, "wmlab.envs.procgen", raising=False)
    monkeypatch.delitem(registry._SUITES, "procgen", raising=False)
    with pytest.raises(envs.MissingDependencyError, match="pip install --no-deps procgen-mirror"):
        envs.make("procgen:coinrun")
    with pytest.warns(UserWarning, match="procgen"):
        ids = envs.list_envs()
    assert "dmc:walker_walk" in ids and not any(i.startswith("procgen:") for i in ids)


def test_camera_refreshes_terrain_and_turns_upside_down_cameras():
    from dm_control import suite

    task = suite.load("quadruped", "escape", task_kwargs={"random": 0})
    task.reset()  # draws the terrain
    physics = task.physics
    camera = MujocoCamera(physics.model.ptr, (32, 32), camera=2)
    before = camera.render(physics.data.ptr).copy()
    physics.model.hfield_data[:] = 0.0  # what quadruped escape does at every reset: new terrain
    after = camera.render(physics.data.ptr)
    fresh = MujocoCamera(physics.model.ptr, (32, 32), camera=2)
    assert (after == fresh.render(physics.data.ptr)).all() and (after != before).any()
    camera.close(), fresh.close()
    env = envs.make("metaworld:reach", size=(32, 32))
    assert env.unwrapped._camera.flip is True  # corner2 hangs upside down
    env.close()
    env = envs.make("metaworld:reach", size=(32, 32), camera="topview")
    env.reset(seed=0)
    assert env.unwrapped._camera.flip is False
    env.close()


def test_full_render_draws_the_suites_own_frames_and_fast_drops_thin_parts():
    """render=full gives dm_control's own frame (rail, shadows); fast, the default, is a different drawing."""
    from dm_control import suite

    ref_task = suite.load("cartpole", "balance", task_kwargs={"random": 0})
    ref_task.reset()
    ref = ref_task.physics.render(64, 64, camera_id=0).astype(int)
    frames = {}
    for render in ("full", "fast"):
        env = envs.make("dmc:cartpole_balance", render=render)
        env.unwrapped._env.physics.set_state(ref_task.physics.get_state())
        env.unwrapped._env.physics.forward()
        frames[render] = env.unwrapped.render().astype(int)
        env.close()
    assert np.abs(frames["full"] - ref).mean() < 0.1
    assert np.abs(frames["fast"] - ref).mean() > 0.5
    with pytest.raises(ValueError, match="render quality 'best' is not one of fast, full"):
        envs.make("dmc:cartpole_balance", render="best")
    with pytest.raises(ValueError, match="procgen:coinrun takes no setting 'render'; its settings: distribution_mode"):
        envs.make("procgen:coinrun", render="full")
    assert envs.render_setting("fast") == {} and envs.render_setting("full") == {"render": "full"}


def test_unknown_ids_name_the_fix():
    with pytest.raises(envs.UnknownEnvError, match="dmc:walker_walk"):
        envs.make("dmc:walker_wlak")
    with pytest.raises(envs.UnknownEnvError, match="suites"):
        envs.make("atari:pong")
    with pytest.raises(envs.UnknownEnvError, match="<suite>:<task>"):
        envs.make("walker_walk")


def test_wrappers_and_make_options():
    env = envs.make("dmc:cartpole_swingup", size=(16, 16), action_repeat=3, time_limit=5, seed=7)
    obs, _ = env.reset()
    ref = envs.make("dmc:cartpole_swingup", size=(16, 16), action_repeat=3)
    ref_obs, _ = ref.reset(seed=7)
    assert (obs["image"] == ref_obs["image"]).all()  # seed= seeds the first reset
    steps, truncated = 0, False
    while not truncated:
        _, _, _, truncated, _ = env.step(np.zeros(1, np.float32))
        steps += 1
    assert steps == 5  # the time limit counts agent steps, after action repeat


class _Counter(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Box(np.array([0.0]), np.array([10.0]))

    def __init__(self):
        self.calls, self.last = 0, None

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.calls += 1
        self.last = action
        return np.zeros(1, np.float32), 1.0, self.calls >= 5, False, {}


def test_action_repeat_and_normalisation():
    inner = _Counter()
    env = ActionRepeat(NormalizeAction(inner), 3)
    _, reward, _, _, _ = env.step(np.array([1.0]))
    assert reward == 3.0 and inner.calls == 3 and np.allclose(inner.last, [10.0])
    _, reward, terminated, _, _ = env.step(np.array([-1.0]))
    assert terminated and reward == 2.0 and np.allclose(inner.last, [0.0])  # stops at termination
    # Bounds that are not real bounds (dm_control's LQR: ±1e10) pass actions through unchanged.
    inner.action_space = gym.spaces.Box(np.array([0.0, -1e10]), np.array([10.0, 1e10]))
    env = NormalizeAction(inner)
    env.step(np.array([0.0, 0.5]))
    assert np.allclose(inner.last, [5.0, 0.5]) and env.action_space.shape == (2,)


class _Painter(RenderedObservation, gym.Env):
    """Renders its step count as the image; ends at step ``end``; fails at step ``fail``."""
    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)})
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, end=100, fail=None):
        self.t, self.renders, self.end, self.fail = 0, 0, end, fail

    def render(self):
        self.renders += 1
        return np.full((2, 2, 3), self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"image": self.frame()}, {}

    def step(self, action):
        self.t += 1
        if self.t == self.fail:
            raise RuntimeError("simulator failed")
        return {"image": self.frame()}, 1.0, self.t >= self.end, False, {}


def test_action_repeat_renders_only_the_frame_it_returns():
    inner = _Painter(end=6)
    env = ActionRepeat(inner, 4)
    obs, reward, terminated, _, _ = env.step(np.zeros(1))
    assert reward == 4.0 and inner.renders == 1 and (obs["image"] == 4).all() and not terminated
    obs, reward, terminated, _, _ = env.step(np.zeros(1))  # ends on the 2nd repeat: that frame is rendered
    assert terminated and reward == 2.0 and inner.renders == 2 and (obs["image"] == 6).all()
    assert not inner.skip_frames and (env.reset()[0]["image"] == 0).all()
    broken = ActionRepeat(_Painter(fail=2), 3)
    with pytest.raises(RuntimeError):
        broken.step(np.zeros(1))
    assert not broken.env.skip_frames  # a failed step leaves the env rendering again
    # A MuJoCo env under make(action_repeat=) gives the frames and rewards of stepping it by hand.
    env = envs.make("dmc:cartpole_swingup", size=(16, 16), action_repeat=3)
    ref = envs.make("dmc:cartpole_swingup", size=(16, 16))
    assert (env.reset(seed=3)[0]["image"] == ref.reset(seed=3)[0]["image"]).all()
    for a in np.linspace(-1, 1, 5, dtype=np.float32):
        obs, reward, *_ = env.step(a[None])
        total = sum(ref.step(a[None])[1] for _ in range(3))
        assert np.isclose(reward, total) and (obs["image"] == ref.render()).all()
    env.close(), ref.close()


def test_resize_antialiases():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    small = resize(checker, (16, 16))
    assert small.shape == (16, 16, 3) and abs(int(small.mean()) - 128) < 3 and small.std() < 5
