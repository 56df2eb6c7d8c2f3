"""The ``annotator`` command line, end to end on real coco-tiny images.

These tests call :func:`annotator.cli.main` in-process with exactly the argument lists a user
types; the console script is a thin wrapper around it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from annotator.cli import main


def _db_dump(project: Path) -> list[str]:
    con = sqlite3.connect(project / "annotator.sqlite")
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "annotator" in capsys.readouterr().out


def test_roundtrip_new_import_export_evaluate(tmp_path, coco_tiny, capsys):
    """new + import val2017, export --include human, COCOeval of the export: AP 1.000."""
    project = tmp_path / "val"
    gt = coco_tiny / "annotations" / "instances_val2017.json"
    assert main(["new", str(project), "--images", str(coco_tiny / "val2017")]) == 0
    assert main(["import", str(project), "--coco", str(gt)]) == 0
    out = tmp_path / "export.json"
    assert main(["export", str(project), "--coco", str(out), "--include", "human"]) == 0

    from pycocotools.coco import COCO  # the export must load in pycocotools

    exported = COCO(str(out))
    original = json.loads(gt.read_text())
    assert len(exported.getAnnIds()) == len(original["annotations"])
    assert sorted(exported.getImgIds()) == sorted(im["id"] for im in original["images"])
    assert sorted(exported.getCatIds()) == sorted({c["id"] for c in original["categories"]})

    # COCO results carry RLE segmentations (loadRes computes areas from RLE): convert with pycocotools.
    results = []
    for a in exported.loadAnns(exported.getAnnIds()):
        rle = exported.annToRLE(a)
        rle["counts"] = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                        "segmentation": rle, "score": 1.0})
    dt = tmp_path / "as_results.json"
    dt.write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(gt), "--dt", str(dt)]) == 0
    text = capsys.readouterr().out
    assert "segm AP 1.000" in text and "bbox AP 1.000" in text, text


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["annotations"][3].pop("category_id"), "annotations[3]"),
        (lambda d: d["annotations"][5].__setitem__("category_id", 99999), "annotations[5]"),
        (lambda d: d["annotations"][0].__setitem__("image_id", 12345678), "annotations[0]"),
        (lambda d: d["annotations"][2].__setitem__("segmentation", [[1.0, 2.0, 3.0, 4.0]]), "annotations[2]"),
        (lambda d: d["images"][1].__setitem__("width", "wide"), "images[1]"),
    ],
)
def test_bad_coco_is_one_line_error_and_project_unchanged(tmp_path, coco_tiny, capsys, mutate, field):
    project = tmp_path / "p"
    assert main(["new", str(project), "--images", str(coco_tiny / "val2017")]) == 0
    before = _db_dump(project)
    data = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())
    mutate(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["import", str(project), "--coco", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "bad.json" in err and field in err, err
    assert "Traceback" not in err
    assert _db_dump(project) == before


def test_missing_paths_are_user_errors(tmp_path, capsys):
    assert main(["new", str(tmp_path / "p"), "--images", str(tmp_path / "nope")]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "absent"), "--coco", str(tmp_path / "x.json")]) == 2
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error: ") == 2


def test_console_script_returns_mains_status_and_freezes_objects_for_shutdown(tmp_path, capsys):
    import gc

    from annotator.cli import console_main

    assert gc.get_freeze_count() == 0
    try:
        assert console_main(["new", str(tmp_path / "p"), "--images", str(tmp_path / "nope")]) == 2
        assert gc.get_freeze_count() > 0  # shutdown's collections skip the objects left now
    finally:
        gc.unfreeze()  # this pytest process goes on collecting
    assert capsys.readouterr().err.count("error: ") == 1


@pytest.mark.slow
def test_whole_loop_train_prelabel_export_evaluate(tmp_path, coco_tiny, capsys):
    """import train -> train -> prelabel val -> export results -> evaluate prints the AP table."""
    ann = coco_tiny / "annotations"
    train_p, val_p = tmp_path / "train", tmp_path / "val"
    assert main(["new", str(train_p), "--images", str(coco_tiny / "train2017")]) == 0
    assert main(["import", str(train_p), "--coco", str(ann / "instances_train2017.json")]) == 0
    assert main([
        "train", str(train_p), "--arch", "yolact_tiny", "--iterations", "6", "--batch-size", "2",
        "--input-size", "160", "--device", "cpu", "--out", str(tmp_path / "run"),
    ]) == 0
    out = capsys.readouterr().out
    assert "registered model version 1" in out
    ckpt = tmp_path / "run" / "model_final.pth"
    assert ckpt.is_file()

    assert main(["new", str(val_p), "--images", str(coco_tiny / "val2017")]) == 0
    assert main(["prelabel", str(val_p), "--model", str(ckpt), "--score-threshold", "0.0", "--device", "cpu"]) == 0
    results = tmp_path / "results.json"
    assert main(["export", str(val_p), "--results", str(results),
                 "--gt", str(ann / "instances_val2017.json")]) == 0
    preds = json.loads(results.read_text())
    assert preds, "an untrained model at threshold 0 still returns detections"
    train_cats = {c["id"] for c in json.loads((ann / "instances_train2017.json").read_text())["categories"]}
    assert {p["category_id"] for p in preds} <= train_cats  # COCO ids, not class indices
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(ann / "instances_val2017.json"), "--dt", str(results)]) == 0
    table = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in table
    assert "summary: bbox AP" in table and "segm AP" in table


def test_import_weights_registers_a_version_that_prelabels(tmp_path, coco_tiny, capsys):
    """A plain official-style state_dict imports, registers as a model version and pre-labels."""
    import shutil

    import torch

    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    plain = tmp_path / "yolact_tiny_1_100.pth"
    torch.save(build_model("yolact_tiny", num_classes=80).state_dict(), plain)  # no wrapper, like dbolya's
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(p.name for p in (coco_tiny / "val2017").glob("*.jpg"))[:2]:
        shutil.copy(coco_tiny / "val2017" / name, images / name)
    project = tmp_path / "p"
    assert main(["new", str(project), "--images", str(images)]) == 0
    out = tmp_path / "imported.pth"
    capsys.readouterr()
    assert main(["import-weights", str(plain), "--arch", "yolact_tiny", "--out", str(out),
                 "--project", str(project)]) == 0
    text = capsys.readouterr().out
    assert "missing 0" in text and "registered model version 1" in text, text
    assert main(["prelabel", str(project), "--model", "1", "--score-threshold", "0.0", "--device", "cpu"]) == 0
    assert "pre-labelled 2 images" in capsys.readouterr().out
    # the wrong architecture is a one-line user error, nothing written
    bad = tmp_path / "bad.pth"
    assert main(["import-weights", str(plain), "--arch", "yolact_r50_550", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not bad.exists()


def test_prelabel_precision_flag_is_used_and_printed_once(tmp_path, coco_tiny, capsys):
    """``prelabel --precision`` reaches the predictor; the chosen precision and why is printed once
    (in-process, the default is pinned to fp32 by tests/conftest.py)."""
    import shutil

    import pytest
    import torch

    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    plain = tmp_path / "yolact_tiny_1_100.pth"
    torch.save(build_model("yolact_tiny", num_classes=80).state_dict(), plain)
    images = tmp_path / "images"
    images.mkdir()
    name = sorted(p.name for p in (coco_tiny / "val2017").glob("*.jpg"))[0]
    shutil.copy(coco_tiny / "val2017" / name, images / name)
    project = tmp_path / "p"
    assert main(["new", str(project), "--images", str(images)]) == 0
    assert main(["import-weights", str(plain), "--arch", "yolact_tiny", "--out", str(tmp_path / "w.pth"),
                 "--project", str(project)]) == 0
    capsys.readouterr()
    assert main(["prelabel", str(project), "--model", "1", "--device", "cpu", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert out.count("precision: bf16 (asked for; --precision fp32 to override)") == 1, out
    assert "pre-labelled 1 images" in out
    assert main(["prelabel", str(project), "--model", "1", "--device", "cpu"]) == 0  # auto
    assert capsys.readouterr().out.count("precision: fp32 (CPU without native bf16; --precision bf16") == 1
    with pytest.raises(SystemExit):
        main(["prelabel", str(project), "--model", "1", "--precision", "fp8"])
