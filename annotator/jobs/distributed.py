"""Multi-GPU training: the same run through ``torchrun`` (``annotator train --gpus N``).

``annotator train --gpus N`` plans the run in the CLI process (:func:`annotator.jobs.train.prepare_train_job`),
then :func:`launch_torchrun` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m
annotator.jobs.train_worker OUT/train_spec.json``. Each worker joins the process group (NCCL on CUDA,
gloo on CPU) and runs :func:`annotator.jobs.train.execute_train_spec`, the single-process job's
own function: ``segcore.engine.train`` sees the process group and trains with DDP and a
``DistributedSampler`` (one training loop for both; see :mod:`segcore.engine.trainer`). Rank 0
streams progress as JSON lines and writes ``OUT/train_outcome.json``; the CLI process then
registers the version.

``--standalone`` lets torchrun's c10d rendezvous bind a free port itself (``localhost:0``), so no
port is picked here and released before torchrun binds it. Cancel: ``should_stop`` is polled while
the workers run; when it turns True the file ``OUT/train_cancel`` is created, which every worker
polls as its ``should_stop`` (the engine all-reduces the flag, so every rank stops after the same
iteration and rank 0 saves).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

__all__ = ["OUTCOME_NAME", "PROGRESS_PREFIX", "CANCEL_NAME", "launch_torchrun", "torchrun_command"]

OUTCOME_NAME = "train_outcome.json"
CANCEL_NAME = "train_cancel"
PROGRESS_PREFIX = "@@progress "


def torchrun_command(spec_path: Path, nproc: int) -> list[str]:
    """The ``torchrun`` command line (``python -m torch.distributed.run``) of a planned job."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(int(nproc)), "-m", "annotator.jobs.train_worker", str(spec_path)]


def launch_torchrun(spec, *, nproc: int, progress: Optional[Callable[[dict], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None, log: Callable[[str], None] = print,
                    timeout: Optional[float] = None) -> dict:
    """Run a planned job (:class:`annotator.jobs.train.TrainSpec`) on ``nproc`` processes with
    ``torchrun``; returns rank 0's outcome dict (plus ``ranks``: each rank's ``{"rank", "pid",
    "world_size", "steps_per_epoch", "epoch_steps", "params_sha256", "iterations_done"}``).

    Raises:
        AnnotatorError: torchrun failed (its last output lines in the message).
    """
    from annotator.errors import AnnotatorError

    out_dir = Path(spec.out_dir)
    (out_dir / OUTCOME_NAME).unlink(missing_ok=True)
    (out_dir / CANCEL_NAME).unlink(missing_ok=True)
    spec_path = spec.save()
    log(f"starting {nproc} training processes: torchrun --standalone --nproc_per_node {nproc} "
        "-m annotator.jobs.train_worker")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: list[str] = []
    proc = subprocess.Popen(torchrun_command(spec_path, nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    done = threading.Event()

    def watch_cancel() -> None:
        while not done.wait(0.2):
            if should_stop is not None and should_stop():
                (out_dir / CANCEL_NAME).touch()
                return

    watcher = threading.Thread(target=watch_cancel, daemon=True)
    watcher.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(PROGRESS_PREFIX):
                if progress is not None:
                    progress(json.loads(line[len(PROGRESS_PREFIX):]))
            else:
                tail = (tail + [line])[-20:]
                if line.startswith("@@log "):
                    log(line.split(" ", 1)[1])
        rc = proc.wait(timeout)
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
        (out_dir / CANCEL_NAME).unlink(missing_ok=True)
    if rc != 0 or not (out_dir / OUTCOME_NAME).is_file():
        raise AnnotatorError(f"{out_dir}: distributed training failed (torchrun exit code {rc}): "
                             + " | ".join(t for t in tail if t.strip())[-1500:])
    return json.loads((out_dir / OUTCOME_NAME).read_text(encoding="utf-8"))
