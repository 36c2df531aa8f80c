"""Config tree and presets of the Dreamer agent: world model + actor-critic in imagination (+ exploration).

The defaults are DreamerV3 (Hafner et al. 2023, https://arxiv.org/abs/2301.04104) at the paper size of the
world model (:mod:`wmlab.models.config`): REINFORCE actor gradients for every action space, a two-hot
critic over symlog bins with a slow EMA critic as regulariser, returns normalised by their 5th–95th
percentile range, horizon 15, discount 0.997. ``dreamerv2`` (Hafner et al. 2021,
https://arxiv.org/abs/2010.02193) is a preset of the same classes, the baseline of the video-pretraining
papers: backprop through the dynamics for continuous actions and REINFORCE for discrete ones, a truncated
Normal actor, MSE reward and critic, unit-variance Gaussian image and proprio losses on raw values, KL balance
0.8 with free bits on the batch mean, 4×400 ELU heads, no return normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from wmlab.config import flatten
from wmlab.models.config import PRESETS as WM_PRESETS
from wmlab.models.config import WorldModelConfig, doc


@dataclass
class ActorConfig:
    layers: int = doc(2, "hidden layers of the actor MLP")
    units: int = doc(512, "hidden units per layer")
    grad: Literal["reinforce", "dynamics", "auto"] = doc(
        "reinforce", "reinforce: score-function gradient with the critic as baseline (DreamerV3, any action "
                     "space); dynamics: backprop returns through the frozen world model; auto: dynamics for "
                     "continuous and reinforce for discrete actions (DreamerV2)")
    dist: Literal["normal", "trunc_normal"] = doc(
        "normal", "continuous actions: normal (DreamerV3; the env clips samples to [-1, 1]) or trunc_normal, "
                  "a Normal truncated to [-1, 1] (DreamerV2)")
    entropy: float = doc(3e-4, "scale of the entropy bonus")
    out_scale: float = doc(0.01, "init scale of the output layer: near-zero starts every state at mean 0 and "
                                 "the widest std, instead of a random per-state bias")
    min_std: float = doc(0.1, "continuous actions: lowest standard deviation")
    max_std: float = doc(1.0, "continuous actions: highest standard deviation")
    std_bias: float = doc(2.0, "continuous actions: std = (max_std - min_std)·sigmoid(out + std_bias) + min_std; "
                               "2 starts near max_std (DreamerV3), 0 halfway (DreamerV2: 1.1 of [0.1, 2.1])")
    unimix: float = doc(0.01, "discrete actions: fraction of uniform mixed into the action probabilities")
    lr: float = doc(3e-5, "learning rate")
    eps: float = doc(1e-5, "AdamW epsilon")
    clip: float = doc(100.0, "gradient-norm clip")


@dataclass
class CriticConfig:
    layers: int = doc(2, "hidden layers of the critic MLP")
    units: int = doc(512, "hidden units per layer")
    loss: Literal["twohot", "mse"] = doc("twohot", "twohot: categorical over symlog bins (V3); mse: regression (V2)")
    bins: int = doc(255, "two-hot bins")
    slow_rate: float = doc(0.02, "slow critic: EMA rate toward the critic at each refresh")
    slow_every: int = doc(1, "slow critic: refresh every N updates")
    slow_reg: float = doc(1.0, "scale of the loss pulling the critic toward the slow critic's values")
    returns_from: Literal["critic", "slow"] = doc(
        "critic", "which critic bootstraps the λ-returns: the critic (V3) or the slow target critic (V2)")
    lr: float = doc(3e-5, "learning rate")
    eps: float = doc(1e-5, "AdamW epsilon")
    clip: float = doc(100.0, "gradient-norm clip")


@dataclass
class BehaviorConfig:
    horizon: int = doc(15, "imagination horizon (steps)")
    discount: float = doc(0.997, "discount γ per step (DreamerV3: 1 - 1/333)")
    lam: float = doc(0.95, "λ of the λ-returns")
    return_norm: Literal["percentile", "none"] = doc(
        "percentile", "percentile: divide advantages by max(1, EMA of the 95th - 5th percentile of returns)")
    norm_decay: float = doc(0.99, "EMA decay of the return percentiles")
    norm_low: float = doc(5.0, "lower percentile")
    norm_high: float = doc(95.0, "upper percentile")
    actor: ActorConfig = field(default_factory=ActorConfig, metadata={"doc": "policy"})
    critic: CriticConfig = field(default_factory=CriticConfig, metadata={"doc": "value function"})


@dataclass
class Plan2ExploreConfig:
    members: int = doc(8, "ensemble members predicting the next latent")
    layers: int = doc(2, "hidden layers per member")
    units: int = doc(512, "hidden units per member layer")
    target: Literal["stoch", "deter", "feat"] = doc("stoch", "what the members predict at the next step")
    intrinsic: float = doc(1.0, "scale of the disagreement reward of the exploration policy")
    extrinsic: float = doc(0.0, "scale of the task reward mixed into the exploration policy's reward")
    lr: float = doc(3e-4, "learning rate of the ensemble")
    eps: float = doc(1e-5, "AdamW epsilon")
    clip: float = doc(100.0, "gradient-norm clip")


@dataclass
class AgentConfig:
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig, metadata={"doc": "RSSM world model"})
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig, metadata={"doc": "actor-critic"})
    reward: str = doc("task", "reward the task policy maximises in imagination: task (the reward head) or any "
                              "name registered in wmlab.agents.REWARDS")
    explore: Literal["none", "plan2explore"] = doc(
        "none", "plan2explore: an ensemble's disagreement drives a second, exploring policy that collects data")
    plan2explore: Plan2ExploreConfig = field(default_factory=Plan2ExploreConfig,
                                             metadata={"doc": "Plan2Explore settings"})
    intrinsic: Literal["none", "video"] = doc(
        "none", "video: APV's bonus (k-th nearest-neighbour distance of latent features averaged over a window); "
                "a second reward head learns reward + intrinsic_scale·bonus and drives the task policy, while the "
                "world model's reward head keeps the plain reward")
    intrinsic_scale: float = doc(1.0, "weight of the video bonus in the policy's reward")
    knn_k: int = doc(16, "video bonus: k of the k-th nearest neighbour")
    knn_window: int = doc(4, "video bonus: steps averaged into one representation")
    knn_queue: int = doc(4096, "video bonus: representations kept from earlier batches")
    train_world_model: bool = doc(True, "false keeps the world model fixed (behaviour learning only)")
    model_lr: float = doc(1e-4, "world-model learning rate")
    model_eps: float = doc(1e-8, "world-model AdamW epsilon")
    model_clip: float = doc(1000.0, "world-model gradient-norm clip")
    imagined_warmup: int = doc(8, "start=imagined: prior steps under random actions before a start state is "
                                  "taken")


def _heads(layers: int, units: int) -> dict[str, Any]:
    return {"layers": layers, "units": units}


# DreamerV2's world model (DMC settings); also the size `wmlab train pretrain preset=dreamerv2` pretrains.
DREAMERV2_WORLD_MODEL: dict[str, Any] = {
    "rssm": {"deter": 200, "hidden": 200, "unimix": 0.0, "initial": "zeros", "gru_norm": True},
    "cnn": {"depth": 48},
    "heads": _heads(4, 400),
    "norm": False, "act": "elu", "reward_loss": "mse",
    # Gaussian log-likelihoods of unit variance: ½·Σ squared error for image and proprio, on raw proprio.
    "loss": {"kl_dyn": 0.8, "kl_rep": 0.2, "free_avg": True, "image": 0.5, "proprio": 0.5},
    "proprio_symlog": False,
}

# DreamerV2 as APV, ContextWM and PreLAR run it on Meta-World: DreamerV2's default 1024-wide RSSM and no
# free bits (their `metaworld` config); also what `wmlab train pretrain preset=dreamerv2_metaworld` pretrains.
DREAMERV2_METAWORLD_WORLD_MODEL: dict[str, Any] = {
    **flatten(DREAMERV2_WORLD_MODEL), "rssm.deter": 1024, "rssm.hidden": 1024, "loss.free_nats": 0.0}

PRESETS: dict[str, dict[str, Any]] = {
    "debug": {
        "world_model": WM_PRESETS["debug"],
        "behavior": {"horizon": 5, "actor": _heads(1, 32), "critic": {**_heads(1, 32), "bins": 41}},
        "plan2explore": {"members": 3, **_heads(1, 32)},
    },
    "small": {
        "world_model": WM_PRESETS["small"],
        "behavior": {"actor": {"units": 256}, "critic": {"units": 256}},
        "plan2explore": {"units": 256},
    },
    "paper": {},
    # DreamerV2 (DMC settings), the baseline of APV / ContextWM / PreLAR.
    "dreamerv2": {
        "world_model": DREAMERV2_WORLD_MODEL,
        "behavior": {
            "discount": 0.99, "return_norm": "none",
            "actor": {**_heads(4, 400), "grad": "auto", "dist": "trunc_normal", "entropy": 1e-4, "lr": 8e-5,
                      "unimix": 0.0, "max_std": 2.1, "std_bias": 0.0},
            "critic": {**_heads(4, 400), "loss": "mse", "slow_rate": 1.0, "slow_every": 100, "slow_reg": 0.0,
                       "returns_from": "slow", "lr": 8e-5},
        },
        "plan2explore": _heads(4, 400),
        "model_lr": 3e-4, "model_eps": 1e-5, "model_clip": 100.0,
    },
}
PRESETS["dreamerv2_metaworld"] = {**flatten(PRESETS["dreamerv2"]),
                                  **{f"world_model.{k}": v for k, v in DREAMERV2_METAWORLD_WORLD_MODEL.items()}}
