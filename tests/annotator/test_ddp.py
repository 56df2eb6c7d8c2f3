"""``annotator train --gpus 2`` on the CPU: torchrun + gloo, 2 processes, DDP + DistributedSampler,
for a tiny architecture of every family; the same training loop as one process (segcore.engine).
Each torchrun run takes 7-14 s on the 2-core machine (4 iterations, 8 images)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from annotator.project import Project

N = 8  # images: 2 optimizer steps per epoch at 2 processes x batch 2 (= one process at batch 4)
ITERATIONS = 4  # two epochs
#: every family's tiny architecture at a small input (YOLACT++'s MaskIoU net needs >= 256)
TINY = {"yolact_tiny": 96, "yolact_plus_tiny": 256, "blendmask_tiny": 96, "centermask_tiny": 96}


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory, coco_tiny) -> Path:
    from annotator.io.coco import import_coco

    root = tmp_path_factory.mktemp("ddp")
    images = root / "images"
    images.mkdir()
    gt = json.loads((coco_tiny / "annotations" / "instances_train2017.json").read_text())
    chosen = sorted(gt["images"], key=lambda im: im["file_name"])[:N]
    for im in chosen:
        shutil.copy(coco_tiny / "train2017" / im["file_name"], images / im["file_name"])
    keep = {im["id"] for im in chosen}
    sub = {"images": chosen, "categories": gt["categories"],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    (root / "gt.json").write_text(json.dumps(sub))
    with Project.create(root / "proj", images_dir=images) as p:
        import_coco(p, root / "gt.json", image_root=images)
    return root / "proj"


def _engine_steps_per_epoch(n: int, batch: int) -> int:
    """One process of segcore.engine.train: shuffle, drop the last incomplete batch when n >= batch."""
    return n // batch if n >= batch else 1


def test_one_process_at_twice_the_batch(project_dir, tmp_path):
    """The reference of the DDP runs: one process, batch 4, on the same images and schedule."""
    from segcore.engine import train
    from segcore.modeling.registry import build_model

    with Project.open(project_dir) as p:
        records, cats = p.training_records()
    model = build_model("yolact_tiny", num_classes=len(cats), input_size=96)
    res = train(model, records, cats, iterations=ITERATIONS, batch_size=4, warmup_iters=1, augment=False,
                out_dir=tmp_path / "one", freeze_bn=False)
    assert res.world_size == 1 and res.steps_per_epoch == _engine_steps_per_epoch(N, 4) == 2
    assert res.epoch_steps == [2, 2] and res.iterations_done == ITERATIONS
    assert (tmp_path / "one" / "model_final.pth").is_file()


@pytest.mark.parametrize("arch", sorted(TINY))
def test_gpus_2_on_cpu_every_family(arch, project_dir, tmp_path):
    """--gpus 2 (gloo): two processes at batch 2 take as many optimizer steps per epoch as one
    process at batch 4, their parameters are identical afterwards, and the caller registers the
    version. CenterMask's RoI heads and YOLACT++'s MaskIoU net run inside forward, so DDP works."""
    from annotator.jobs.train import run_train_job

    logs, seen = [], []
    with Project.open(project_dir) as p:
        res = run_train_job(p, gpus=2, batch_size=2, iterations=ITERATIONS, val_fraction=0.0, augment=False,
                            out_dir=tmp_path / "run", log=logs.append, progress=seen.append, arch=arch,
                            input_size=TINY[arch], device="cpu")
        assert p.model_version(res.model_version).checkpoint.is_file()
    ranks = res.details["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world_size"] == 2
    assert len({r["pid"] for r in ranks} | {os.getpid()}) == 3  # two worker processes, not this one
    for r in ranks:
        assert r["steps_per_epoch"] == _engine_steps_per_epoch(N, 2 * 2) == 2
        assert r["epoch_steps"] == [2, 2] and r["iterations_done"] == ITERATIONS
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]  # bit-identical parameters
    assert [s["iteration"] for s in seen] == list(range(1, ITERATIONS + 1))  # rank 0 reported every step
    assert all(s["world_size"] == 2 and "total" in s["losses"] for s in seen)
    assert res.iterations_done == ITERATIONS and not res.stopped and any("torchrun" in m for m in logs)


def test_gpus_2_cancel_stops_every_rank_and_keeps_a_resumable_run(project_dir, tmp_path):
    """Cancel during a --gpus 2 run stops both ranks after the same iteration; the run is
    registered with its checkpoint and model_latest.pth is left for --resume."""
    from annotator.jobs.train import run_train_job

    seen = []
    with Project.open(project_dir) as p:
        res = run_train_job(p, gpus=2, batch_size=2, iterations=200, val_fraction=0.0, augment=False,
                            out_dir=tmp_path / "run", log=lambda m: None, progress=seen.append,
                            should_stop=lambda: bool(seen), arch="yolact_tiny", input_size=96, device="cpu")
    ranks = res.details["ranks"]
    assert res.stopped and 1 <= res.iterations_done < 200
    assert [r["iterations_done"] for r in ranks] == [res.iterations_done] * 2
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    assert (tmp_path / "run" / "model_latest.pth").is_file()
