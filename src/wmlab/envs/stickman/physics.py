"""Physics for the stickman domain, plus helpers shared with the suite's planar walker.

The pose rewards in :mod:`wmlab.envs.stickman.rewards` read a planar legged body through a few named
quantities (torso height and uprightness, hip/knee/ankle anchors, foot centres, spin). Reading them from
joint anchors and geom centres, not body frames, makes the same reward code mean the same thing on the
stickman and on dm_control's walker, whose body frames sit at different places along each segment.

Array shapes: ``[2, 3]`` = (left, right) x (x, y, z) in world coordinates; ``[2]`` = (left, right).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the user chose a backend

from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from dm_control import mujoco as dm_mujoco  # noqa: E402
from dm_control.suite import common  # noqa: E402

_XML_PATH = Path(__file__).with_name("stickman.xml")
_SIDES = ("left", "right")


def get_model_and_assets() -> tuple[str, dict[str, bytes]]:
    """The stickman MJCF string and the suite's shared assets (skybox, materials, visual)."""
    return _XML_PATH.read_text(), common.ASSETS


class AnySizeRenderMixin:
    """Lets ``physics.render(h, w)`` work at any size.

    MuJoCo renders into an offscreen buffer whose size is fixed in the model (640x480 by default) and
    dm_control refuses larger requests. This grows the buffer on demand and rebuilds the GL contexts.
    """

    def render(self, height: int = 240, width: int = 320, *args, **kwargs) -> np.ndarray:
        vis = self.model.vis.global_
        if height > vis.offheight or width > vis.offwidth:
            vis.offheight = max(vis.offheight, int(height))
            vis.offwidth = max(vis.offwidth, int(width))
            with self._contexts_lock:
                if self._contexts:
                    self._free_rendering_contexts()
        return super().render(height, width, *args, **kwargs)


class PlanarLegsMixin:
    """Named measurements of a planar body with a ``torso`` and left/right hip, knee, ankle and foot."""

    def torso_upright(self) -> float:
        """Cosine between the torso's long axis and world up: 1 upright, -1 upside down."""
        return float(self.named.data.xmat["torso", "zz"])

    def torso_height(self) -> float:
        """Height of the torso frame (world z)."""
        return float(self.named.data.xpos["torso", "z"])

    def horizontal_velocity(self) -> float:
        """Forward (x) velocity of the whole body's centre of mass."""
        return float(self.named.data.sensordata["torso_subtreelinvel"][0])

    def orientations(self) -> np.ndarray:
        """Planar orientation of every body as (xx, xz) of its rotation matrix, flattened."""
        return self.named.data.xmat[1:, ["xx", "xz"]].ravel()

    def spin(self) -> float:
        """Angular momentum about the y axis through the centre of mass (kg m^2/s); > 0 is a forward flip."""
        mujoco.mj_subtreeVel(self.model.ptr, self.data.ptr)
        return float(self.named.data.subtree_angmom["torso"][1])

    def _anchors(self, joint: str) -> np.ndarray:
        return np.stack([self.named.data.xanchor[f"{side}_{joint}"] for side in _SIDES])  # [2, 3]

    def hip_positions(self) -> np.ndarray:
        """Hip joint positions, [2, 3]."""
        return self._anchors("hip")

    def knee_positions(self) -> np.ndarray:
        """Knee joint positions, [2, 3]."""
        return self._anchors("knee")

    def ankle_positions(self) -> np.ndarray:
        """Ankle joint positions, [2, 3]."""
        return self._anchors("ankle")

    def feet_positions(self) -> np.ndarray:
        """Centres of the foot geoms, [2, 3]."""
        return np.stack([self.named.data.geom_xpos[f"{side}_foot"] for side in _SIDES])

    def feet_heights(self) -> np.ndarray:
        """Heights of the foot centres, [2]."""
        return self.feet_positions()[:, 2]

    @staticmethod
    def _verticality(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        """|cos| between each segment (top -> bottom) and the vertical: 1 vertical, 0 horizontal."""
        seg = top - bottom  # [2, 3]
        return np.abs(seg[:, 2]) / np.maximum(np.linalg.norm(seg, axis=1), 1e-9)

    def thigh_verticality(self) -> np.ndarray:
        """How vertical each thigh (hip -> knee) is, [2] in [0, 1]."""
        return self._verticality(self.hip_positions(), self.knee_positions())

    def shin_verticality(self) -> np.ndarray:
        """How vertical each shin (knee -> ankle) is, [2] in [0, 1]."""
        return self._verticality(self.knee_positions(), self.ankle_positions())


class Physics(AnySizeRenderMixin, PlanarLegsMixin, dm_mujoco.Physics):
    """Stickman physics: the shared leg measurements plus head and hands."""

    def head_height(self) -> float:
        """Height of the head centre."""
        return float(self.named.data.xpos["head", "z"])

    def hand_positions(self) -> np.ndarray:
        """Hand centres, [2, 3]."""
        return np.stack([self.named.data.xpos[f"{side}_hand"] for side in _SIDES])

    def hand_heights(self) -> np.ndarray:
        """Hand heights, [2]."""
        return self.hand_positions()[:, 2]

    def hand_velocities(self) -> np.ndarray:
        """World-frame linear velocities of the hands, [2, 3]."""
        return np.stack([self.named.data.sensordata[f"{side}_hand_linvel"] for side in _SIDES])

    def punch_speed(self) -> float:
        """Fastest forward/backward hand speed relative to the body's centre of mass (m/s).

        Relative, so that running with still arms is not punching.
        """
        body_vx = self.named.data.sensordata["torso_subtreelinvel"][0]
        return float(np.max(np.abs(self.hand_velocities()[:, 0] - body_vx)))
