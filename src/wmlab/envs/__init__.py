"""Environments: Gymnasium everywhere, one registry by string id (``dmc:walker_walk``, ``metaworld:drawer-open``,
``procgen:coinrun``, ``kitchen:microwave``)."""

from wmlab.envs.registry import MissingDependencyError, UnknownEnvError, list_envs, make, render_setting

__all__ = ["MissingDependencyError", "UnknownEnvError", "list_envs", "make", "render_setting"]
