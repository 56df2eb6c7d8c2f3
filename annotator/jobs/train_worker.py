"""One rank of a ``torchrun`` training run: ``python -m annotator.jobs.train_worker OUT/train_spec.json``.

Started by :func:`annotator.jobs.distributed.launch_torchrun` (``annotator train --gpus N``).
Reads and validates the plan, joins the process group (NCCL for CUDA, gloo on CPU; ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` from torchrun) and runs
:func:`annotator.jobs.train.execute_train_spec`, the single-process job's function (the engine
trains with DDP because the process group exists). Rank 0 prints progress as ``@@progress {json}``
lines and log lines as ``@@log ...``, and writes ``OUT/train_outcome.json`` with every rank's
``OUT/rank{r}.json`` (pid, steps per epoch, optimizer steps in each epoch, sha256 of its
parameters) under ``"ranks"``. ``should_stop`` is the existence of ``OUT/train_cancel``. Never
touches the project (the launching process registers the version).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    from annotator.jobs.distributed import CANCEL_NAME, OUTCOME_NAME, PROGRESS_PREFIX
    from annotator.jobs.train import TrainSpec, execute_train_spec

    argv = sys.argv[1:] if argv is None else argv
    spec = TrainSpec.load(Path(argv[0]))
    use_cuda = spec.device.startswith("cuda") and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if not use_cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    out_dir = Path(spec.out_dir)

    def progress(info: dict) -> None:
        print(PROGRESS_PREFIX + json.dumps(info), flush=True)  # the engine calls it on rank 0 only

    def log(msg: str) -> None:
        if rank == 0:
            print("@@log " + str(msg), flush=True)

    try:
        outcome = execute_train_spec(spec, progress=progress, log=log,
                                     should_stop=lambda: (out_dir / CANCEL_NAME).exists())
        stats = dict(outcome["engine"], rank=rank, pid=os.getpid(), iterations_done=outcome["iterations_done"])
        (out_dir / f"rank{rank}.json").write_text(json.dumps(stats))
        dist.barrier()
        if rank == 0:
            outcome["ranks"] = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]
            tmp = out_dir / (OUTCOME_NAME + ".tmp")
            tmp.write_text(json.dumps(outcome))
            os.replace(tmp, out_dir / OUTCOME_NAME)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
