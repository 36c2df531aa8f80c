"""World models. The RSSM world model (DreamerV3) with its two plug points: action inputs and frame codecs."""

from wmlab.models.actions import ACTION_INPUTS, ActionInput, BatchError
from wmlab.models.codecs import CODECS, FrameCodec
from wmlab.models.config import PRESETS, WorldModelConfig, make_config
from wmlab.models.registry import Registry, UnknownNameError
from wmlab.models.rssm import RSSM, State
from wmlab.models.world_model import WorldModel

import wmlab.models.contextwm  # noqa: E402,F401  (registers codec=contextwm)
import wmlab.models.prelar  # noqa: E402,F401  (registers action_input=prelar)

__all__ = [
    "ACTION_INPUTS", "ActionInput", "BatchError", "CODECS", "FrameCodec", "PRESETS", "WorldModelConfig",
    "make_config", "Registry", "UnknownNameError", "RSSM", "State", "WorldModel",
]
