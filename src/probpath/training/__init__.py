"""Training services: the ``Trainer`` loop, checkpoints with exact resume, and DDP support."""

from probpath.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from probpath.training.ema import EMA
from probpath.training.interrupt import TrainingInterrupted
from probpath.training.trainer import TrainConfig, Trainer, TrainingError, TrainResult

__all__ = [
    "EMA",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "load_checkpoint",
    "save_checkpoint",
]
