"""Training engine: one loop for one process and for each rank of a DDP run, with hooks."""

from segcore.engine.trainer import (CheckpointHook, DivergenceHook, EvalHook, TrainHook, TrainResult, TrainState,
                                    freeze_batchnorm, lr_at, train)

__all__ = ["CheckpointHook", "DivergenceHook", "EvalHook", "TrainHook", "TrainResult", "TrainState",
           "freeze_batchnorm", "lr_at", "train"]
