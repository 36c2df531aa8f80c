"""The trainer's settings: one dataclass shared by every model's training job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from wmlab.config import ConfigError


@dataclass
class TrainerConfig:
    """Optimisation, precision, devices, logging and checkpoint schedule of one training run.

    Steps count optimizer updates (each one consumes ``grad_accum`` batches), starting at 1.
    """

    steps: int = field(default=1000, metadata={"doc": "optimizer updates to train for (a resumed run continues "
                                                        "up to this number)"})
    lr: float = field(default=3e-4, metadata={"doc": "AdamW learning rate (per-group lr in optimizer_groups wins)"})
    warmup: int = field(default=0, metadata={"doc": "linear learning-rate warm-up over this many steps (0 = off)"})
    decay: int = field(default=0, metadata={"doc": "linear learning-rate decay towards zero over the last N steps "
                                                    "(0 = off): warm-up, constant, decay"})
    eps: float = field(default=1e-8, metadata={"doc": "AdamW epsilon"})
    weight_decay: float = field(default=0.0, metadata={"doc": "AdamW decoupled weight decay"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"doc": "AdamW moment decay rates"})
    grad_clip: float = field(default=1000.0, metadata={"doc": "clip the global gradient norm to this (0 = no "
                                                                "clipping; the norm is logged either way)"})
    precision: Literal["auto", "bf16", "fp32"] = field(default="auto", metadata={
        "doc": "auto: bf16 where the hardware has it natively (GPUs with bf16, CPUs with AVX-512 BF16 or AMX), "
               "else fp32; bf16: autocast on CPU and GPU (2.1-2.3x faster than fp32 on AVX-512-BF16 and AMX CPUs "
               "at paper size, 10-20x slower on AVX2-only CPUs, which emulate it); fp32 (also faster on a GPU for the "
               "built-in presets, whose small kernels leave it waiting on launches)"})
    device: str = field(default="auto", metadata={"doc": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"})
    reuse_memory: bool = field(default=True, metadata={
        "doc": "on CPU, keep freed memory in the process heap for the next step instead of unmapping every large "
               "activation (glibc malloc settings; about 20 % faster at paper size; the process keeps its peak "
               "memory); false leaves malloc as it is"})
    seed: int = field(default=0, metadata={"doc": "seed for python/numpy/torch; rank r uses a derived seed"})
    grad_accum: int = field(default=1, metadata={"doc": "micro-batches summed into each update (gradients are "
                                                          "synchronised across processes on the last one)"})
    log_every: int = field(default=50, metadata={"doc": "log averaged train metrics every N steps (and at the end)"})
    eval_every: int = field(default=0, metadata={"doc": "run the evaluators every N steps and at the end (0 = "
                                                          "never)"})
    ckpt_every: int = field(default=1000, metadata={"doc": "checkpoint every N steps and at the end (0 = never)"})
    keep_checkpoints: int = field(default=3, metadata={"doc": "keep the newest K checkpoints (0 = keep all)"})
    compile: bool = field(default=False, metadata={
        "doc": "torch.compile the loss; the first step then takes long (a paper-size Dreamer update: 160 s cold, "
               "30-40 s with inductor's cache); a world model in fp32 on CPU gains about 1.4x, a bf16 Dreamer "
               "update on CPU 3-5 %; off by default"})
    find_unused_parameters: bool = field(default=False, metadata={
        "doc": "DDP option for models whose loss leaves some parameters without gradient"})
    tensorboard: bool = field(default=True, metadata={"doc": "write TensorBoard events under run_dir/tb"})
    wandb: bool = field(default=False, metadata={"doc": "also log to Weights & Biases (offline unless WANDB_MODE "
                                                         "is set; needs the wandb package)"})
    wandb_project: str = field(default="wmlab", metadata={"doc": "W&B project name"})
    progress: bool = field(default=True, metadata={"doc": "show a progress bar (main process only)"})

    def validate(self) -> "TrainerConfig":
        """Raise :class:`ConfigError` naming the first bad field."""
        for name in ("steps", "log_every", "eval_every", "ckpt_every", "keep_checkpoints", "warmup", "decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"trainer {name}={getattr(self, name)} must be >= 0")
        if self.grad_accum < 1:
            raise ConfigError(f"trainer grad_accum={self.grad_accum} must be >= 1")
        if self.lr <= 0 or self.eps <= 0:
            raise ConfigError(f"trainer lr={self.lr} and eps={self.eps} must be > 0")
        if self.grad_clip < 0:
            raise ConfigError(f"trainer grad_clip={self.grad_clip} must be >= 0 (0 disables clipping)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"trainer betas={self.betas} must be two numbers in [0, 1)")
        from wmlab.train.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer precision={self.precision!r} must be one of {', '.join(PRECISIONS)}")
        return self
