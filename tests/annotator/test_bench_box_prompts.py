"""``python -m annotator.bench_box_prompts`` runs end to end on a tiny setting (2 training images,
2 iterations, 2 held-back images): both box-prompt families are trained, prompted with the
ground-truth boxes and compared with GrabCut; the figures are printed and written as JSON.
The real figures (README "Box prompts, measured") come from the default settings."""

from __future__ import annotations

import json

from annotator.bench_box_prompts import main


def test_box_prompt_benchmark_runs(coco_tiny, tmp_path, capsys):
    assert main(["--coco-tiny", str(coco_tiny), "--out", str(tmp_path), "--iterations", "2", "--train-images", "2",
                 "--eval-images", "2", "--input-size", "128", "--threads", "1"]) == 0
    res = json.loads((tmp_path / "box_prompts.json").read_text())
    methods = res["methods"]
    assert set(methods) == {"blendmask_tiny", "centermask_tiny", "grabcut", "box"}
    assert res["instances"] > 0 and res["settings"]["train_images"] == 2
    for m in methods.values():
        assert 0.0 <= m["mean_iou"] <= 1.0 and 0.0 <= m["median_iou"] <= 1.0
    out = capsys.readouterr().out
    assert "GrabCut" in out and "mean IoU" in out
