"""Common wrappers: action repeat, action normalisation, image resize, first-reset seeding, fast MuJoCo camera.

Time limits use :class:`gymnasium.wrappers.TimeLimit` as it is.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

import gymnasium as gym
import numpy as np

_CAMERAS: "weakref.WeakSet[MujocoCamera]" = weakref.WeakSet()
_AT_EXIT = False


def _close_cameras() -> None:
    # Free GL contexts before the interpreter tears EGL down (else each renderer prints an EGL error).
    for camera in list(_CAMERAS):
        camera.close()


class RenderedObservation:
    """Mixin for envs that render their ``image`` observation on every step: ``_obs`` takes it from
    :meth:`frame`. While ``skip_frames`` is set (by :class:`ActionRepeat`, on the repeats whose observation
    it throws away) the frame is not rendered and the image is blank."""

    skip_frames = False

    def frame(self) -> np.ndarray:
        if self.skip_frames:
            return np.zeros(self.observation_space["image"].shape, np.uint8)
        return self.render()


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times, summing rewards; stops early when the episode ends.

    Directly around a :class:`RenderedObservation` env (as :func:`wmlab.envs.make` puts it) only the frame
    it returns is rendered: a repeat of 4 renders once per agent step, not 4 times.
    """

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = int(repeat)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        total = 0.0
        skips = isinstance(self.env, RenderedObservation)
        try:
            for i in range(self.repeat):
                if skips:
                    self.env.skip_frames = i < self.repeat - 1
                obs, reward, terminated, truncated, info = self.env.step(action)
                total += float(reward)
                if terminated or truncated:
                    break
            if skips and self.env.skip_frames:  # ended before the last repeat: render the frame it skipped
                self.env.skip_frames = False
                obs = {**obs, "image": self.env.render()}
        finally:
            if skips:
                self.env.skip_frames = False
        return obs, total, terminated, truncated, info


class NormalizeAction(gym.ActionWrapper):
    """Expose a continuous Box action space as [-1, 1] and map back to the env's bounds.

    Dimensions without real bounds (infinite, or |bound| ≥ 1e6 such as dm_control's LQR with ±1e10) pass
    through unchanged: stretching [-1, 1] over ±1e10 would make every action absurd.
    """

    UNBOUNDED = 1e6

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"NormalizeAction needs a Box action space, got {space}")
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._bounded = (np.abs(low) < self.UNBOUNDED) & (np.abs(high) < self.UNBOUNDED)
        self._low, self._high = np.where(self._bounded, low, -1.0), np.where(self._bounded, high, 1.0)
        self.action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        return (self._low + (action + 1.0) / 2.0 * (self._high - self._low)).astype(self.env.action_space.dtype)


class ResizeImage(gym.ObservationWrapper):
    """Resize ``obs["image"]`` for envs that render at one fixed size (Procgen: 64×64)."""

    def __init__(self, env: gym.Env, size: tuple[int, int]):
        super().__init__(env)
        self.size = (int(size[0]), int(size[1]))
        spaces = dict(env.observation_space.spaces)
        spaces["image"] = gym.spaces.Box(0, 255, (*self.size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, obs: dict) -> dict:
        return {**obs, "image": resize(obs["image"], self.size)}


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area/bilinear resize of one uint8 image [H,W,C] (antialiased when shrinking)."""
    if image.shape[:2] == tuple(size):
        return image
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


class SeedFirstReset(gym.Wrapper):
    """Seed the first ``reset()`` that passes no seed of its own."""

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self._seed: int | None = int(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is None and self._seed is not None:
            seed = self._seed
        self._seed = None
        return self.env.reset(seed=seed, options=options)


RENDER_QUALITIES = ("fast", "full")


class MujocoCamera:
    """Offscreen rendering of a MuJoCo model with one renderer reused; ``quality`` fast or full.

    ``fast`` (the default) turns shadows and multisampling off: a 64×64 frame of dm_control's walker takes
    1.3 ms instead of the 13 ms of dm_control's own render, but thin parts alias away (cartpole's rail)
    and bodies cast no shadow (mean pixel difference 1.5/255 on cartpole, 6.8/255 on walker). ``full``
    keeps the model's own settings, the frames dm_control (``physics.render``) and Meta-World draw and the
    published pixel-based scores were measured on. The settings must be set before the first render.

    ``flip=None`` turns the image upright when the camera's up axis points down in the world (Meta-World's
    corner cameras): a 180° rotation, which is what a camera rolled upright would see (a vertical flip
    alone would mirror the scene). Height fields edited by a task (dm_control's quadruped escape draws new
    terrain every episode) are uploaded again before the next image.
    """

    def __init__(self, model: Any, size: tuple[int, int], camera: int | str = -1, flip: bool | None = None,
                 free_camera: dict | None = None, quality: str = "fast"):
        import mujoco

        if quality not in RENDER_QUALITIES:
            raise ValueError(f"render quality {quality!r} is not one of {', '.join(RENDER_QUALITIES)} (fast: no "
                             "shadows or multisampling; full: the model's own settings)")
        if quality == "fast":
            model.vis.quality.shadowsize = 0
            model.vis.quality.offsamples = 0
        # The offscreen buffer must hold the image.
        model.vis.global_.offheight = max(model.vis.global_.offheight, size[0])
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size[1])
        self.model, self.size = model, (int(size[0]), int(size[1]))
        self.renderer: Any = mujoco.Renderer(model, height=self.size[0], width=self.size[1])
        self._hfield = model.hfield_data.copy() if model.nhfield else None
        self.camera: Any = camera
        if free_camera is not None:
            cam = mujoco.MjvCamera()
            mujoco.mjv_defaultFreeCamera(model, cam)
            for key, value in free_camera.items():
                if key == "lookat":
                    cam.lookat[:] = value
                else:
                    setattr(cam, key, value)
            self.camera = cam
        self.flip = self._upside_down() if flip is None else bool(flip)
        global _AT_EXIT
        if not _AT_EXIT:  # registered after mujoco's GL backend, so it runs before that one's teardown
            atexit.register(_close_cameras)
            _AT_EXIT = True
        _CAMERAS.add(self)

    def _upside_down(self) -> bool:
        """Whether the camera's up axis points down in the model's initial pose."""
        import mujoco

        if isinstance(self.camera, mujoco.MjvCamera) or self.camera == -1:
            return False  # free cameras keep the world's z up
        cam = self.camera if isinstance(self.camera, int) else mujoco.mj_name2id(
            self.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        if not 0 <= cam < self.model.ncam:
            names = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
            raise ValueError(f"camera {self.camera!r} is not in the model; its cameras: {names} "
                             f"(or an index 0..{self.model.ncam - 1})")
        data = mujoco.MjData(self.model)
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_camlight(self.model, data)
        return bool(data.cam_xmat[cam].reshape(3, 3)[2, 1] < 0)  # z component of the camera's up axis

    def render(self, data: Any) -> np.ndarray:
        import mujoco

        if self.renderer is None:
            raise RuntimeError("render() after close()")
        if self._hfield is not None and not np.array_equal(self._hfield, self.model.hfield_data):
            # The GL context holds its own copy of height fields: upload the new ones (mujoco.Renderer has no
            # public call for it; without its context attributes, a new renderer uploads everything).
            gl, con = getattr(self.renderer, "_gl_context", None), getattr(self.renderer, "_mjr_context", None)
            if gl is not None and con is not None:
                gl.make_current()
                for i in range(self.model.nhfield):
                    mujoco.mjr_uploadHField(self.model, con, i)
            else:
                self.renderer.close()
                self.renderer = mujoco.Renderer(self.model, height=self.size[0], width=self.size[1])
            self._hfield = self.model.hfield_data.copy()
        self.renderer.update_scene(data, camera=self.camera)
        image = self.renderer.render()
        return np.ascontiguousarray(image[::-1, ::-1]) if self.flip else image

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
