"""Config tree and presets of the RSSM world model.

The defaults are the paper-sized DreamerV3 world model as configured in the most-used PyTorch port
(deter 512, 32×32 discrete latents, CNN depth 32, 2×512 reward/continue heads: ≈15.7M parameters at
64×64). Presets hold only their differences from these defaults and are applied with
:func:`wmlab.config.resolve`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Literal

from wmlab import config as _config


def doc(default: Any, text: str) -> Any:
    """A dataclass field with a default and a one-line meaning (mutable defaults and nested configs are copied
    for every instance)."""
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class RSSMConfig:
    deter: int = doc(512, "size of the deterministic (GRU) state")
    stoch: int = doc(32, "number of categorical latent variables")
    classes: int = doc(32, "classes per categorical latent")
    hidden: int = doc(512, "width of the input/output layers around the GRU")
    unimix: float = doc(0.01, "fraction of uniform mixed into latent probabilities (DreamerV3: 1%)")
    initial: Literal["learned", "zeros"] = doc("learned", "initial state: tanh of a learned vector, or zeros")
    update_bias: float = doc(-1.0, "bias added to the GRU update gate (negative: keep the old state early on)")
    gru_norm: bool | None = doc(None, "LayerNorm on the GRU's gate pre-activations: none follows the world "
                                      "model's norm (DreamerV3); true keeps it where other layers have none "
                                      "(DreamerV2)")


@dataclass
class CNNConfig:
    depth: int = doc(32, "channels of the first conv stage")
    mults: tuple[int, ...] = doc((), "channel multipliers per stage; empty doubles per stage (1,2,4,8,...)")
    kernel: int = doc(4, "conv kernel size (stride is always 2)")
    min_res: int = doc(4, "stop downsampling before a side would fall below this")


@dataclass
class MLPConfig:
    layers: int = doc(2, "hidden layers")
    units: int = doc(512, "hidden units per layer")


@dataclass
class LossConfig:
    image: float = doc(1.0, "scale of the image reconstruction loss")
    proprio: float = doc(1.0, "scale of the proprio reconstruction loss")
    reward: float = doc(1.0, "scale of the reward loss")
    cont: float = doc(1.0, "scale of the continue loss")
    kl_dyn: float = doc(0.5, "scale of KL(sg(post)‖prior): trains the prior")
    kl_rep: float = doc(0.1, "scale of KL(post‖sg(prior)): regularises the posterior")
    free_nats: float = doc(1.0, "free bits: KL terms below this (nats per step) are clamped and send no gradient")
    free_avg: bool = doc(False, "apply free bits to the KL averaged over the batch (DreamerV2) instead of to every "
                                "step (DreamerV3)")


@dataclass
class ContextConfig:
    """ContextWM's contextualised decoder (``codec=contextwm``)."""

    depth: int = doc(32, "channels of the context encoder's first stage (doubling per stage like cnn)")
    attn_stages: int = doc(2, "decoder resolutions that cross-attend to the context features")
    attn_skip: int = doc(1, "finest decoder resolutions left without cross-attention: 1 attends at 16×16 and 8×8 "
                            "of a 64×64 frame as ContextWM does (0 adds the 32×32 map: several times the cost); "
                            "frames with fewer resolutions keep their coarsest")
    heads: int = doc(4, "attention heads of each cross-attention")
    token_dropout: float = doc(0.0, "fraction of context tokens dropped while training (never in eval mode)")
    erasing: float = doc(0.0, "probability of random erasing of a patch of the context frame while training")


@dataclass
class LatentActionConfig:
    """PreLAR's latent actions (``action_input=prelar``): inferred from frames when the data has no actions,
    encoded from real actions (and aligned to the inferred ones) when it has."""

    dim: int = doc(16, "width of the latent action")
    codes: int = doc(0, "0: continuous latent actions (tanh-bounded); N > 0: discrete, each latent action is one "
                        "of N unit-norm codes of a vector quantiser (EMA codebook, straight-through gradient)")
    beta: float = doc(0.25, "codes > 0: scale of the commitment loss pulling the LAM's outputs onto their codes")
    kl: float = doc(0.0, "codes = 0: > 0 makes the latent action Gaussian (sampled while training, its mean in "
                         "eval mode) with this scale on its KL to N(0, 1), PreLAR's bottleneck; 0: tanh-bounded "
                         "and deterministic")
    depth: int = doc(16, "channels of the latent action model's frame encoder")
    units: int = doc(256, "hidden units of its MLPs and of the action encoder")
    layers: int = doc(2, "hidden layers of the action encoder")
    contrastive: float = doc(1.0, "scale of the InfoNCE loss that makes latent actions identify their transition")
    temperature: float = doc(0.1, "InfoNCE temperature")
    align: float = doc(1.0, "fine-tuning: scale of the loss pulling encoded real actions onto inferred ones")
    freeze: bool = doc(False, "fine-tuning: keep the pretrained latent action model fixed (eval mode, no "
                              "gradient, no InfoNCE or bottleneck term); only the action encoder learns, aligned "
                              "to its latent actions. Cheaper per update; an error in pretraining")


@dataclass
class WorldModelConfig:
    rssm: RSSMConfig = field(default_factory=RSSMConfig, metadata={"doc": "recurrent state-space model"})
    cnn: CNNConfig = field(default_factory=CNNConfig, metadata={"doc": "conv encoder/decoder"})
    heads: MLPConfig = field(default_factory=MLPConfig, metadata={"doc": "reward and continue heads"})
    proprio_mlp: MLPConfig = field(default_factory=lambda: MLPConfig(layers=5, units=1024),
                                   metadata={"doc": "proprio encoder and decoder MLPs"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"doc": "loss scales and free bits"})
    norm: bool = doc(True, "LayerNorm after every hidden linear/conv layer")
    act: str = doc("silu", "activation: silu, elu, gelu, relu, tanh")
    image_loss: Literal["mse", "mse_mean"] = doc(
        "mse", "mse: squared error on [0,1] pixels summed per frame (DreamerV3); mse_mean: averaged per pixel")
    reward_loss: Literal["twohot", "mse"] = doc(
        "twohot", "twohot: categorical over symlog bins (DreamerV3); mse: unit-variance Gaussian on the raw "
                  "reward (DreamerV2)")
    reward_bins: int = doc(255, "two-hot bins of the reward head (symlog space)")
    reward_low: float = doc(-20.0, "lowest reward bin (symlog space)")
    reward_high: float = doc(20.0, "highest reward bin (symlog space)")
    action_input: str = doc("real", "how actions enter: real | none (action-free video) | embedding | prelar "
                                    "(latent actions inferred from frames / encoded from real actions)")
    embedding_key: str = doc("latent_action", "batch key of the per-step embedding for action_input=embedding")
    embedding_dim: int = doc(0, "width of that embedding (required for action_input=embedding)")
    codec: str = doc("cnn", "how frames are encoded and decoded: cnn | contextwm (decoder cross-attends to a "
                            "context frame)")
    image_size: tuple[int, ...] = doc((), "expected (H, W); empty takes it from the data spec")
    proprio: bool = doc(False, "also encode and reconstruct the batch's proprio vector")
    proprio_symlog: bool = doc(True, "encode and reconstruct proprio in symlog space (DreamerV3); false: raw "
                                     "values (DreamerV2)")
    context: ContextConfig = field(default_factory=ContextConfig, metadata={"doc": "codec=contextwm settings"})
    latent_action: LatentActionConfig = field(default_factory=LatentActionConfig,
                                              metadata={"doc": "action_input=prelar settings"})
    stack: bool = doc(False, "APV: an action-free RSSM (af_rssm) between the frame codec and this RSSM; its "
                             "features are this RSSM's input")
    stack_freeze: int = doc(0, "APV: keep the codec and af_rssm fixed for the first N updates")


PRESETS: dict[str, dict[str, Any]] = {
    # Tiny: trains a few steps in seconds on CPU, for tests and smoke runs.
    "debug": {
        "rssm": {"deter": 32, "stoch": 4, "classes": 4, "hidden": 32},
        "cnn": {"depth": 4},
        "heads": {"layers": 1, "units": 32},
        "proprio_mlp": {"layers": 1, "units": 32},
    },
    "small": {
        "rssm": {"deter": 256, "stoch": 16, "classes": 16, "hidden": 256},
        "cnn": {"depth": 16},
        "heads": {"units": 256},
        "proprio_mlp": {"layers": 2, "units": 256},
    },
    "paper": {},  # the defaults are the paper configuration
}


def make_config(preset: str | None = None, **overrides: Any) -> WorldModelConfig:
    """Defaults ← ``preset`` ← dotted ``overrides`` (``make_config("debug", **{"rssm.deter": 64})``)."""
    return _config.resolve(WorldModelConfig(), PRESETS, preset, overrides)
