"""Shared neural-network parts: LayerNorm'd units, MLPs, CNN encoder/decoder, distributions and losses,
and CPU-friendly variants of conv/linear gradients (bf16 GEMM weight gradients, per-sequence ones in loops)."""

from wmlab.nn.blocks import (
    MLP,
    ChannelNorm,
    ConvDecoder,
    ConvEncoder,
    GemmGradConv2d,
    GemmGradConvTranspose2d,
    LayerNorm,
    NormLinear,
    activation,
    compute_dtype,
    conv_stages,
    init_hidden_,
    init_output_,
)
from wmlab.nn.dists import (
    TwoHot,
    bernoulli_nll,
    categorical_entropy,
    categorical_kl,
    kl_balance,
    mode_onehot,
    mse_sum,
    sample_onehot,
    symexp,
    symlog,
    unimix_logprobs,
)
from wmlab.nn.tape import StepLinear

__all__ = [
    "MLP", "ChannelNorm", "ConvDecoder", "ConvEncoder", "GemmGradConv2d", "GemmGradConvTranspose2d",
    "LayerNorm", "NormLinear", "StepLinear", "activation", "compute_dtype", "conv_stages",
    "init_hidden_", "init_output_", "TwoHot", "bernoulli_nll", "categorical_entropy", "categorical_kl",
    "kl_balance", "mode_onehot", "mse_sum", "sample_onehot", "symexp", "symlog",
    "unimix_logprobs",
]
