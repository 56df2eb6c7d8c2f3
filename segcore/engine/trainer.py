"""Training loop (official YOLACT ``train.py`` schedule, without its global config).

Reproduces dbolya/yolact ``train.py``: SGD (lr 1e-3, momentum 0.9, weight decay 5e-4,
batch 8), linear warmup from ``lr * warmup_factor`` to ``lr`` over ``warmup_iters`` iterations
(official ``lr_warmup_init 1e-4`` -> ``1e-3`` over ``lr_warmup_until 500``), step decay by
``gamma`` at ``steps``, BatchNorm frozen when the batch per device is below 6
(``cfg.freeze_bn``), and a non-finite total loss skips ``optimizer.step()``. Additions: optional
AMP on CUDA (autocast + GradScaler), periodic / final segcore checkpoints, resume, cooperative
stop, and a progress callback.

Symbols: B batch, S input side.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from segcore.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from segcore.data.dataset import InstanceDataset, collate
from segcore.device import resolve_device

__all__ = ["TrainResult", "train", "lr_at", "freeze_batchnorm", "make_dataset", "FINAL_NAME", "LATEST_NAME"]

FINAL_NAME = "model_final.pth"
LATEST_NAME = "model_latest.pth"


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        checkpoint_path: the final checkpoint (``out_dir/model_final.pth``), also written when
            stopped early.
        iterations_done: completed iterations in total (a resumed run counts from the start).
        skipped_nonfinite: iterations whose total loss was NaN/inf, so no optimizer step was
            taken (during this call).
        final_losses: the last finite iteration's losses (``loss_*`` and ``total``), floats.
        stopped: True when ``should_stop()`` ended the run before ``iterations``.
        seconds: wall time of the call.
    """

    checkpoint_path: Path
    iterations_done: int
    skipped_nonfinite: int
    final_losses: dict = field(default_factory=dict)
    stopped: bool = False
    seconds: float = 0.0


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


def _default_loss_fn(model: nn.Module) -> Callable:
    """The loss of the model's family (``segcore.modeling.registry.family_of``)."""
    from segcore.modeling.registry import family_of

    try:
        return family_of(model).make_loss(model)
    except ValueError:
        raise ValueError(f"no loss known for architecture {getattr(model, 'arch_name', '')!r}; pass loss_fn=") from None


def make_dataset(model: nn.Module, records: list[dict], categories: list[dict], *, augment: bool):
    """``(InstanceDataset, collate_fn)`` with the input policy of the model's family: square S
    (YOLACT) or short side S + padding to 32 (BlendMask; ``model.max_size``, ``model.train_sizes``)."""
    import functools

    from segcore.modeling.registry import family_of

    try:
        fam = family_of(model)
    except ValueError:
        fam = None
    if fam is None or fam.input_policy == "square":
        return InstanceDataset(records, categories, input_size=int(model.input_size), augment=augment), collate
    dataset = InstanceDataset(records, categories, input_size=int(model.input_size), augment=augment,
                              input_policy="short_side", max_size=getattr(model, "max_size", None),
                              train_sizes=getattr(model, "train_sizes", None))
    return dataset, functools.partial(collate, size_divisibility=fam.size_divisibility or 32)


def _infinite(loader: DataLoader):
    while True:
        yield from loader


def _targets_to(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets]


def train(model: nn.Module, records: list[dict], categories: list[dict], *, iterations: int,
          batch_size: int = 8, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
          warmup_iters: int = 500, warmup_factor: float = 0.1, steps=(), gamma: float = 0.1,
          augment: bool = True, device: str | torch.device = "cpu", amp: bool | str = "auto", seed: int = 0,
          out_dir: str | Path, resume: str | Path | None = None, checkpoint_every: int | None = None,
          progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
          num_workers: int = 0, loss_fn: Callable | None = None, freeze_bn: bool | None = None) -> TrainResult:
    """Train ``model`` on segcore records.

    Args:
        model: from ``build_model`` (``arch_name``, ``num_classes``, ``input_size``, ...);
            moved to ``device``, left in eval mode at the end.
        records: segcore records (``docs/INTERFACES.md``); categories: ``[{"id", "name"}]`` of
            length ``model.num_classes`` (index = class index).
        iterations: total iterations to reach (a resumed run continues up to this number).
        batch_size: B images per iteration (official 8).
        lr, momentum, weight_decay: SGD (official 1e-3, 0.9, 5e-4).
        warmup_iters, warmup_factor: linear warmup from ``lr * warmup_factor`` (official 500, 0.1).
        steps, gamma: iterations at which lr is multiplied by ``gamma`` (official x0.1).
        augment: the family's augmentation: SSD (YOLACT) or multi-scale short side + flip
            (BlendMask) (``segcore.data.transforms``).
        device: ``"cpu"``, ``"cuda[:N]"`` or ``"auto"``.
        amp: mixed precision (fp16 autocast + GradScaler); ``"auto"`` = on for CUDA. CUDA only.
        seed: seeds ``random``, ``numpy``, ``torch`` and the data order.
        out_dir: folder for ``model_latest.pth`` (every ``checkpoint_every`` iterations) and
            ``model_final.pth`` (at the end or after a stop; includes the optimizer state).
        resume: a segcore checkpoint with the same arch / num_classes to continue from its
            ``iteration`` and optimizer state (data order and RNG are re-seeded, so a resumed run
            is not bit-identical to an uninterrupted one).
        checkpoint_every: iterations between ``model_latest.pth`` saves (None = only at the end).
        progress: called after every iteration with ``{"iteration" (completed, 1-based),
            "iterations", "losses" {name: float} (incl. "total"), "lr", "eta_s", "nonfinite"
            (bool, this step skipped), "skipped_nonfinite" (count so far)}``.
        should_stop: polled after every iteration; True stops cleanly and saves.
        num_workers: DataLoader workers (0 = load in this process; right for 2 cores).
        loss_fn: ``loss_fn(outputs, targets) -> dict`` of ``loss_*`` tensors; default by arch
            (``yolact_loss``, ``blendmask_loss`` with the model's settings).
        freeze_bn: None = official rule (frozen when ``batch_size < 6``).

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: no records, categories / num_classes mismatch, bad arguments, or
            ``amp=True`` on a CPU device.
        segcore.checkpoints.CheckpointError: ``resume`` is invalid or for another model.
    """
    t_start = time.perf_counter()
    if not records:
        raise ValueError("train: no training records")
    if len(categories) != int(model.num_classes):
        raise ValueError(f"train: {len(categories)} categories for a model with num_classes={model.num_classes}")
    if iterations < 0 or batch_size < 1:
        raise ValueError(f"train: iterations must be >= 0 and batch_size >= 1 (got {iterations}, {batch_size})")
    dev = resolve_device(device)
    if amp == "auto":
        use_amp = dev.type == "cuda"
    elif isinstance(amp, bool):
        use_amp = amp
        if amp and dev.type != "cuda":
            raise ValueError("train: amp=True needs a CUDA device (use amp='auto' or False on CPU)")
    else:
        raise ValueError(f"train: amp must be True, False or 'auto', got {amp!r}")
    if freeze_bn is None:
        freeze_bn = batch_size < 6
    loss_fn = loss_fn or _default_loss_fn(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    model.to(dev)
    model.train()
    frozen = freeze_batchnorm(model) if freeze_bn else []
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    start_iter = 0
    if resume is not None:
        ckpt = read_checkpoint(resume)
        if ckpt["arch"] != model.arch_name or ckpt["num_classes"] != model.num_classes:
            raise CheckpointError(f"{resume}: key 'arch'/'num_classes' is {ckpt['arch']}/{ckpt['num_classes']}, "
                                  f"the model is {model.arch_name}/{model.num_classes}")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{resume}: key 'model' does not fit the model: {str(exc).splitlines()[0]}") from exc
        if ckpt.get("optimizer") is not None:
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{resume}: key 'optimizer' does not fit: {exc}") from exc
        start_iter = int(ckpt["iteration"])
        # a different data order than the first run's first epochs, but reproducible
        torch.manual_seed(seed + start_iter)

    dataset, collate_fn = make_dataset(model, records, categories, augment=augment)
    gen = torch.Generator()
    gen.manual_seed(seed + start_iter)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=len(dataset) >= batch_size, generator=gen,
                        pin_memory=dev.type == "cuda", persistent_workers=num_workers > 0)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    meta_base = {"seed": seed, "batch_size": batch_size, "lr": lr, "momentum": momentum,
                 "weight_decay": weight_decay, "warmup_iters": warmup_iters, "warmup_factor": warmup_factor,
                 "steps": [int(s) for s in steps], "gamma": gamma, "augment": bool(augment),
                 "amp": bool(use_amp), "freeze_bn": bool(freeze_bn), "iterations": int(iterations),
                 "num_images": len(dataset)}

    skipped = 0
    final_losses: dict = {}
    stopped = False
    it = start_iter
    step_times: list[float] = []

    def save(path: Path) -> None:
        meta = dict(meta_base, skipped_nonfinite=skipped, final_losses=dict(final_losses))
        save_checkpoint(path, model, categories=categories, iteration=it, optimizer=optimizer, meta=meta)

    data_iter = _infinite(loader) if start_iter < iterations else iter(())
    while it < iterations:
        t0 = time.perf_counter()
        images, targets, _ = next(data_iter)
        images = images.to(dev, non_blocking=True)
        targets = _targets_to(targets, dev)
        cur_lr = lr_at(it, lr=lr, warmup_iters=warmup_iters, warmup_factor=warmup_factor, steps=steps, gamma=gamma)
        for g in optimizer.param_groups:
            g["lr"] = cur_lr
        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            outputs = model(images)
        # the loss runs in fp32 (binary_cross_entropy is not autocast-safe)
        outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in outputs.items()}
        losses = loss_fn(outputs, targets)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        nonfinite = not bool(torch.isfinite(total))
        loss_values = {k: float(v.detach()) for k, v in losses.items()}
        loss_values["total"] = float(total.detach())
        if nonfinite:
            skipped += 1  # official train.py: no optimizer.step() on a non-finite loss
        else:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            final_losses = loss_values
        it += 1
        step_times.append(time.perf_counter() - t0)
        recent = step_times[-20:]
        eta = (iterations - it) * (sum(recent) / len(recent))
        if progress is not None:
            progress({"iteration": it, "iterations": iterations, "losses": loss_values, "lr": cur_lr,
                      "eta_s": eta, "nonfinite": nonfinite, "skipped_nonfinite": skipped})
        if checkpoint_every and it % checkpoint_every == 0 and it < iterations:
            save(out_dir / LATEST_NAME)
        if should_stop is not None and it < iterations and should_stop():
            stopped = True
            break

    final_path = out_dir / FINAL_NAME
    save(final_path)
    if stopped:
        save(out_dir / LATEST_NAME)
    model.eval()
    for p in frozen:  # give the caller its model back with the original requires_grad flags
        p.requires_grad_(True)
    return TrainResult(checkpoint_path=final_path, iterations_done=it, skipped_nonfinite=skipped,
                       final_losses=final_losses, stopped=stopped, seconds=time.perf_counter() - t_start)
