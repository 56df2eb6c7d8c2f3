"""Multi-GPU training: the same run through ``torchrun`` / ``torch.distributed`` (DDP + DistributedSampler).

``annotator train --gpus N`` plans the run in the CLI process (:func:`annotator.jobs.train.prepare_train_job`),
then :func:`launch_torchrun` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m
annotator.jobs.train_worker OUT/train_spec.json``. Each worker joins the process group (NCCL on CUDA,
gloo on CPU), builds the model, wraps it in ``DistributedDataParallel`` and trains with
:func:`train_ddp`: the engine's schedule (``segcore.engine.trainer.lr_at``), BN freezing, dataset
and loss (``make_dataset``, the family's loss), with a ``DistributedSampler`` so that each process
sees its own 1/N of every epoch. ``batch_size`` is per process: N processes with batch B take the
same number of optimizer steps per epoch as one process with batch N x B (both drop the last
incomplete batch). Rank 0 evaluates, keeps the best checkpoint, writes ``OUT/train_outcome.json``
and streams progress as JSON lines; the CLI process then registers the version.

Non-finite losses are agreed on by all ranks (all-reduce) so that every rank skips the same step;
the stop flag (cancel, early stop) is all-reduced every iteration.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

OUTCOME_NAME = "train_outcome.json"
PROGRESS_PREFIX = "@@progress "


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _any(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on any rank (all-reduce MAX; plain bool without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def train_ddp(model: nn.Module, records: list[dict], categories: list[dict], *, iterations: int,
              batch_size: int = 8, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
              warmup_iters: int = 500, warmup_factor: float = 0.1, steps=(), gamma: float = 0.1,
              augment: bool = True, device: str | torch.device = "cpu", amp: bool | str = "auto", seed: int = 0,
              out_dir: str | Path, resume: str | Path | None = None, checkpoint_every: int | None = None,
              progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
              num_workers: int = 0, loss_fn: Callable | None = None, freeze_bn: bool | None = None):
    """``segcore.engine.train`` for one rank of a DDP run (same arguments and result).

    Without an initialised process group it runs as a world of one (the sampler then covers the
    whole dataset), which is how the step counts are compared in the tests. The result also has
    ``world_size``, ``steps_per_epoch`` and ``epoch_steps`` (optimizer steps taken in each epoch
    started, counted on this rank).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from segcore.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
    from segcore.device import resolve_device
    from segcore.engine.trainer import (FINAL_NAME, LATEST_NAME, TrainResult, _default_loss_fn, _targets_to,
                                        freeze_batchnorm, lr_at, make_dataset)

    t_start = time.perf_counter()
    rank, world = _world()
    if not records:
        raise ValueError("train: no training records")
    if len(categories) != int(model.num_classes):
        raise ValueError(f"train: {len(categories)} categories for a model with num_classes={model.num_classes}")
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    use_amp = dev.type == "cuda" if amp == "auto" else bool(amp)
    if freeze_bn is None:
        freeze_bn = batch_size < 6
    loss_fn = loss_fn or _default_loss_fn(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed)

    model.to(dev)
    model.train()
    frozen = freeze_batchnorm(model) if freeze_bn else []
    start_iter = 0
    resume_opt = None
    if resume is not None:
        ckpt = read_checkpoint(resume)
        if ckpt["arch"] != model.arch_name or ckpt["num_classes"] != model.num_classes:
            raise CheckpointError(f"{resume}: key 'arch'/'num_classes' does not match the model")
        model.load_state_dict(ckpt["model"])
        resume_opt = ckpt.get("optimizer")
        start_iter = int(ckpt["iteration"])
    net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True) \
        if world > 1 else model
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if resume_opt is not None:
        optimizer.load_state_dict(resume_opt)

    dataset, collate_fn = make_dataset(model, records, categories, augment=augment)
    drop = len(dataset) >= batch_size * world
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=drop, pin_memory=dev.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"train: {len(dataset)} images are fewer than one batch per process ({batch_size} x {world})")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    meta_base = {"seed": seed, "batch_size": batch_size, "world_size": world, "lr": lr, "steps": [int(s) for s in steps],
                 "iterations": int(iterations), "num_images": len(dataset), "freeze_bn": bool(freeze_bn)}

    skipped, stopped, it = 0, False, start_iter
    final_losses: dict = {}
    epoch_steps: list[int] = []
    step_times: list[float] = []

    def save(path: Path) -> None:
        if rank == 0:
            save_checkpoint(path, model, categories=categories, iteration=it, optimizer=optimizer,
                            meta=dict(meta_base, skipped_nonfinite=skipped, final_losses=dict(final_losses)))

    epoch = start_iter // steps_per_epoch
    while it < iterations and not stopped:
        sampler.set_epoch(epoch)
        epoch_steps.append(0)
        for images, targets, _ in loader:
            t0 = time.perf_counter()
            images = images.to(dev, non_blocking=True)
            targets = _targets_to(targets, dev)
            cur_lr = lr_at(it, lr=lr, warmup_iters=warmup_iters, warmup_factor=warmup_factor, steps=steps, gamma=gamma)
            for g in optimizer.param_groups:
                g["lr"] = cur_lr
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                outputs = net(images)
            outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                       for k, v in outputs.items()}
            losses = loss_fn(outputs, targets)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            nonfinite = _any(not bool(torch.isfinite(total)), dev)  # every rank skips the same step
            loss_values = {k: float(v.detach()) for k, v in losses.items()}
            loss_values["total"] = float(total.detach())
            if nonfinite:
                skipped += 1
            else:
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
                final_losses = loss_values
                epoch_steps[-1] += 1
            it += 1
            step_times.append(time.perf_counter() - t0)
            recent = step_times[-20:]
            if progress is not None:
                progress({"iteration": it, "iterations": iterations, "losses": loss_values, "lr": cur_lr,
                          "eta_s": (iterations - it) * sum(recent) / len(recent), "nonfinite": nonfinite,
                          "skipped_nonfinite": skipped, "world_size": world})
            if checkpoint_every and it % checkpoint_every == 0 and it < iterations:
                save(out_dir / LATEST_NAME)
            if it >= iterations:
                break
            if _any(should_stop is not None and bool(should_stop()), dev):
                stopped = True
                break
        epoch += 1

    save(out_dir / FINAL_NAME)
    if stopped:
        save(out_dir / LATEST_NAME)
    model.eval()
    for p in frozen:
        p.requires_grad_(True)
    result = TrainResult(checkpoint_path=out_dir / FINAL_NAME, iterations_done=it, skipped_nonfinite=skipped,
                         final_losses=final_losses, stopped=stopped, seconds=time.perf_counter() - t_start)
    result.world_size, result.steps_per_epoch, result.epoch_steps = world, steps_per_epoch, epoch_steps
    result.param_checksum = float(sum(float(p.detach().double().sum()) for p in model.parameters()))
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_torchrun(spec, *, nproc: int, progress: Optional[Callable[[dict], None]] = None,
                    log: Callable[[str], None] = print, timeout: Optional[float] = None) -> dict:
    """Run a planned job (:class:`annotator.jobs.train.TrainSpec`, already saved) on ``nproc``
    processes with ``torchrun``; returns rank 0's outcome dict (plus ``ranks``: each rank's
    ``{"rank", "pid", "world_size", "steps_per_epoch", "epoch_steps", "param_checksum"}``).

    Raises:
        AnnotatorError: torchrun failed (its last output lines in the message).
    """
    from annotator.errors import AnnotatorError

    out_dir = Path(spec.out_dir)
    (out_dir / OUTCOME_NAME).unlink(missing_ok=True)
    spec_path = spec.save()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(int(nproc)),
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}",
           "-m", "annotator.jobs.train_worker", str(spec_path)]
    log(f"starting {nproc} training processes: torchrun --nproc_per_node {nproc} -m annotator.jobs.train_worker")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(PROGRESS_PREFIX):
                if progress is not None:
                    progress(json.loads(line[len(PROGRESS_PREFIX):]))
            else:
                tail = (tail + [line])[-20:]
                if line.startswith("[rank0] ") or line.startswith("@@log "):
                    log(line.split(" ", 1)[1])
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    if rc != 0 or not (out_dir / OUTCOME_NAME).is_file():
        raise AnnotatorError(f"{out_dir}: distributed training failed (torchrun exit code {rc}): "
                             + " | ".join(t for t in tail if t.strip())[-1500:])
    return json.loads((out_dir / OUTCOME_NAME).read_text(encoding="utf-8"))
