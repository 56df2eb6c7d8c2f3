"""Training engine."""

from segcore.engine.trainer import TrainResult, freeze_batchnorm, lr_at, train

__all__ = ["TrainResult", "freeze_batchnorm", "lr_at", "train"]
