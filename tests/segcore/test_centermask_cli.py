"""CLI smoke run: annotator train --arch centermask_tiny --iterations 2, then prelabel."""

from __future__ import annotations

from annotator.cli import main


def test_train_and_prelabel_centermask_tiny(coco_tiny, tmp_path):
    project = tmp_path / "proj"
    assert main(["new", str(project), "--images", str(coco_tiny / "val2017")]) == 0
    assert main(["import", str(project), "--coco", str(coco_tiny / "annotations" / "instances_val2017.json")]) == 0
    out = tmp_path / "run"
    assert main(["train", str(project), "--arch", "centermask_tiny", "--iterations", "2", "--device", "cpu",
                 "--batch-size", "2", "--input-size", "160", "--out", str(out)]) == 0
    ckpt = out / "model_final.pth"
    assert ckpt.is_file()
    assert main(["prelabel", str(project), "--model", str(ckpt), "--device", "cpu"]) == 0
