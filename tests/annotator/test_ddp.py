"""Multi-GPU path on CPU: torchrun + gloo, 2 processes, DDP + DistributedSampler (issue 7)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from annotator.project import Project

N = 20
TINY = dict(arch="yolact_tiny", input_size=96, device="cpu")


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
    """What segcore.engine.train's DataLoader does: shuffle, drop_last when n >= batch."""
    return n // batch if n >= batch else 1


def test_world_of_one_matches_the_engine(project_dir, tmp_path):
    from annotator.jobs.distributed import train_ddp
    from segcore.modeling.registry import build_model

    with Project.open(project_dir) as p:
        records, cats = p.training_records()
    model = build_model("yolact_tiny", num_classes=len(cats), input_size=96)
    records = records[:8]
    res = train_ddp(model, records, cats, iterations=4, batch_size=4, warmup_iters=1,
                    out_dir=tmp_path / "one", freeze_bn=False)
    assert res.world_size == 1 and res.steps_per_epoch == _engine_steps_per_epoch(8, 4) == 2
    assert res.epoch_steps == [2, 2] and res.iterations_done == 4
    assert (tmp_path / "one" / "model_final.pth").is_file()


@pytest.mark.slow
def test_gpus_2_on_cpu_runs_two_processes_with_the_same_steps(project_dir, tmp_path):
    """--gpus 2 (gloo): two processes, batch 2 each, take as many optimizer steps per epoch as one
    process with batch 4; parameters agree across ranks; the version is registered by the caller."""
    from annotator.jobs.train import run_train_job

    logs = []
    with Project.open(project_dir) as p:
        res = run_train_job(p, gpus=2, batch_size=2, iterations=10, val_fraction=0.0, out_dir=tmp_path / "run",
                            log=logs.append, **TINY)
        assert p.model_version(res.model_version).checkpoint.is_file()
    ranks = res.details["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world_size"] == 2
    assert len({r["pid"] for r in ranks} | {os.getpid()}) == 3  # two worker processes, not this one
    for r in ranks:
        assert r["steps_per_epoch"] == _engine_steps_per_epoch(N, 2 * 2) == 5
        assert r["epoch_steps"] == [5, 5] and r["iterations_done"] == 10
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=1e-9, abs=1e-6)
    assert res.iterations_done == 10 and any("torchrun" in m for m in logs)
