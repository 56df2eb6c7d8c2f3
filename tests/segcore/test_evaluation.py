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


# ------------------------------------------------------------------ official results writers
def _prediction(boxes, scores, box_scores=None, h=40, w=60):
    n = len(scores)
    masks = np.zeros((n, h, w), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, int(y0):int(y1), int(x0):int(x1)] = i != 1          # the second mask is empty
    return Prediction(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      np.array([7] * n, np.int64), masks,
                      box_scores=None if box_scores is None else np.asarray(box_scores, np.float32))


def test_yolact_results_as_official_eval_py():
    """dbolya/yolact eval.py: class score with the box (YOLACT++ too), mask score with the mask,
    sanitised boxes truncated (``boxes.long()``), XYWH, zero-area boxes dropped with their mask,
    official order (descending class score)."""
    from segcore.modeling.yolact.postprocess import yolact_coco_results

    boxes = [[1.7, 2.2, 20.9, 30.5], [5.0, 5.0, 9.0, 9.0], [10.2, 3.0, 10.9, 12.0], [30.99, 0.5, 59.2, 39.999]]
    pred = _prediction(boxes, scores=[0.9, 0.6, 0.5, 0.4], box_scores=[0.7, 0.8, 0.6, 0.75])
    res = yolact_coco_results(pred, 3)
    assert [r["bbox"] for r in res] == [[5.0, 5.0, 4.0, 4.0], [30.0, 0.0, 29.0, 39.0], [1.0, 2.0, 19.0, 28.0]]
    assert [r["score"] for r in res] == pytest.approx([0.8, 0.75, 0.7])          # class scores, their order
    assert [r["mask_score"] for r in res] == pytest.approx([0.6, 0.4, 0.9])
    assert {r["image_id"] for r in res} == {3} and all(isinstance(r["segmentation"]["counts"], str) for r in res)
    plain = yolact_coco_results(_prediction(boxes[:1], scores=[0.9]), 1)      # YOLACT: the same score twice
    assert plain[0]["score"] == plain[0]["mask_score"] == pytest.approx(0.9)


def test_detectron2_results_as_coco_evaluator():
    """detectron2 instances_to_coco_json (+ centermask2's mask_score): every instance, empty masks
    included, float XYWH, box score with the box, mask score with the mask, FCOS order."""
    from segcore.evaluation import d2_coco_results

    boxes = [[1.7, 2.2, 20.9, 30.5], [5.0, 5.0, 9.0, 9.0], [10.2, 3.0, 10.9, 12.0]]
    res = d2_coco_results(_prediction(boxes, scores=[0.9, 0.6, 0.5]), 1)              # BlendMask
    assert len(res) == 3 and "mask_score" not in res[0] and [r["score"] for r in res] == pytest.approx([0.9, 0.6, 0.5])
    xywh = np.array(boxes, np.float32)
    xywh[:, 2:] -= xywh[:, :2]
    assert [r["bbox"] for r in res] == xywh.tolist()
    assert res[1]["segmentation"]["counts"]                                           # an empty mask is kept
    res = d2_coco_results(_prediction(boxes, scores=[0.9, 0.6, 0.5], box_scores=[0.3, 0.8, 0.3]), 1)  # CenterMask
    assert [r["score"] for r in res] == pytest.approx([0.8, 0.3, 0.3])
    assert [r["mask_score"] for r in res] == pytest.approx([0.6, 0.9, 0.5])


def test_segm_is_ranked_by_mask_score_and_bbox_by_box_score():
    """Two detections of one object: the first has the right mask and a wrong box, the second the
    right box and a wrong mask. Box score ranks the first higher, mask score the second: each AP
    is 0.5 only when bbox uses ``score`` and segm ``mask_score`` (centermask2's evaluator)."""
    from pycocotools import mask as mask_utils

    from segcore.evaluation import evaluate_coco_objects
    from segcore.evaluation.coco import _coco_from_dict

    h, w = 100, 100
    gt = np.zeros((h, w), np.uint8)
    gt[20:60, 20:60] = 1
    wrong = np.zeros((h, w), np.uint8)
    wrong[70:95, 70:95] = 1
    dataset = {"images": [{"id": 1, "height": h, "width": w, "file_name": "a.png"}],
               "categories": [{"id": 1, "name": "a"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 20, 40, 40], "area": 1600,
                                "iscrowd": 0, "segmentation": [[20, 20, 60, 20, 60, 60, 20, 60]]}]}

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m))
        return {"size": r["size"], "counts": r["counts"].decode()}

    results = [{"image_id": 1, "category_id": 1, "bbox": [70, 70, 25, 25], "score": 0.9, "mask_score": 0.2,
                "segmentation": rle(gt)},
               {"image_id": 1, "category_id": 1, "bbox": [20, 20, 40, 40], "score": 0.8, "mask_score": 0.9,
                "segmentation": rle(wrong)}]
    res = evaluate_coco_objects(_coco_from_dict(dataset), results, verbose=False)
    assert res["bbox"]["AP50"] == pytest.approx(0.5) and res["segm"]["AP50"] == pytest.approx(0.5)
    for r in results:
        r.pop("mask_score")                       # one score for both: segm ranks the right mask first
    res = evaluate_coco_objects(_coco_from_dict(dataset), results, verbose=False)
    assert res["bbox"]["AP50"] == pytest.approx(0.5) and res["segm"]["AP50"] == pytest.approx(1.0)


def test_each_family_has_its_official_writer():
    from segcore.evaluation import coco_results_writer, d2_coco_results
    from segcore.modeling import build_model
    from segcore.modeling.yolact.postprocess import yolact_coco_results

    pred = _prediction([[1.7, 2.2, 20.9, 30.5], [10.2, 3.0, 10.9, 12.0]], scores=[0.9, 0.6])
    official_yolact, official_d2 = yolact_coco_results(pred, 1), d2_coco_results(pred, 1)
    assert official_yolact != official_d2
    assert coco_results_writer(build_model("yolact_tiny", num_classes=2))(pred, 1) == official_yolact
    assert coco_results_writer(build_model("blendmask_tiny", num_classes=2)) is d2_coco_results
    assert coco_results_writer(build_model("centermask_tiny", num_classes=2)) is d2_coco_results


def test_dense_images_count_the_models_detections():
    """150 instances in one image, each predicted exactly: COCO's 100 detections per image cap
    recall (AP well under 1); counting 200 gives AP 1.0 (what validation on dense data uses)."""
    from pycocotools import mask as mask_utils

    from segcore.evaluation import evaluate_coco_objects

    h, w = 150, 400
    anns, results = [], []
    for k in range(150):
        m = np.zeros((h, w), np.uint8)
        y, x = (k // 20) * 18 + 2, (k % 20) * 20 + 2
        m[y:y + 12, x:x + 12] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode()
        box = [float(x), float(y), 12.0, 12.0]
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 144.0, "iscrowd": 0,
                     "segmentation": rle})
        results.append({"image_id": 1, "category_id": 1, "bbox": box, "score": 1.0 - k / 1000, "segmentation": rle})
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "height": h, "width": w, "file_name": "x.png"}], "annotations": anns,
                  "categories": [{"id": 1, "name": "cell"}]}
    gt.createIndex()
    capped = evaluate_coco_objects(gt, results, verbose=False)
    dense = evaluate_coco_objects(gt, results, verbose=False, max_detections=200)
    assert capped["segm"]["AP"] < 0.7 and capped["bbox"]["AP"] < 0.7
    assert dense["segm"]["AP"] == pytest.approx(1.0) and dense["bbox"]["AP"] == pytest.approx(1.0)


def test_last_cut_stats_equal_summarize_at_100(val):
    """The stats read at the last detection cut equal COCOeval.summarize's when that cut is 100."""
    from pycocotools.cocoeval import COCOeval

    from segcore.evaluation.coco import _stats_at_last_cut

    gt_path, _, _, coco = val
    res = _gt_results(coco)[::2]
    for r in res:
        r["score"] = 0.5 + (r["bbox"][2] % 7) / 20  # varied scores
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(res)), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    mine = _stats_at_last_cut(ev)
    assert mine == pytest.approx({n: float(ev.stats[i]) for i, n in enumerate(METRIC_NAMES)})


@pytest.mark.parametrize("max_detections", [100, 300])
def test_without_size_ranges_the_ap_is_the_same(val, max_detections):
    """``by_size=False`` (validation during training) evaluates COCO's "all" area range only:
    AP, AP50 and AP75 equal the full evaluation's, and the size entries are absent."""
    from segcore.evaluation import evaluate_coco_objects

    _, _, _, coco = val
    res = _gt_results(coco)[::2]
    for k, r in enumerate(res):
        r["score"] = 0.5 + (r["bbox"][2] % 7) / 20
        if k % 3 == 0:   # some detections off their object: AP below 1
            r["bbox"] = [r["bbox"][0] + r["bbox"][2] / 2, *r["bbox"][1:]]
    full = evaluate_coco_objects(coco, res, verbose=False, max_detections=max_detections)
    quick = evaluate_coco_objects(coco, res, verbose=False, max_detections=max_detections, by_size=False)
    for t in ("bbox", "segm"):
        assert set(quick[t]) == {"AP", "AP50", "AP75"}
        assert 0.05 < full[t]["AP"] < 0.95
        assert quick[t] == pytest.approx({k: full[t][k] for k in ("AP", "AP50", "AP75")}, abs=0)
