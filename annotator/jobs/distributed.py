"""Several processes or machines through ``torchrun``: ``annotator train --gpus N`` and
``annotator prelabel --gpus N`` (with torchrun's multi-node options for a cluster).

**Training.** ``annotator train --gpus N`` plans the run in the CLI process
(:func:`annotator.jobs.train.prepare_train_job`), then :func:`launch_torchrun` runs ``python -m
torch.distributed.run --standalone --nproc_per_node N -m annotator.jobs.train_worker
OUT/train_spec.json``. Each worker joins the process group (NCCL on CUDA, gloo on CPU) and runs
:func:`annotator.jobs.train.execute_train_spec`, the single-process job's own function:
``segcore.engine.train`` sees the process group and trains with DDP and a ``DistributedSampler``
(one training loop for both; see :mod:`segcore.engine.trainer`). Rank 0 streams progress as JSON
lines and writes ``OUT/train_outcome.json``; the CLI process then registers the version.

**Pre-labelling.** ``annotator prelabel --gpus N`` (:func:`launch_prelabel`) runs ``-m
annotator.jobs.prelabel_worker OUT/prelabel_spec.json`` on N processes per machine (one GPU
each; CPU processes where there is no GPU): one model per process, each predicting its shard of
the images; the RLE rows are gathered (``torch.distributed.gather_object`` over gloo) to the one
process of the project's machine, which alone writes the SQLite project
(:mod:`annotator.jobs.prelabel_worker`).

**Machines.** :class:`TorchrunNodes` holds torchrun's multi-node options, passed through: one
machine uses ``--standalone``; a cluster runs the same command on every machine with ``--nnodes
M --node-rank R --rdzv-endpoint HOST:PORT`` (static rendezvous: global rank = ``R x N + local
rank``), the machine with the project as ``--node-rank 0``.

``--standalone`` lets torchrun's c10d rendezvous bind a free port itself (``localhost:0``), so no
port is picked here and released before torchrun binds it. Cancel (training): ``should_stop`` is
polled while the workers run; when it turns True the file ``OUT/train_cancel`` is created, which
every worker polls as its ``should_stop`` (the engine all-reduces the flag, so every rank stops
after the same iteration and rank 0 saves).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from annotator.jobs.prelabel import PrelabelSummary

__all__ = ["OUTCOME_NAME", "PROGRESS_PREFIX", "CANCEL_NAME", "PRELABEL_OUTCOME_NAME", "TorchrunNodes",
           "PrelabelOutcome", "launch_torchrun", "launch_prelabel", "run_torchrun", "torchrun_command",
           "load_json_spec", "save_json_spec"]

OUTCOME_NAME = "train_outcome.json"
CANCEL_NAME = "train_cancel"
PROGRESS_PREFIX = "@@progress "
PRELABEL_OUTCOME_NAME = "prelabel_outcome.json"


@dataclass(frozen=True)
class TorchrunNodes:
    """torchrun's multi-node options, passed through (``python -m torch.distributed.run --help``).

    Attributes:
        nnodes: machines taking part; each runs the same command.
        node_rank: this machine's rank in ``[0, nnodes)``; 0 = the machine whose processes come
            first (for pre-labelling: the one that holds the project).
        rdzv_endpoint: ``HOST:PORT`` of the rendezvous (node 0's address and a free port); needed
            for ``nnodes`` > 1; None on one machine = ``--standalone``.
        rdzv_backend: ``"static"`` (global ranks follow ``node_rank``) or ``"c10d"`` (dynamic).
        rdzv_id: job id, the same on every machine (c10d).
    """

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: Optional[str] = None
    rdzv_backend: str = "static"
    rdzv_id: Optional[str] = None

    def check(self) -> None:
        """Raise ``AnnotatorError`` naming the option for values torchrun would reject later."""
        from annotator.errors import AnnotatorError

        if self.nnodes < 1:
            raise AnnotatorError(f"--nnodes: must be >= 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise AnnotatorError(f"--node-rank: must be in [0, {self.nnodes}) for --nnodes {self.nnodes}, "
                                 f"got {self.node_rank}")
        if self.rdzv_backend not in ("static", "c10d"):
            raise AnnotatorError(f"--rdzv-backend: {self.rdzv_backend!r} is not static or c10d")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise AnnotatorError("--rdzv-endpoint: needed with --nnodes > 1 (HOST:PORT of node 0)")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise AnnotatorError(f"--rdzv-endpoint: {self.rdzv_endpoint!r} is not HOST:PORT")

    def args(self) -> list[str]:
        """torchrun's arguments for these options."""
        if self.nnodes == 1 and self.rdzv_endpoint is None:
            return ["--standalone", "--nnodes", "1"]
        out = ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
               "--rdzv-backend", self.rdzv_backend, "--rdzv-endpoint", str(self.rdzv_endpoint)]
        return out + (["--rdzv-id", str(self.rdzv_id)] if self.rdzv_id else [])


def torchrun_command(spec_path: Path, nproc: int, *, module: str = "annotator.jobs.train_worker",
                     nodes: Optional[TorchrunNodes] = None) -> list[str]:
    """The ``torchrun`` command line (``python -m torch.distributed.run``) that runs ``python -m
    MODULE SPEC_PATH`` in ``nproc`` processes on this machine (``--standalone`` unless ``nodes``
    spans several machines)."""
    return [sys.executable, "-m", "torch.distributed.run", *(nodes or TorchrunNodes()).args(),
            "--nproc_per_node", str(int(nproc)), "-m", module, str(spec_path)]


def save_json_spec(spec, path: Path) -> Path:
    """Write a job's plan (a dataclass) as JSON to ``path`` atomically (temporary file, rename);
    returns ``path``."""
    from dataclasses import asdict

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(spec)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_json_spec(cls, path: Path, what: str):
    """Read a job's JSON plan into the dataclass ``cls``, validated with pydantic (types, no
    unknown or missing keys when ``cls`` sets ``__pydantic_config__ = ConfigDict(extra="forbid")``).

    Raises:
        AnnotatorError: unreadable file, not JSON, or a field missing, unknown or of the wrong
            type (the message names the file and the first such field).
    """
    import pydantic

    from annotator.errors import AnnotatorError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnnotatorError(f"{path}: cannot read the {what} ({exc})") from None
    try:
        return pydantic.TypeAdapter(cls).validate_python(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise AnnotatorError(f"{path}: {where}: {err['msg']} ({exc.error_count()} problem(s))") from None


def run_torchrun(command: list[str], out_dir: Path, outcome_name: Optional[str], *, what: str,
                 progress: Optional[Callable[[dict], None]] = None, should_stop: Optional[Callable[[], bool]] = None,
                 log: Callable[[str], None] = print, timeout: Optional[float] = None) -> Optional[dict]:
    """Run a ``torchrun`` command and read the outcome its workers write.

    The workers print ``@@progress {json}`` lines (passed to ``progress``) and ``@@log ...``
    lines (passed to ``log``); once ``should_stop()`` is true the file ``out_dir/train_cancel``
    exists (the workers poll it).

    Args:
        command: from :func:`torchrun_command`.
        out_dir: the job's folder, where the workers write ``outcome_name``.
        outcome_name: the JSON file the workers write, or None when this machine's workers write
            none (pre-labelling on a machine other than the project's).
        what: the job, for the error message ("distributed training").
        timeout: seconds to wait for torchrun after its output ends.

    Returns:
        The outcome dict (None when ``outcome_name`` is None).

    Raises:
        AnnotatorError: the outcome holds an ``"error"`` (that one-line message), or torchrun
            failed or wrote no outcome (its last output lines in the message).
    """
    from annotator.errors import AnnotatorError

    outcome = None if outcome_name is None else out_dir / outcome_name
    if outcome is not None:
        outcome.unlink(missing_ok=True)
    (out_dir / CANCEL_NAME).unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: list[str] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
    result = json.loads(outcome.read_text(encoding="utf-8")) if outcome is not None and outcome.is_file() else None
    if result is not None and result.get("error"):
        raise AnnotatorError(str(result["error"]))
    if rc != 0 or (outcome is not None and result is None):
        raise AnnotatorError(f"{out_dir}: {what} failed (torchrun exit code {rc}): "
                             + " | ".join(t for t in tail if t.strip())[-1500:])
    return result


def launch_torchrun(spec, *, nproc: int, progress: Optional[Callable[[dict], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None, log: Callable[[str], None] = print,
                    timeout: Optional[float] = None) -> dict:
    """Run a planned job (:class:`annotator.jobs.train.TrainSpec`) on ``nproc`` processes with
    ``torchrun``; returns rank 0's outcome dict (plus ``ranks``: each rank's ``{"rank", "pid",
    "world_size", "steps_per_epoch", "epoch_steps", "params_sha256", "iterations_done"}``).

    Raises:
        AnnotatorError: torchrun failed (its last output lines in the message).
    """
    spec_path = spec.save()
    log(f"starting {nproc} training processes: torchrun --standalone --nproc_per_node {nproc} "
        "-m annotator.jobs.train_worker")
    return run_torchrun(torchrun_command(spec_path, nproc), Path(spec.out_dir), OUTCOME_NAME,
                        what="distributed training", progress=progress, should_stop=should_stop, log=log,
                        timeout=timeout)


@dataclass(frozen=True)
class PrelabelOutcome:
    """What ``prelabel --gpus N`` did: ``summary`` as :func:`annotator.jobs.prelabel.prelabel`
    returns it, and ``ranks``: per process ``{"rank", "pid", "host", "device", "images": [the
    image ids it predicted, in order]}``."""

    summary: "PrelabelSummary"
    ranks: list


def launch_prelabel(project: Optional[Path], checkpoint: Optional[Path], *, nproc: int,
                    model_version: Optional[int] = None, nodes: Optional[TorchrunNodes] = None,
                    device: str = "auto", precision: str = "auto", score_threshold: float = 0.05,
                    only_unreviewed: bool = False, batch_size: Optional[int] = None,
                    num_workers: Optional[int] = None, chunk: Optional[int] = None,
                    progress: Optional[Callable[[dict], None]] = None, log: Callable[[str], None] = lambda s: None,
                    timeout: Optional[float] = None) -> Optional[PrelabelOutcome]:
    """Pre-label with ``nproc`` processes on this machine (on each of ``nodes.nnodes`` machines).

    Args:
        project: the project folder (or its ``annotator.sqlite``) on the machine that holds it
            (node rank 0); None on the other machines, which get the plan from it.
        checkpoint: the segcore checkpoint file, on node 0 (None elsewhere). The other machines
            read it and the images at the paths node 0 sees (a shared file system); only node 0
            opens the project.
        nproc: processes on this machine (one CUDA device each when the device is CUDA).
        model_version: the project's model version the checkpoint is (stored with each
            prediction), or None for a plain file.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (``segcore.predictor.default_precision`` of each process's device),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        score_threshold, only_unreviewed, batch_size, num_workers: as
            :func:`annotator.jobs.prelabel.prelabel`, in each process.
        chunk: images each process sends per gather (None:
            :data:`annotator.jobs.prelabel_worker.CHUNK`).
        progress: ``progress({"done", "total"})`` after each gathered chunk (node 0).
        log: gets the torchrun command line.

    Returns:
        :class:`PrelabelOutcome` on node 0; None on the other machines.

    Raises:
        AnnotatorError: bad options or too few CUDA devices, a project / model / category error
            (one line, from the writing process), or torchrun failed.
    """
    import tempfile

    import torch

    from annotator.errors import AnnotatorError
    from annotator.jobs.prelabel import PrelabelSummary
    from annotator.jobs.prelabel_worker import CHUNK, PrelabelSpec

    nodes = nodes or TorchrunNodes()
    nodes.check()
    if nproc < 1:
        raise AnnotatorError(f"--gpus: must be >= 1, got {nproc}")
    if device not in ("auto", "cpu", "cuda"):
        raise AnnotatorError(f"--device: {device!r} is not auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise AnnotatorError("--device: cuda requested but CUDA is not available (use auto or cpu)")
    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise AnnotatorError(f"--gpus: {nproc} processes but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    writer = nodes.node_rank == 0
    if writer and (project is None or checkpoint is None):
        raise AnnotatorError("prelabel: node 0 needs the project and the checkpoint")
    out_dir = Path(tempfile.mkdtemp(prefix="annotator-prelabel-"))
    try:
        spec = PrelabelSpec(out_dir=str(out_dir), writer=writer, project=None if project is None else str(project),
                            checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
                            model_version=model_version, device=device, precision=str(precision),
                            score_threshold=float(score_threshold),
                            only_unreviewed=bool(only_unreviewed), batch_size=batch_size, num_workers=num_workers,
                            chunk=int(chunk or CHUNK))
        command = torchrun_command(spec.save(), nproc, module="annotator.jobs.prelabel_worker", nodes=nodes)
        log(" ".join(command[1:]))
        result = run_torchrun(command, out_dir, PRELABEL_OUTCOME_NAME if writer else None,
                              what="distributed pre-labelling", progress=progress, log=log, timeout=timeout)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if result is None:
        return None
    summary = PrelabelSummary(images=int(result["images"]), instances=int(result["instances"]),
                              skipped=int(result["skipped"]), stopped=bool(result["stopped"]),
                              unreadable=tuple(result["unreadable"]))
    return PrelabelOutcome(summary=summary, ranks=list(result["ranks"]))
