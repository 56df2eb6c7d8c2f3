"""The training loop: one process, or one rank of a ``torchrun`` / DDP run, the same code.

Reproduces dbolya/yolact ``train.py``: SGD (lr 1e-3, momentum 0.9, weight decay 5e-4,
batch 8), linear warmup from ``lr * warmup_factor`` to ``lr`` over ``warmup_iters`` iterations
(official ``lr_warmup_init 1e-4`` -> ``1e-3`` over ``lr_warmup_until 500``), step decay by
``gamma`` at ``steps``, BatchNorm frozen when the batch per device is below 6
(``cfg.freeze_bn``), and a non-finite total loss (here also: non-finite gradients) skips
``optimizer.step()``. Additions: optional
AMP on CUDA (autocast + GradScaler), resume, cooperative stop, progress reporting, and hooks
(:class:`TrainHook`): checkpointing (:class:`CheckpointHook`, always installed), validation with
early stopping (:class:`EvalHook`) and divergence detection (:class:`DivergenceHook`).

**Distributed.** When ``torch.distributed`` is initialised (``torchrun``; NCCL on CUDA, gloo on
the CPU) the same loop runs on every rank: the model is wrapped in ``DistributedDataParallel``
(BatchNorm converted to ``nn.SyncBatchNorm`` first when the architecture's official config uses
SyncBN, ``ModelInfo.sync_bn``, and the processes train on CUDA: PyTorch's SyncBN has no CPU
kernel), and a ``DistributedSampler`` gives each rank its own 1/N of every epoch. ``batch_size``
is per process, so N processes with batch B take the optimizer steps per epoch of one process
with batch N x B (both drop the last incomplete batch). Every rank takes the same decisions: a
step is skipped when the loss is not finite on any rank, and the run stops when any rank (hook,
``should_stop``) asks. Rank 0 writes the checkpoints and reports progress. Without a process
group the run is a world of one with the same sampler and schedule.

Every trainable module runs inside ``model(images, targets)`` (the family contract of
:mod:`segcore.modeling.registry`), and the loss is a function of its outputs and the targets, so
DDP sees one module.

Symbols: B batch per process, N processes (world size).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from segcore.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from segcore.data.crops import CropPolicy
from segcore.data.dataset import InstanceDataset, collate
from segcore.device import resolve_device

__all__ = ["TrainResult", "TrainState", "TrainHook", "CheckpointHook", "EvalHook", "DivergenceHook", "train",
           "sync_batchnorm_where_official",
           "lr_at", "freeze_batchnorm", "make_dataset", "FINAL_NAME", "LATEST_NAME", "BEST_NAME", "EVAL_STATE_NAME"]

FINAL_NAME = "model_final.pth"
LATEST_NAME = "model_latest.pth"
BEST_NAME = "model_best.pth"
EVAL_STATE_NAME = "train_state.json"


@dataclass
class TrainResult:
    """Outcome of :func:`train` (the same on every rank).

    Attributes:
        checkpoint_path: the final checkpoint (``out_dir/model_final.pth``), also written when
            stopped early.
        iterations_done: completed iterations in total (a resumed run counts from the start).
        skipped_nonfinite: iterations whose total loss was NaN/inf on some rank, so no optimizer
            step was taken (during this call).
        final_losses: the last finite iteration's losses (``loss_*`` and ``total``), floats.
        stopped: True when the run ended before ``iterations`` (``should_stop`` or a hook).
        stop_reason: None, ``"stopped"`` (``should_stop``) or the reason a hook gave
            (``"early"``, ``"diverged"``).
        seconds: wall time of the call.
        world_size: N; steps_per_epoch: optimizer steps per epoch (``len`` of the loader);
        epoch_steps: optimizer steps taken in each epoch started (non-finite steps excluded).
    """

    checkpoint_path: Path
    iterations_done: int
    skipped_nonfinite: int
    final_losses: dict = field(default_factory=dict)
    stopped: bool = False
    stop_reason: str | None = None
    seconds: float = 0.0
    world_size: int = 1
    steps_per_epoch: int = 0
    epoch_steps: list = field(default_factory=list)


@dataclass
class TrainState:
    """What hooks see (and may change through :meth:`request_stop` and ``report``).

    Attributes:
        model: the model itself (not the DDP wrapper); optimizer: the SGD optimizer.
        categories, out_dir, iterations (target), iteration (completed, 1-based after a step),
        rank, world_size, device, losses (this step's floats incl. ``total``), lr, nonfinite
        (this step was skipped), skipped_nonfinite (count in this call), final_losses (last
        finite step), meta (plain values saved in checkpoints), report (extra entries of this
        step's progress dict, e.g. ``"val"``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    categories: list
    out_dir: Path
    iterations: int
    iteration: int = 0
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    losses: dict = field(default_factory=dict)
    lr: float = 0.0
    nonfinite: bool = False
    skipped_nonfinite: int = 0
    final_losses: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    stop_reason: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 (writes files, reports progress)."""
        return self.rank == 0

    def request_stop(self, reason: str) -> None:
        """Stop after this step (every rank stops: the flag is all-reduced)."""
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    def save(self, path: Path, *, with_optimizer: bool = True, meta: dict | None = None) -> None:
        """Write a segcore checkpoint of the model at this iteration (rank 0 only; no-op elsewhere)."""
        if self.is_main:
            save_checkpoint(path, self.model, categories=self.categories, iteration=self.iteration,
                            optimizer=self.optimizer if with_optimizer else None,
                            meta=dict(self.meta, skipped_nonfinite=self.skipped_nonfinite,
                                      final_losses=dict(self.final_losses), **(meta or {})))


class TrainHook:
    """Called by :func:`train` on every rank: ``before_train`` once, ``after_step`` after every
    iteration (skipped or not), ``after_train`` once (also after a stop). Hooks run in order; a
    hook stops the run with ``state.request_stop(reason)`` and adds progress entries to
    ``state.report``. The model is in training mode during the run; a hook that evaluates puts it
    back (:class:`EvalHook` evaluates a copy)."""

    def before_train(self, state: TrainState) -> None:
        pass

    def after_step(self, state: TrainState) -> None:
        pass

    def after_train(self, state: TrainState) -> None:
        pass

    def rescale(self, state: TrainState, factor: float) -> None:
        """The schedule was stretched by ``factor`` (a time budget laid it out, :func:`train`):
        scale any period counted in iterations."""

    def time_reserve(self, state: TrainState) -> float:
        """Seconds this hook will spend after the last step that a time budget must keep free
        (asked once, when the budget is first laid out, on rank 0); 0 by default."""
        return 0.0


class CheckpointHook(TrainHook):
    """``out_dir/model_latest.pth`` every ``every`` iterations (not at the last one) and after a
    stop, ``out_dir/model_final.pth`` at the end; both with the optimizer state (resumable)."""

    def __init__(self, every: int | None = None):
        self.every = int(every) if every else None

    def rescale(self, state: TrainState, factor: float) -> None:
        if self.every:
            self.every = max(1, int(round(self.every * factor)))

    def after_step(self, state: TrainState) -> None:
        if self.every and state.iteration % self.every == 0 and state.iteration < state.iterations:
            state.save(state.out_dir / LATEST_NAME)

    def after_train(self, state: TrainState) -> None:
        state.save(state.out_dir / FINAL_NAME)
        if state.stop_reason is not None:
            state.save(state.out_dir / LATEST_NAME)


class DivergenceHook(TrainHook):
    """Stops the run (reason ``"diverged"``) after ``limit`` non-finite losses in a row."""

    def __init__(self, limit: int = 20):
        self.limit = int(limit)
        self.run = 0

    def after_step(self, state: TrainState) -> None:
        self.run = self.run + 1 if state.nonfinite else 0
        if self.run >= self.limit:
            state.request_stop("diverged")


class EvalHook(TrainHook):
    """Validation segm / bbox AP every ``every`` iterations and at the end, the best checkpoint
    kept, early stopping.

    Rank 0 evaluates a copy of the model (``segcore.evaluation.evaluate_predictions`` through a
    :class:`segcore.predictor.Predictor`; the training model is not touched) on ``records``,
    saves ``out_dir/model_best.pth`` when the evaluation is at least as good as the best so far
    (:meth:`better`: segm AP, then bbox AP; a tie goes to the later, longer-trained weights, so
    an all-zero history from a small validation split keeps the trained weights, not the first
    ones) (``meta`` ``val_segm_AP``, ``val_bbox_AP``) and keeps ``out_dir/train_state.json``
    (``{"best": {"iteration", "segm", "bbox"}, "history": [{"iteration", "segm_AP", "bbox_AP"}]}``;
    a resumed run continues it). After ``patience`` evaluations without a strictly better segm
    AP, not before ``min_iterations`` and never while the best segm AP is 0 (nothing learned yet
    to overfit), it requests the stop ``"early"`` (``patience`` 0: never). Each evaluation adds
    ``"val": {"iteration", "segm_AP", "bbox_AP", "best_segm_AP", "best_iteration"}`` to that
    step's progress. No evaluation after a ``"diverged"`` stop.
    """

    def __init__(self, records: list[dict], *, every: int, patience: int = 3, min_iterations: int = 0,
                 score_threshold: float = 0.05, device: str | torch.device | None = None, resume: bool = False):
        self.records = list(records)
        self.every = max(1, int(every))
        self.patience = int(patience)
        self.min_iterations = int(min_iterations)
        self.score_threshold = float(score_threshold)
        self.device = device
        self.resume = bool(resume)
        self.state: dict = {"best": None, "history": []}
        self.last_eval: int | None = None

    @staticmethod
    def better(res: dict, best: dict | None) -> bool:
        """Whether evaluation ``res`` (``{"segm": {"AP"}, "bbox": {"AP"}}``) replaces ``best``:
        higher segm AP, or equal segm AP and bbox AP at least as high (ties: the later wins)."""
        if best is None:
            return True
        key = (res["segm"]["AP"], res["bbox"]["AP"])
        return key >= (best["segm"]["AP"], best["bbox"]["AP"])

    @property
    def best(self) -> dict | None:
        """``{"iteration", "segm", "bbox"}`` of the best evaluation, or None."""
        return self.state.get("best")

    def rescale(self, state: TrainState, factor: float) -> None:
        self.every = max(1, int(round(self.every * factor)))
        self.min_iterations = int(round(self.min_iterations * factor))

    def time_reserve(self, state: TrainState) -> float:
        """The final evaluation's time, estimated by evaluating the first validation image now
        (prediction and COCOeval) times the number of images: dense validation images take
        minutes on a CPU, which a 5-minute budget must include."""
        if not self.records or not state.is_main:
            return 0.0
        from segcore.evaluation import evaluate_predictions
        from segcore.predictor import Predictor

        t0 = time.perf_counter()
        predictor = Predictor(state.model, state.categories, device=self.device or state.device)
        evaluate_predictions(predictor, self.records[:1], state.categories, score_threshold=self.score_threshold,
                             max_detections=max(100, int(state.model.info.max_detections)), by_size=False)
        return (time.perf_counter() - t0) * len(self.records)

    def before_train(self, state: TrainState) -> None:
        import json

        path = state.out_dir / EVAL_STATE_NAME
        if self.resume and path.is_file():
            try:
                self.state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.state = {"best": None, "history": []}

    def _evaluate(self, state: TrainState) -> None:
        import json

        from segcore.evaluation import evaluate_predictions
        from segcore.predictor import Predictor

        # the Predictor evaluates its own copy: the training model keeps its mode and memory format
        predictor = Predictor(state.model, state.categories, device=self.device or state.device)
        # AP counts as many detections per image as the model keeps (dense data: hundreds), at least COCO's 100
        dets = max(100, int(state.model.info.max_detections))
        # the "all" size range only: the same AP, 4x sooner on dense images (evaluate_coco_objects)
        res = evaluate_predictions(predictor, self.records, state.categories, score_threshold=self.score_threshold,
                                   max_detections=dets, by_size=False)
        it = state.iteration
        self.state["history"].append({"iteration": it, "segm_AP": res["segm"]["AP"], "bbox_AP": res["bbox"]["AP"]})
        best = self.state.get("best")
        improved = best is None or res["segm"]["AP"] > best["segm"]["AP"]
        if self.better(res, best):
            state.save(state.out_dir / BEST_NAME, with_optimizer=False,
                       meta={"val_segm_AP": res["segm"]["AP"], "val_bbox_AP": res["bbox"]["AP"]})
            self.state["best"] = best = {"iteration": it, "segm": res["segm"], "bbox": res["bbox"]}
        tmp = state.out_dir / (EVAL_STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(self.state), encoding="utf-8")
        os.replace(tmp, state.out_dir / EVAL_STATE_NAME)
        self.last_eval = it
        state.report["val"] = {"iteration": it, "segm_AP": res["segm"]["AP"], "bbox_AP": res["bbox"]["AP"],
                               "best_segm_AP": best["segm"]["AP"], "best_iteration": best["iteration"]}
        if improved:
            self.state["improved_at"] = it
        since = sum(1 for h in self.state["history"] if h["iteration"] > self.state.get("improved_at", it))
        if self.patience > 0 and since >= self.patience and it >= self.min_iterations and best["segm"]["AP"] > 0:
            state.request_stop("early")
            state.report["early_stop"] = {"iteration": it, "since": since, "best_segm_AP": best["segm"]["AP"],
                                          "best_iteration": best["iteration"]}

    def after_step(self, state: TrainState) -> None:
        if not self.records or not state.is_main or state.stop_reason == "diverged":
            return
        if state.iteration % self.every == 0 or state.iteration == state.iterations:
            self._evaluate(state)

    def after_train(self, state: TrainState) -> None:
        if (self.records and state.is_main and state.stop_reason != "diverged"
                and self.last_eval != state.iteration):
            self._evaluate(state)  # a stop or resume end between evaluations


def lr_at(iteration: int, *, lr: float, warmup_iters: int, warmup_factor: float, steps=(), gamma: float = 0.1) -> float:
    """Learning rate at a 0-based iteration: linear warmup, then step decay.

    ``iteration < warmup_iters``: ``lr * (warmup_factor + (1 - warmup_factor) * iteration /
    warmup_iters)``; afterwards ``lr * gamma ** (number of steps <= iteration)``.
    """
    decay = gamma ** sum(1 for s in steps if iteration >= s)
    if warmup_iters > 0 and iteration < warmup_iters:
        return lr * (warmup_factor + (1.0 - warmup_factor) * iteration / warmup_iters) * decay
    return lr * decay


def freeze_batchnorm(model: nn.Module) -> list[nn.Parameter]:
    """Put every BatchNorm layer in eval mode and stop its parameters' gradients (official
    ``freeze_bn``). Call after every ``model.train()``.

    Returns:
        The parameters whose ``requires_grad`` this call switched off."""
    frozen = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    p.requires_grad_(False)
                    frozen.append(p)
    return frozen


def make_dataset(model: nn.Module, records: list[dict], categories: list[dict], *, augment: bool,
                 crop: CropPolicy | None = None, seed: int = 0):
    """``(InstanceDataset, collate_fn)`` with the model's input policy (``model.info``): square S
    (SSD augmentation) or short side S + padding (multi-scale short side + flip); with ``crop``,
    ``C x C`` crops at the policy's scale (:mod:`segcore.data.crops`) for either."""
    import functools

    info = model.info
    if info.input_policy == "square":
        if crop is not None and crop.size != info.input_size:
            raise ValueError(f"{info.arch}: a square model takes {info.input_size} px crops, not {crop.size}")
        return InstanceDataset(records, categories, input_size=info.input_size, augment=augment, crop=crop,
                               seed=seed), collate
    dataset = InstanceDataset(records, categories, input_size=info.input_size, augment=augment,
                              input_policy="short_side", max_size=info.max_size,
                              train_sizes=info.train_sizes or None, crop=crop, seed=seed)
    return dataset, functools.partial(collate, size_divisibility=info.size_divisibility)


def sync_batchnorm_where_official(model: nn.Module, device: torch.device, *, freeze_bn: bool) -> nn.Module:
    """The module a multi-process run wraps in DDP: ``model`` with its ``BatchNorm`` layers turned
    into ``nn.SyncBatchNorm`` (in place; same parameters, buffers and state_dict keys) when its
    official configuration trains with SyncBN (``model.info.sync_bn``, e.g. AdelaiDet's
    ``*_syncbn_*`` BlendMask-RT), BN is trained (not ``freeze_bn``) and the device is CUDA
    (PyTorch's SyncBN kernel is CUDA-only; on the CPU the statistics stay per process). Otherwise
    ``model`` unchanged. Only called with more than one process."""
    if model.info.sync_bn and device.type == "cuda" and not freeze_bn:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


class _ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can leave out the first ``skip`` indices of the next epoch it
    yields (a resumed run continues mid-epoch with the data order of the interrupted one), and
    yields ``(index, epoch)`` keys: the dataset seeds each item's augmentation with them, so
    DataLoader workers and the main process make the same items."""

    skip = 0

    def __iter__(self):
        indices = list(super().__iter__())[self.skip:]
        self.skip = 0
        return iter([(int(i), int(self.epoch)) for i in indices])


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _any_rank(flag: bool, device: torch.device, world: int) -> bool:
    """True when ``flag`` is True on any rank (all-reduce MAX; the flag itself in a world of one)."""
    if world == 1:
        return bool(flag)
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _targets_to(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets]


def _float_outputs(outputs: dict) -> dict:
    """Floating tensors of a model's outputs in float32 (the loss runs in fp32: binary cross-entropy
    is not autocast-safe); other entries (lists, matching, nested dicts) as they are."""
    return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in outputs.items()}


def train(model: nn.Module, records: list[dict], categories: list[dict], *, iterations: int,
          batch_size: int = 8, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
          warmup_iters: int = 500, warmup_factor: float = 0.1, steps=(), gamma: float = 0.1,
          augment: bool = True, device: str | torch.device = "cpu", amp: bool | str = "auto", seed: int = 0,
          out_dir: str | Path, resume: str | Path | None = None, checkpoint_every: int | None = None,
          progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
          num_workers: int = 0, loss_fn: Callable | None = None, freeze_bn: bool | None = None,
          hooks: list[TrainHook] | tuple = (), crop: CropPolicy | None = None,
          time_budget_s: float | None = None, calibration_steps: int = 10) -> TrainResult:
    """Train ``model`` on segcore records, in this process or as one rank of a DDP run (see the
    module docstring).

    Args:
        model: from ``build_model`` (``model.info``); moved to ``device``, left in eval mode at
            the end with its parameters' ``requires_grad`` as they were.
        records: segcore records (``docs/INTERFACES.md``); categories: ``[{"id", "name"}]`` of
            length ``model.info.num_classes`` (index = class index).
        iterations: total iterations to reach (a resumed run continues up to this number).
        batch_size: B images per iteration and process (official 8).
        lr, momentum, weight_decay: SGD (official 1e-3, 0.9, 5e-4).
        warmup_iters, warmup_factor: linear warmup from ``lr * warmup_factor`` (official 500, 0.1).
        steps, gamma: iterations at which lr is multiplied by ``gamma`` (official x0.1).
        augment: the input policy's augmentation (``segcore.data.transforms``).
        device: ``"cpu"``, ``"cuda[:N]"`` or ``"auto"`` (a DDP rank on CUDA uses ``LOCAL_RANK``).
        amp: mixed precision. ``"auto"``: fp16 autocast + GradScaler on CUDA; bf16 autocast
            (no scaler: bf16 has fp32's range) with channels_last on a CPU with native bf16
            (:func:`segcore.device.native_bf16`) for inputs of at least :data:`CPU_BF16_MIN_SIDE`
            px; off elsewhere. ``True``: the same, but an error
            where the device has neither. ``False``: fp32. The loss is computed in fp32 either way.
        seed: seeds ``random``, ``numpy``, ``torch`` (+ rank), the sampler's data order and each
            item's augmentation.
        out_dir: folder for the checkpoints (:class:`CheckpointHook`) and hook files.
        resume: a segcore checkpoint with the same arch / num_classes to continue from its
            ``iteration`` and optimizer state, at the same place of the same data order.
        checkpoint_every: iterations between ``model_latest.pth`` saves (None = only at the end).
        progress: called on rank 0 after every iteration (after the hooks) with
            ``{"iteration" (completed, 1-based), "iterations", "losses" {name: float} (incl.
            "total"), "lr", "eta_s", "nonfinite" (bool, this step skipped), "skipped_nonfinite"
            (count so far), "world_size"}`` plus the hooks' entries (``"val"``, ...).
        should_stop: polled after every iteration; True on any rank stops every rank cleanly
            (``stop_reason`` ``"stopped"``) and saves.
        num_workers: DataLoader workers (0 = load in this process; right for 2 cores).
        loss_fn: ``loss_fn(outputs, targets) -> dict`` of ``loss_*`` tensors; default the
            family's (``Family.make_loss(model)``).
        freeze_bn: None = official rule (frozen when ``batch_size < 6``).
        hooks: more :class:`TrainHook` objects, run after the checkpoint hook's ``after_step``
            and before its ``after_train``.
        crop: train on crops (:class:`segcore.data.crops.CropPolicy`) instead of whole images.
        time_budget_s: a wall-clock budget for this call (data loading, hooks and evaluations
            included). After ``calibration_steps`` steps (plus 2 warm-up steps) the iteration time
            is measured and the schedule laid out to end within the budget: ``iterations`` (now an
            upper bound), ``warmup_iters``, ``steps`` and the hooks' periods (:meth:`TrainHook.rescale`)
            are scaled by the same factor, so the schedule keeps its shape. It is laid out once
            more, from the steps since, when 30 % of that plan is done (:class:`_Budget`). The
            time the hooks need after the last step (:meth:`TrainHook.time_reserve`: the final
            validation, estimated by evaluating one image) is kept free. 5 % of the budget is
            kept for the final evaluation and checkpoint; past the budget the run stops
            (``stop_reason`` ``"time"``). Every rank uses rank 0's figures.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: no records, categories / num_classes mismatch, bad arguments, fewer images
            than one batch per process, or ``amp=True`` on a CPU device.
        segcore.checkpoints.CheckpointError: ``resume`` is invalid or for another model.
    """
    from segcore.modeling.registry import family_of

    t_start = time.perf_counter()
    rank, world = _world()
    info = model.info
    if not records:
        raise ValueError("train: no training records")
    if len(categories) != info.num_classes:
        raise ValueError(f"train: {len(categories)} categories for a model with num_classes={info.num_classes}")
    if iterations < 0 or batch_size < 1:
        raise ValueError(f"train: iterations must be >= 0 and batch_size >= 1 (got {iterations}, {batch_size})")
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    from segcore.device import native_bf16

    if amp not in ("auto", True, False):
        raise ValueError(f"train: amp must be True, False or 'auto', got {amp!r}")
    # CPU bf16 only for inputs of at least CPU_BF16_MIN_SIDE px: below, the stride-32..128 FPN
    # levels get 1 x 1 maps, where oneDNN's bf16 weight gradient of a padded 3 x 3 conv reads
    # uninitialised memory (NaN in ~3 of 4 backward passes, torch 2.14.1), and bf16 gains nothing
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16 if (
        native_bf16() and _train_input_side(model, crop) >= CPU_BF16_MIN_SIDE) else None
    if amp is True and amp_dtype is None:
        raise ValueError(f"train: amp=True needs a CUDA device, or a CPU with native bf16 and inputs of at least "
                         f"{CPU_BF16_MIN_SIDE} px (use amp='auto' or False)")
    use_amp = amp is not False and amp_dtype is not None
    channels_last = use_amp and dev.type == "cpu"  # oneDNN's bf16 convolutions want NHWC
    if freeze_bn is None:
        freeze_bn = batch_size < 6
    loss_fn = loss_fn or family_of(model).make_loss(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)

    model.to(dev, memory_format=torch.channels_last) if channels_last else model.to(dev)
    model.train()
    frozen = freeze_batchnorm(model) if freeze_bn else []
    start_iter, resume_optimizer = 0, None
    if resume is not None:
        ckpt = read_checkpoint(resume)
        if ckpt["arch"] != info.arch or ckpt["num_classes"] != info.num_classes:
            raise CheckpointError(f"{resume}: key 'arch'/'num_classes' is {ckpt['arch']}/{ckpt['num_classes']}, "
                                  f"the model is {info.arch}/{info.num_classes}")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{resume}: key 'model' does not fit the model: {str(exc).splitlines()[0]}") from exc
        resume_optimizer = ckpt.get("optimizer")
        start_iter = int(ckpt["iteration"])

    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(sync_batchnorm_where_official(model, dev, freeze_bn=freeze_bn),
                                      device_ids=[dev.index] if dev.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if resume_optimizer is not None:
        try:
            optimizer.load_state_dict(resume_optimizer)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{resume}: key 'optimizer' does not fit: {exc}") from exc

    dataset, collate_fn = make_dataset(model, records, categories, augment=augment, crop=crop, seed=seed)
    drop = len(dataset) >= batch_size * world
    sampler = _ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=drop, pin_memory=dev.type == "cuda",
                        persistent_workers=num_workers > 0)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"train: {len(dataset)} images are fewer than one batch per process ({batch_size} x {world})")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dev.type == "cuda")

    state = TrainState(model=model, optimizer=optimizer, categories=categories, out_dir=out_dir,
                       iterations=int(iterations), iteration=start_iter, rank=rank, world_size=world, device=dev,
                       meta={"seed": seed, "batch_size": batch_size, "world_size": world, "lr": lr,
                             "momentum": momentum, "weight_decay": weight_decay, "warmup_iters": warmup_iters,
                             "warmup_factor": warmup_factor, "steps": [int(s) for s in steps], "gamma": gamma,
                             "augment": bool(augment), "amp": str(amp_dtype).split(".")[-1] if use_amp else "fp32",
                             "freeze_bn": bool(freeze_bn),
                             "iterations": int(iterations), "num_images": len(dataset)})
    all_hooks = [CheckpointHook(checkpoint_every), *hooks]
    for hook in all_hooks:
        hook.before_train(state)

    epoch, skip = divmod(start_iter, steps_per_epoch)
    epoch_steps: list[int] = []
    step_times: list[float] = []
    budget = _Budget(time_budget_s, calibration_steps, t_start) if time_budget_s else None
    plan0 = (iterations, warmup_iters, tuple(steps))  # what the budget's layouts scale
    while state.iteration < iterations and state.stop_reason is None:
        sampler.set_epoch(epoch)
        sampler.skip = skip * batch_size
        epoch_steps.append(0)
        for images, targets, _ in loader:
            t0 = time.perf_counter()
            images = images.to(dev, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = _targets_to(targets, dev)
            state.lr = lr_at(state.iteration, lr=lr, warmup_iters=warmup_iters, warmup_factor=warmup_factor,
                             steps=steps, gamma=gamma)
            for g in optimizer.param_groups:
                g["lr"] = state.lr
            with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=use_amp):
                outputs = net(images, targets)
            losses = loss_fn(_float_outputs(outputs), targets)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            state.nonfinite = _any_rank(not bool(torch.isfinite(total)), dev, world)  # every rank skips alike
            state.losses = {k: float(v.detach()) for k, v in losses.items()}
            state.losses["total"] = float(total.detach())
            if state.nonfinite:
                state.skipped_nonfinite += 1  # official train.py: no optimizer.step() on a non-finite loss
                if world > 1:
                    (total * 0.0).backward()  # DDP's reducer expects this backward; all-zero gradients
            else:
                scaler.scale(total).backward()
                grads = [p.grad for p in params if p.grad is not None]
                bad_grad = bool(grads) and not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
                if use_amp and dev.type == "cuda":
                    bad_grad = False  # the GradScaler skips steps with inf / NaN gradients itself
                if _any_rank(bad_grad, dev, world):
                    state.nonfinite = True
                    state.skipped_nonfinite += 1
                    optimizer.zero_grad(set_to_none=True)
                else:
                    scaler.step(optimizer)
                    scaler.update()
                    state.final_losses = dict(state.losses)
                    epoch_steps[-1] += 1
            state.iteration += 1
            if budget is not None:
                total = budget.layout(state.iteration - start_iter, iterations - start_iter, dev, world,
                                      reserve=lambda: sum(h.time_reserve(state) for h in all_hooks))
                if total is not None:  # the plan scaled from the caller's (rounding once, not per layout)
                    factor = max(1, total) / max(1, iterations - start_iter)      # relative, for the hooks
                    scale = max(1, total) / max(1, plan0[0] - start_iter)         # from the caller's plan
                    iterations = start_iter + max(1, total)
                    warmup_iters = int(plan0[1] * scale)
                    steps = tuple(start_iter + int((s - start_iter) * scale) for s in plan0[2])
                    state.iterations = iterations
                    state.meta.update(iterations=int(iterations), warmup_iters=warmup_iters,
                                      steps=[int(s) for s in steps], time_budget_s=float(time_budget_s))
                    for hook in all_hooks:
                        hook.rescale(state, factor)
                elif budget.over():
                    state.request_stop("time")
            state.report = {}
            for hook in all_hooks:
                hook.after_step(state)
            step_times.append(time.perf_counter() - t0)
            recent = step_times[-20:]
            if progress is not None and state.is_main:
                progress({"iteration": state.iteration, "iterations": iterations, "losses": dict(state.losses),
                          "lr": state.lr, "eta_s": (iterations - state.iteration) * sum(recent) / len(recent),
                          "nonfinite": state.nonfinite, "skipped_nonfinite": state.skipped_nonfinite,
                          "world_size": world, **state.report})
            if state.iteration >= iterations:
                break
            asked = should_stop is not None and bool(should_stop())
            if _any_rank(asked or state.stop_reason is not None, dev, world):
                state.request_stop("stopped" if asked or state.stop_reason is None else state.stop_reason)
                break
        epoch += 1
        skip = 0

    if world > 1:
        state.stop_reason = _agree_on_reason(state.stop_reason, dev)
    for hook in all_hooks:
        hook.after_train(state)
    model.eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    for p in frozen:  # give the caller its model back with the original requires_grad flags
        p.requires_grad_(True)
    return TrainResult(checkpoint_path=out_dir / FINAL_NAME, iterations_done=state.iteration,
                       skipped_nonfinite=state.skipped_nonfinite, final_losses=dict(state.final_losses),
                       stopped=state.stop_reason is not None, stop_reason=state.stop_reason,
                       seconds=time.perf_counter() - t_start, world_size=world, steps_per_epoch=steps_per_epoch,
                       epoch_steps=epoch_steps)


#: Smallest training input side (px) at which a CPU with native bf16 trains in bf16 (see :func:`train`).
CPU_BF16_MIN_SIDE = 256


def _train_input_side(model: nn.Module, crop: CropPolicy | None) -> int:
    """The shorter side of the training inputs: the crop, the square S, or the smallest short side."""
    info = model.info
    if crop is not None:
        return int(crop.size)
    if info.input_policy == "square":
        return int(info.input_size)
    return int(min(info.train_sizes or (info.input_size,)))


class _Budget:
    """Lays out a schedule within a wall-clock budget (see :func:`train`, ``time_budget_s``).

    Twice: after the calibration steps (a quick first plan), and again at the step where
    :attr:`RECHECK_FRACTION` of that first plan is done, from the mean step time since the first
    layout (the first steps of a run are often slower: DataLoader workers starting, kernels being
    chosen; a plan made from them alone left a third of a 5-minute budget unused). Both points are step
    counts every rank agrees on; the figures are rank 0's. The second layout is skipped when it
    changes the plan by less than :attr:`MIN_CHANGE`; with the default schedule it comes before
    the first lr step (35 %)."""

    WARMUP_STEPS, RESERVE, RECHECK_FRACTION, MIN_CHANGE = 2, 0.05, 0.3, 0.02

    def __init__(self, seconds: float, calibration_steps: int, t_start: float):
        self.seconds, self.calibration = float(seconds), max(1, int(calibration_steps))
        self.t_start, self.t_calib, self.cap, self.recheck_at, self.done = t_start, None, None, None, False
        self.first = (0.0, 0)  # time and steps at the first layout
        self.reserve_s = 0.0

    def layout(self, steps_done: int, steps_planned: int, device: torch.device, world: int,
               reserve: Callable[[], float] | None = None) -> int | None:
        """The new number of steps of the plan at the two layout points (else None), at most the
        caller's first ``steps_planned``. ``reserve()``: seconds to keep free after the last step
        (the hooks' :meth:`TrainHook.time_reserve`), asked at the first layout."""
        if self.done:
            return None
        now = time.perf_counter()
        if steps_done == self.WARMUP_STEPS:
            self.t_calib = now
        if self.t_calib is None or steps_done < self.WARMUP_STEPS + self.calibration:
            return None
        if self.recheck_at is not None and steps_done < self.recheck_at:
            return None
        if self.cap is None:
            self.cap = steps_planned
            t0 = now
            self.reserve_s = float(reserve()) if reserve is not None else 0.0
            now = time.perf_counter()
            self.t_calib += now - t0  # the reserve's own measurement is not a training step
        if self.recheck_at is None:
            per_step = (now - self.t_calib) / (steps_done - self.WARMUP_STEPS)
        else:
            per_step = (now - self.first[0]) / max(1, steps_done - self.first[1])
        left = self.seconds * (1 - self.RESERVE) - (now - self.t_start) - self.reserve_s
        total = torch.tensor([min(self.cap, steps_done + max(0, int(left / per_step)))], device=device)
        if world > 1:
            import torch.distributed as dist

            dist.broadcast(total, src=0)
        total = max(int(total.item()), steps_done)
        if self.recheck_at is None:  # first layout
            self.recheck_at = max(steps_done + 2 * self.calibration, int(total * self.RECHECK_FRACTION))
            self.first = (now, steps_done)
            return total
        self.done = True
        return None if abs(total / max(1, steps_planned) - 1.0) < self.MIN_CHANGE else total

    def over(self) -> bool:
        """Past the budget, less the time reserved for after the last step."""
        return time.perf_counter() - self.t_start > self.seconds - self.reserve_s


_REASONS = (None, "stopped", "early", "diverged", "time")


def _agree_on_reason(reason: str | None, device: torch.device) -> str | None:
    """Rank 0's stop reason on every rank (the others only saw the all-reduced stop flag; rank 0's
    hooks may also have asked at the last iteration, where the flag is not exchanged)."""
    import torch.distributed as dist

    t = torch.tensor([_REASONS.index(reason) if reason in _REASONS else 1], device=device)
    dist.broadcast(t, src=0)
    return _REASONS[int(t.item())]

