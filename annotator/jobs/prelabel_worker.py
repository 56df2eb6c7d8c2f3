"""One process of ``annotator prelabel --gpus N``: ``python -m annotator.jobs.prelabel_worker OUT/prelabel_spec.json``.

Started by :func:`annotator.jobs.distributed.launch_prelabel` through ``torchrun`` (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous from it). Every process
joins a gloo process group: the processes exchange only Python objects (the plan, RLE rows), so
gloo serves CUDA and CPU runs and crosses machines.

1. The **writer** is the first process of the machine that holds the project (the one started
   with ``--node-rank 0``; rank 0 under torchrun's static or standalone rendezvous). It alone
   opens the project: it plans the run (:func:`annotator.jobs.prelabel.plan_prelabel`), maps the
   checkpoint's categories and broadcasts ``{"checkpoint", "items"}`` (image ids, absolute paths,
   stored sizes) to every process (``broadcast_object_list``).
2. Each process loads its own copy of the model (its CUDA device ``LOCAL_RANK``, or the CPU with
   ``cores / LOCAL_WORLD_SIZE`` threads) and predicts its shard ``items[rank::world]`` through the
   single-process pipeline (:func:`annotator.jobs.prelabel.predict_images`: DataLoader readers,
   batched forward, RLE encoding).
3. Every :data:`CHUNK` images per process, the results (RLE, score and category of each
   prediction, or why the file could not be read) are gathered to the writer
   (``gather_object``), which commits them in one transaction
   (:class:`annotator.jobs.prelabel.PrelabelWriter`) and prints ``@@progress {"done", "total"}``.
   All processes make the same number of gathers (a shorter shard sends empty chunks).
4. The writer writes ``OUT/prelabel_outcome.json``: the summary, and per process the image ids it
   predicted (so a test can see that no image was predicted twice or missed). A project, model
   or category problem is written there as ``{"error": "<one line>"}`` and every process exits
   with status 2.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import pydantic

__all__ = ["CHUNK", "SPEC_NAME", "PrelabelSpec", "main"]

#: Images each process predicts between two gathers to the writer.
CHUNK = 32

SPEC_NAME = "prelabel_spec.json"


@dataclass
class PrelabelSpec:
    """The plan one machine's processes get (JSON ``OUT/prelabel_spec.json``; :meth:`load`
    validates it with pydantic).

    Attributes:
        out_dir: the job's folder on this machine (spec, outcome).
        writer: this machine holds the project (node rank 0).
        project: the project folder (writer machine; None elsewhere).
        checkpoint: absolute path of the segcore checkpoint (writer machine; the others take the
            path from the writer's plan).
        model_version: stored with each prediction (None for a plain checkpoint file).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (the device's default, ``segcore.predictor.default_precision``),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``, for every process's predictor.
        score_threshold, only_unreviewed, batch_size, num_workers: as ``prelabel``.
        chunk: images per process per gather.
    """

    __pydantic_config__: ClassVar = pydantic.ConfigDict(extra="forbid")

    out_dir: str
    writer: bool
    project: Optional[str]
    checkpoint: Optional[str]
    model_version: Optional[int] = None
    device: str = "auto"
    precision: str = "auto"
    score_threshold: float = 0.05
    only_unreviewed: bool = False
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    chunk: int = CHUNK

    def save(self) -> Path:
        """Write ``OUT/prelabel_spec.json`` (atomically); its path."""
        from annotator.jobs.distributed import save_json_spec

        return save_json_spec(self, Path(self.out_dir) / SPEC_NAME)

    @classmethod
    def load(cls, path: Path) -> "PrelabelSpec":
        """Read and validate a spec.

        Raises:
            AnnotatorError: unreadable, not JSON, or a field missing, unknown or of the wrong type.
        """
        from annotator.jobs.distributed import load_json_spec

        return load_json_spec(cls, path, "pre-label plan")


def _plan(spec: PrelabelSpec):
    """Writer: open the project, plan, load the model and map its categories.

    Returns ``(project, predictor, mapping, items, skipped)``; raises AnnotatorError (and closes
    the project) for a project, checkpoint or category problem."""
    from annotator.errors import AnnotatorError
    from annotator.jobs.prelabel import category_mapping, plan_prelabel
    from annotator.project import Project
    from segcore.checkpoints import CheckpointError
    from segcore.predictor import Predictor

    project = Project.open(Path(spec.project), create_if_folder=False)
    try:
        items, skipped = plan_prelabel(project, None, only_unreviewed=spec.only_unreviewed)
        try:
            predictor = Predictor.from_checkpoint(spec.checkpoint, device=_device(spec), precision=spec.precision)
        except CheckpointError as exc:
            raise AnnotatorError(str(exc)) from None
        mapping = category_mapping(project, list(predictor.categories)) if items else {}
    except BaseException:
        project.close()
        raise
    return project, predictor, mapping, items, skipped


def _device(spec: PrelabelSpec) -> str:
    import torch

    if spec.device != "cpu" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def _write_outcome(out_dir: Path, outcome: dict) -> None:
    from annotator.jobs.distributed import PRELABEL_OUTCOME_NAME

    tmp = out_dir / (PRELABEL_OUTCOME_NAME + ".tmp")
    tmp.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(tmp, out_dir / PRELABEL_OUTCOME_NAME)


def main(argv: list[str] | None = None) -> int:
    """Run one process (module docstring); exit status 0, or 2 after a user error."""
    import torch
    import torch.distributed as dist

    from annotator.errors import AnnotatorError
    from annotator.jobs.distributed import PROGRESS_PREFIX
    from annotator.jobs.prelabel import ImageResult, PrelabelItem, PrelabelWriter, predict_images
    from segcore.predictor import Predictor

    argv = sys.argv[1:] if argv is None else argv
    spec = PrelabelSpec.load(Path(argv[0]))
    out_dir = Path(spec.out_dir)
    device = _device(spec)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        me = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "device": device,
              "writer": bool(spec.writer and int(os.environ.get("LOCAL_RANK", 0)) == 0)}
        procs: list = [None] * world
        dist.all_gather_object(procs, me)
        writers = [p["rank"] for p in procs if p["writer"]]
        if len(writers) != 1:
            print(f"error: {len(writers)} machines hold the project: start exactly one with --node-rank 0",
                  file=sys.stderr, flush=True)
            return 2
        writer = writers[0]

        project = writer_state = None
        plan: dict = {}
        if rank == writer:
            try:
                project, predictor, mapping, items, skipped = _plan(spec)
                plan = {"checkpoint": spec.checkpoint, "items": [tuple(i) for i in items]}
            except AnnotatorError as exc:
                plan = {"error": str(exc)}
                _write_outcome(out_dir, plan)
        box = [plan]
        dist.broadcast_object_list(box, src=writer)
        plan = box[0]
        if "error" in plan:
            if rank != writer:
                print(f"error: {plan['error']}", file=sys.stderr, flush=True)
            return 2
        items = [PrelabelItem(*t) for t in plan["items"]]
        if rank != writer:
            predictor = Predictor.from_checkpoint(plan["checkpoint"], device=device, precision=spec.precision)
        else:
            writer_state = PrelabelWriter(project, mapping, spec.model_version, total=len(items),
                                          write_images=spec.chunk * world, write_seconds=float("inf"))
        shard = items[rank::world]
        rounds = math.ceil(math.ceil(len(items) / world) / spec.chunk)   # the same in every process
        results = predict_images(predictor, shard, score_threshold=spec.score_threshold,
                                 batch_size=spec.batch_size, num_workers=spec.num_workers)
        done_by: list[list[int]] = [[] for _ in range(world)]
        try:
            for _ in range(rounds):
                mine = [tuple(r) for r in itertools.islice(results, spec.chunk)]
                gathered: Optional[list] = [None] * world if rank == writer else None
                dist.gather_object(mine, gathered, dst=writer)
                if rank == writer:
                    for r, part in enumerate(gathered):
                        for res in part:
                            writer_state.add(ImageResult(*res))
                            done_by[r].append(int(res[0]))
                    writer_state.flush()
                    print(PROGRESS_PREFIX + json.dumps({"done": writer_state.done, "total": len(items)}), flush=True)
            if rank == writer:
                summary = writer_state.summary(skipped=skipped, stopped=False)
                _write_outcome(out_dir, {"images": summary.images, "instances": summary.instances,
                                         "skipped": summary.skipped, "stopped": False,
                                         "unreadable": list(summary.unreadable),
                                         "ranks": [dict(p, images=done_by[p["rank"]]) for p in procs]})
        except AnnotatorError as exc:   # e.g. the model predicts a category it does not list
            if rank == writer:
                writer_state.flush()
                _write_outcome(out_dir, {"error": str(exc)})
            raise
        finally:
            results.close()
            if project is not None:
                project.close()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
