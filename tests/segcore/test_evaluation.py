"""segcore.evaluation: pycocotools COCOeval wrappers."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from segcore.data import load_coco_records
from segcore.evaluation import METRIC_NAMES, coco_evaluate, evaluate_predictions, records_to_coco
from segcore.predictor import Prediction


@pytest.fixture(scope="module")
def val(coco_tiny):
    gt = coco_tiny / "annotations" / "instances_val2017.json"
    records, categories = load_coco_records(gt, coco_tiny / "val2017")
    return gt, records, categories, COCO(str(gt))


def _gt_results(coco: COCO, image_ids=None) -> list[dict]:
    out = []
    for ann in coco.dataset["annotations"]:
        if ann["iscrowd"] or (image_ids is not None and ann["image_id"] not in image_ids):
            continue
        rle = coco.annToRLE(ann)
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                    "score": 1.0, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    return out


def _check(res, types=("bbox", "segm")):
    assert set(res) == set(types)
    for t in types:
        assert tuple(res[t]) == METRIC_NAMES and all(isinstance(v, float) for v in res[t].values())


def test_perfect_and_empty_results(val, tmp_path, capsys):
    gt, _, _, coco = val
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps(_gt_results(coco)))
    res = coco_evaluate(gt, dt, verbose=True)
    _check(res)
    assert res["bbox"]["AP"] == pytest.approx(1.0) and res["segm"]["AP50"] == pytest.approx(1.0)
    assert "Average Precision" in capsys.readouterr().out
    dt.write_text("[]")
    res = coco_evaluate(gt, dt, iou_types=("segm",), verbose=True)
    _check(res, ("segm",))
    assert all(v == 0.0 for v in res["segm"].values())
    assert "no detections" in capsys.readouterr().out


def test_half_the_detections(val, tmp_path):
    gt, _, _, coco = val
    results = _gt_results(coco)
    kept = results[::2]
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps(kept))
    res = coco_evaluate(gt, dt, verbose=False)
    assert 0.2 < res["segm"]["AP"] < 0.9 and 0.2 < res["bbox"]["AP50"] < 0.9


def test_errors(val, tmp_path):
    gt, _, _, _ = val
    dt = tmp_path / "dt.json"
    dt.write_text("{}")
    with pytest.raises(ValueError, match="must be a JSON list"):
        coco_evaluate(gt, dt, verbose=False)
    dt.write_text("[]")
    with pytest.raises(ValueError, match="unknown iou type"):
        coco_evaluate(gt, dt, iou_types=("keypoints",), verbose=False)


def test_records_to_coco(val):
    _, records, categories, coco = val
    data = records_to_coco(records, categories)
    assert len(data["images"]) == len(coco.dataset["images"])
    assert len(data["annotations"]) == len(coco.dataset["annotations"])
    areas = sorted(a["area"] for a in data["annotations"])
    np.testing.assert_allclose(areas, sorted(a["area"] for a in coco.dataset["annotations"]))
    no_area = copy.deepcopy(records[:3])
    for rec in no_area:
        for ann in rec["annotations"]:
            del ann["area"]
    rebuilt = records_to_coco(no_area, categories)  # area recomputed from the masks
    np.testing.assert_allclose([a["area"] for a in rebuilt["annotations"]],
                               [a["area"] for a in data["annotations"][:len(rebuilt["annotations"])]], rtol=0.1)


class _OraclePredictor:
    """Returns the ground truth of the records in order (what evaluate_predictions iterates)."""

    def __init__(self, records, coco):
        self._queue = list(records)
        self._coco = coco

    def predict(self, image, *, score_threshold=0.05):
        rec = self._queue.pop(0)
        assert image.shape == (rec["height"], rec["width"], 3) and image.dtype == np.uint8
        anns = [a for a in self._coco.imgToAnns[rec["image_id"]] if not a["iscrowd"]]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        masks = np.stack([self._coco.annToMask(a).astype(bool) for a in anns]) if anns else \
            np.zeros((0, rec["height"], rec["width"]), bool)
        return Prediction(boxes, np.ones(len(anns), np.float32),
                          np.array([a["category_id"] for a in anns], np.int64), masks)


def test_evaluate_predictions_oracle(val):
    _, records, categories, coco = val
    subset = records[:6]
    done = []
    res = evaluate_predictions(_OraclePredictor(subset, coco), subset, categories,
                               progress=lambda i, n: done.append((i, n)))
    _check(res)
    assert res["segm"]["AP"] == pytest.approx(1.0) and res["bbox"]["AP"] == pytest.approx(1.0)
    assert done[-1] == (6, 6)
