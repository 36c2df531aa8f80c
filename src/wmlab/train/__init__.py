"""One trainer for every model: precision, devices, DDP, checkpoints with exact resume, logging.

Usage::

    trainer = Trainer(model, loader, TrainerConfig(steps=1000), run_dir="runs/x")
    metrics = trainer.fit()          # run again on the same run_dir to resume
"""

from wmlab.train.checkpoint import CheckpointError, CheckpointNotFoundError, load_weights
from wmlab.train.distributed import DistInfo, LossModule, rank_seed
from wmlab.train.options import TrainerConfig
from wmlab.train.precision import autocast, pick_device
from wmlab.train.trainer import Trainer, seed_everything, to_device

__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "DistInfo", "LossModule", "Trainer", "TrainerConfig",
    "autocast", "load_weights", "pick_device", "rank_seed", "seed_everything", "to_device",
]
