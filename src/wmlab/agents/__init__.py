"""Agents that learn behaviour in a world model's imagination: Dreamer (V3 by default, V2 as a preset) with
an open reward plug and Plan2Explore."""

from wmlab.agents.behavior import Behavior, frozen
from wmlab.agents.config import PRESETS, ActorConfig, AgentConfig, BehaviorConfig, CriticConfig, Plan2ExploreConfig
from wmlab.agents.dreamer import REWARDS, DreamerAgent, agent_policy
from wmlab.agents.explore import Ensemble
from wmlab.agents.returns import ActionDist, ReturnNorm, lambda_return

__all__ = [
    "ActionDist", "ActorConfig", "AgentConfig", "Behavior", "BehaviorConfig", "CriticConfig", "DreamerAgent",
    "Ensemble", "PRESETS", "Plan2ExploreConfig", "REWARDS", "ReturnNorm", "agent_policy", "frozen",
    "lambda_return",
]
