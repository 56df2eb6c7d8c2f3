"""annotator simulate (issue 7): rounds of pre-label -> correct to GT -> fine-tune, table + csv + png."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotator import masks
from annotator.cli import main
from annotator.jobs.simulate import correct_image
from annotator.project import Project


def test_correct_image_counts(tmp_path):
    import cv2

    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    with Project.create(tmp_path / "p", images_dir=tmp_path / "im") as p:
        p.add_category("a", id=1)
        p.add_category("b", id=2)
        img = p.images()[0].id

        def rle(y0, y1, x0, x1):
            m = np.zeros((40, 40), bool)
            m[y0:y1, x0:x1] = True
            return masks.encode_mask(m)

        gt = [{"category_id": 1, "iscrowd": 0, "rle": rle(0, 10, 0, 10)},
              {"category_id": 2, "iscrowd": 0, "rle": rle(20, 30, 0, 10)},
              {"category_id": 1, "iscrowd": 0, "rle": rle(30, 40, 30, 40)}]
        p.replace_predictions(img, [
            {"category_id": 1, "rle": rle(0, 10, 0, 10), "score": 0.9},     # exact: accepted
            {"category_id": 1, "rle": rle(20, 28, 0, 10), "score": 0.8},    # IoU 0.8, wrong class: fixed
            {"category_id": 2, "rle": rle(10, 18, 20, 30), "score": 0.7},   # nothing there: deleted
            {"category_id": 1, "rle": rle(30, 40, 30, 40), "score": 0.1},   # below the slider: hidden
        ], None)
        c = correct_image(p, img, gt, score_threshold=0.3)
        assert (c["accepted"], c["fixed"], c["deleted"], c["drawn"], c["shown"], c["gt"]) == (1, 1, 1, 1, 3, 3)
        final = p.annotations(img, review_states=["accepted", "edited"])
        assert sorted((a.category_id, a.review_state) for a in final) == [(1, "accepted"), (1, "accepted"),
                                                                          (2, "edited")]
        assert p.image(img).state == "done"


def test_heldout_accepted_reads_without_correcting(tmp_path):
    """Held-out images: the same matching rules as correcting, but nothing in the project changes."""
    import cv2

    from annotator.jobs.simulate import heldout_accepted

    (tmp_path / "im").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "im" / name), np.zeros((40, 40, 3), np.uint8))

    def rle(y0, y1, x0, x1):
        m = np.zeros((40, 40), bool)
        m[y0:y1, x0:x1] = True
        return masks.encode_mask(m)

    with Project.create(tmp_path / "p", images_dir=tmp_path / "im") as p:
        p.add_category("a", id=1)
        a, b = (im.id for im in p.images())
        gt = {a: [{"category_id": 1, "iscrowd": 0, "rle": rle(0, 10, 0, 10)},
                  {"category_id": 1, "iscrowd": 0, "rle": rle(20, 30, 0, 10)},
                  {"category_id": 1, "iscrowd": 1, "rle": rle(30, 40, 30, 40)}],   # crowd: not counted
              b: [{"category_id": 1, "iscrowd": 0, "rle": rle(0, 20, 0, 20)}]}
        p.replace_predictions(a, [
            {"category_id": 1, "rle": rle(0, 10, 0, 10), "score": 0.9},    # IoU 1: accepted
            {"category_id": 1, "rle": rle(20, 27, 0, 10), "score": 0.8},   # IoU 0.7: accepted (inclusive)
            {"category_id": 1, "rle": rle(0, 10, 0, 10), "score": 0.7},    # its gt is taken: deleted
        ], None)
        p.replace_predictions(b, [
            {"category_id": 1, "rle": rle(0, 20, 0, 20), "score": 0.2},    # IoU 1, but below the slider at 0.3
            {"category_id": 1, "rle": rle(0, 20, 0, 12), "score": 0.15},   # IoU 0.6: fixed (or gt taken)
        ], None)
        assert heldout_accepted(p, [a, b], gt, score_threshold=0.3) == (2, 3)
        assert heldout_accepted(p, [a, b], gt, score_threshold=0.1) == (3, 3)
        assert heldout_accepted(p, [a, b], gt, score_threshold=0.3, accept_iou=0.75) == (1, 3)
        for image in (a, b):  # read, not corrected: every prediction still under review, no image done
            assert {x.review_state for x in p.annotations(image)} == {"predicted"}
            assert not p.image(image).done


@pytest.mark.slow
def test_simulate_two_rounds_cli(tmp_path, coco_tiny, capsys):
    gt = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())
    chosen = sorted(gt["images"], key=lambda im: im["file_name"])[:8]
    images = tmp_path / "images"
    images.mkdir()
    for im in chosen:
        shutil.copy(coco_tiny / "val2017" / im["file_name"], images / im["file_name"])
    ids = {im["id"] for im in chosen}
    sub = {"images": chosen, "categories": gt["categories"],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
    (tmp_path / "gt.json").write_text(json.dumps(sub))
    out = tmp_path / "out"
    assert main(["simulate", "--coco", str(tmp_path / "gt.json"), "--images", str(images), "--arch", "yolact_tiny",
                 "--rounds", "2", "--per-round", "3", "--device", "cpu", "--out", str(out), "--iterations", "4",
                 "--input-size", "96", "--batch-size", "2", "--eval-remaining", "--cost-draw", "60"]) == 0
    printed = capsys.readouterr().out
    assert "accepted%" in printed and "est. min/img" in printed
    # the pre-labelling precision, once (in-process default pinned to fp32 by tests/conftest.py)
    assert printed.count("precision: fp32 (CPU without native bf16; --precision bf16 to override)") == 1, printed
    rows = list(csv.DictReader(open(out / "rounds.csv")))
    assert [int(r["round"]) for r in rows] == [1, 2] and [int(r["images_labeled"]) for r in rows] == [3, 6]
    assert "accepted_without_edit_pct" in rows[0]
    assert float(rows[0]["accepted_without_edit_pct"]) == 0.0 and int(rows[0]["drawn"]) == int(rows[0]["gt_instances"])
    # round 1 draws everything: 60 s (the --cost-draw given) per instance
    assert float(rows[0]["est_seconds_per_image"]) == pytest.approx(60 * int(rows[0]["gt_instances"]) / 3, abs=0.1)
    assert float(rows[0]["est_pct_of_drawing"]) == 100.0
    r2 = rows[1]
    assert float(r2["est_pct_of_drawing"]) == pytest.approx(
        100 * 3 * float(r2["est_seconds_per_image"]) / (60 * int(r2["gt_instances"])), abs=0.2)
    assert float(r2["est_seconds_per_image"]) == pytest.approx(
        (60 * int(r2["drawn"]) + 15 * int(r2["fixed"]) + int(r2["accepted_without_edit"]) + 2 * int(r2["deleted"])) / 3,
        abs=0.1)
    assert [int(r["model_version"]) for r in rows] == [1, 2] and int(rows[1]["remaining_images"]) == 2
    # the 2 images after the rounds' 6 are held out (default --heldout = --per-round, as many as are left)
    assert [int(r["heldout_images"]) for r in rows] == [2, 2]
    assert all(0.0 <= float(r["accepted_heldout_pct"]) <= 100.0 for r in rows)
    png = (out / "rounds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Project.open(out / "project") as p:
        assert p.model_version(2).parent == 1
        done = [im for im in p.images() if im.done]
        assert len(done) == 6
        rest = {Path(im.file_name).name for im in p.images() if not im.done}
        v2 = p.model_version(2).checkpoint
        # the held-out images carry version 2's predictions, still under review
        held = [im for im in p.images() if not im.done]
        assert all(a.review_state == "predicted" and a.model_version == 2
                   for im in held for a in p.annotations(im.id))
    # the CSV's segm AP on the remaining images is version 2's AP there: evaluate it again
    from segcore.data import load_coco_records
    from segcore.evaluation import evaluate_predictions
    from segcore.predictor import Predictor

    records, _ = load_coco_records(tmp_path / "gt.json", images)
    remaining = [r for r in records if Path(r["file_name"]).name in rest]
    assert len(remaining) == 2
    predictor = Predictor.from_checkpoint(v2, device="cpu")
    again = evaluate_predictions(predictor, remaining, predictor.categories)
    assert float(rows[1]["segm_AP_remaining"]) == pytest.approx(again["segm"]["AP"], abs=1e-4)
