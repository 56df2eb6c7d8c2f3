"""COCO box / mask AP with pycocotools ``COCOeval`` (no evaluator of our own).

Metrics are fractions in [0, 1] (not percent): ``AP`` (IoU .50:.95), ``AP50``, ``AP75``,
``APs``, ``APm``, ``APl`` = ``COCOeval.stats[0:6]``; -1.0 means "no ground truth in that
range" (COCOeval's convention, kept so the numbers stay JSON-serialisable).

Results entries are written as each family's official evaluator writes them
(``Family.coco_results``; default :func:`d2_coco_results`, detectron2's ``COCOEvaluator``): one
entry per instance with ``bbox`` and ``segmentation``; ``score`` goes with the box and the
optional ``mask_score`` with the mask (centermask2 ``centermask/evaluation/coco_evaluation.py``:
for ``segm`` the ``score`` is replaced by ``mask_score``; dbolya/yolact ``eval.py`` writes the two
scores to two files, which is the same). For ``segm`` the ``bbox`` is dropped so that COCOeval
takes the area from the mask (detectron2 does the same).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["METRIC_NAMES", "coco_evaluate", "evaluate_coco_objects", "records_to_coco",
           "evaluate_predictions", "predict_coco_results", "d2_coco_results", "coco_results_writer"]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_IOU_TYPES = ("bbox", "segm")


def _zeros(by_size: bool = True) -> dict:
    return {name: 0.0 for name in (METRIC_NAMES if by_size else METRIC_NAMES[:3])}


def _quiet(verbose: bool):
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _coco_from_dict(dataset: dict, verbose: bool = False) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with _quiet(verbose):
        coco.createIndex()
    return coco


def evaluate_coco_objects(coco_gt: COCO, results: list[dict], iou_types=_IOU_TYPES, *,
                          verbose: bool = True, max_detections: int = 100, by_size: bool = True) -> dict:
    """Evaluate in-memory COCO results against a ``COCO`` ground-truth object.

    Args:
        coco_gt: pycocotools ``COCO`` with the ground truth.
        results: COCO results entries (``image_id``, ``category_id``, ``score``, ``bbox``
            [x, y, w, h] pixels and/or ``segmentation`` RLE, optional ``mask_score``: the score
            of the mask where it differs from the box's, used for ``segm``).
        iou_types: subset of ``("bbox", "segm")``.
        verbose: print COCOeval's standard table.
        max_detections: detections per image the AP counts (COCOeval ``maxDets[2]``; COCO's 100
            by default). Dense data (hundreds of instances per image) need more, or recall, and
            with it AP, is capped by the cut: the training job's validation passes the model's own
            cap (``segcore.engine.EvalHook``).
        by_size: also AP by object size (COCO's small / medium / large area ranges). False
            evaluates the "all" range only: AP, AP50 and AP75 are the same numbers, about 4x
            sooner (COCOeval's per-image matching runs once per area range in Python: 15 s per
            dense 1000 x 1000 image with 2,800 detections, 3.8 s without the size ranges), which
            is what validation during a time-boxed training run uses.

    Returns:
        ``{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl"}}`` floats (without ``by_size``:
        ``{"AP", "AP50", "AP75"}``). An empty
        ``results`` list gives all zeros (pycocotools cannot load it) and, when verbose, a line
        saying so.

    Raises:
        ValueError: unknown iou type.
    """
    for t in iou_types:
        if t not in _IOU_TYPES:
            raise ValueError(f"unknown iou type {t!r}; use 'bbox' and/or 'segm'")
    if not results:
        if verbose:
            print("coco_evaluate: no detections; every AP is reported as 0.0")
        return {t: _zeros(by_size) for t in iou_types}
    out = {}
    for iou_type in iou_types:
        dts = copy.deepcopy(results)
        if iou_type == "segm":
            # Without 'bbox', loadRes uses the mask area for the small/medium/large split
            # (as detectron2's COCOEvaluator does).
            for d in dts:
                d.pop("bbox", None)
                if "mask_score" in d:  # centermask2's _evaluate_predictions_on_coco
                    d["score"] = d.pop("mask_score")
            if "segmentation" not in dts[0]:
                raise ValueError("segm evaluation needs 'segmentation' in the results")
        else:
            for d in dts:
                d.pop("mask_score", None)
        with _quiet(verbose):
            coco_dt = coco_gt.loadRes(dts)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            dense = int(max_detections) != 100
            if dense:
                ev.params.maxDets = [1, 10, int(max_detections)]
            if not by_size:
                ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
            ev.evaluate()
            ev.accumulate()
            if verbose:
                print(f"COCOeval {iou_type}" + (f" ({int(max_detections)} detections per image):" if dense else ":"))
            if dense or not by_size:  # summarize reads a literal 100 detections and every size range
                out[iou_type] = _stats_at_last_cut(ev)
                if verbose:
                    print("  " + "  ".join(f"{k} {v:.3f}" for k, v in out[iou_type].items()))
                continue
            ev.summarize()
        out[iou_type] = {name: float(ev.stats[i]) for i, name in enumerate(METRIC_NAMES)}
    return out


def _stats_at_last_cut(ev: COCOeval) -> dict:
    """AP, AP50, AP75 (and APs, APm, APl where the size ranges were evaluated) of an accumulated
    ``COCOeval`` at its last ``maxDets``, read
    off ``ev.eval["precision"]`` ``[T, R, K, A, M]`` as ``COCOeval.summarize`` does (mean over
    the entries > -1; -1 when there are none)."""
    p, precision = ev.params, ev.eval["precision"]

    def ap(iou: float | None = None, area: str = "all") -> float:
        sel = precision[:, :, :, p.areaRngLbl.index(area), -1]
        if iou is not None:
            sel = sel[np.isclose(p.iouThrs, iou)]
        sel = sel[sel > -1]
        return float(np.mean(sel)) if sel.size else -1.0

    out = {"AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75)}
    if "small" in p.areaRngLbl:
        out.update(APs=ap(area="small"), APm=ap(area="medium"), APl=ap(area="large"))
    return out


def coco_evaluate(gt_json_path: str | Path, dt_json_path: str | Path, iou_types=_IOU_TYPES, *,
                  verbose: bool = True) -> dict:
    """COCO AP of a results JSON against a ground-truth instances JSON (pycocotools).

    Args:
        gt_json_path: COCO instances JSON (ground truth).
        dt_json_path: COCO results JSON: a list of ``{"image_id", "category_id", "score",
            "bbox" [x, y, w, h], "segmentation" RLE}``.
        iou_types: subset of ``("bbox", "segm")``.
        verbose: print the standard COCOeval tables.

    Returns:
        ``{"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...}}`` (only the
        requested types); all zeros for an empty results list.

    Raises:
        FileNotFoundError: a file is missing. ValueError: the results file is not a list.
    """
    with _quiet(verbose):
        coco_gt = COCO(str(gt_json_path))
    with open(dt_json_path, "r", encoding="utf-8") as fh:
        results = json.load(fh)
    if not isinstance(results, list):
        raise ValueError(f"{dt_json_path}: COCO results must be a JSON list")
    return evaluate_coco_objects(coco_gt, results, iou_types, verbose=verbose)


def records_to_coco(records: list[dict], categories: list[dict]) -> dict:
    """Build a COCO ground-truth dataset dict from segcore records.

    Annotation ids are 1..N in record order; a missing ``area`` is the mask area computed by
    ``pycocotools.mask.area``.

    Returns:
        ``{"images", "annotations", "categories"}`` (for ``COCO().dataset``).
    """
    images, anns = [], []
    for rec in records:
        h, w = int(rec["height"]), int(rec["width"])
        images.append({"id": int(rec["image_id"]), "height": h, "width": w,
                       "file_name": str(rec.get("file_name", ""))})
        for ann in rec.get("annotations", []):
            seg = ann["segmentation"]
            area = ann.get("area")
            if area is None:
                if isinstance(seg, list):
                    polys = [p for p in seg if len(p) >= 6]
                    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w)) if polys else None
                elif isinstance(seg["counts"], list):
                    rle = mask_utils.frPyObjects(seg, h, w)
                else:
                    rle = seg
                area = float(mask_utils.area(rle)) if rle is not None else 0.0
            anns.append({"id": len(anns) + 1, "image_id": int(rec["image_id"]),
                         "category_id": int(ann["category_id"]), "bbox": [float(v) for v in ann["bbox"]],
                         "area": float(area), "iscrowd": int(ann.get("iscrowd", 0)), "segmentation": seg})
    cats = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
    return {"images": images, "annotations": anns, "categories": cats}


def d2_coco_results(prediction, image_id: int) -> list[dict]:
    """COCO results entries of one image as detectron2's ``COCOEvaluator`` writes them
    (``detectron2/evaluation/coco_evaluation.py`` ``instances_to_coco_json``; centermask2's copy
    adds ``mask_score``): every instance, empty masks included; ``bbox`` the box converted to
    XYWH in float32 (``BoxMode.convert``), not rounded; ``score`` the box score (``box_scores``
    where the prediction has them, else ``scores``); ``mask_score`` = ``scores`` where the
    prediction has ``box_scores``; ``segmentation`` compressed RLE (counts as str). Entries in the
    detector's order: with ``box_scores``, a stable sort by them (CenterMask: the FCOS order that
    centermask2 keeps), else the prediction's order.

    ``prediction``: a :class:`segcore.predictor.Prediction` (``boxes``, ``scores``,
    ``box_scores`` or None, ``category_ids``, ``masks``)."""
    n = len(prediction.scores)
    if n == 0:
        return []
    xywh = np.array(prediction.boxes, dtype=np.float32).reshape(-1, 4)
    xywh[:, 2] -= xywh[:, 0]
    xywh[:, 3] -= xywh[:, 1]
    boxes = xywh.tolist()
    scores = np.asarray(prediction.scores, dtype=np.float32)
    box_scores = None if prediction.box_scores is None else np.asarray(prediction.box_scores, dtype=np.float32)
    rles = prediction.to_rle()
    order = range(n) if box_scores is None else np.argsort(-box_scores, kind="stable")
    out = []
    for i in order:
        entry = {"image_id": int(image_id), "category_id": int(prediction.category_ids[i]), "bbox": boxes[i],
                 "score": float(scores[i] if box_scores is None else box_scores[i]), "segmentation": rles[i]}
        if box_scores is not None:
            entry["mask_score"] = float(scores[i])
        out.append(entry)
    return out


def coco_results_writer(model):
    """``fn(prediction, image_id) -> list[dict]``: the official COCO results writer of ``model``'s
    family (``Family.coco_results``, default :func:`d2_coco_results`)."""
    from segcore.modeling.registry import family_of

    return family_of(model).coco_results or d2_coco_results


def predict_coco_results(predictor, records: list[dict], *, score_threshold: float = 0.05,
                         progress=None) -> list[dict]:
    """Run ``predictor`` on every record's image and return the COCO results entries, written as
    the model family's official evaluator writes them (:func:`coco_results_writer`; a predictor
    without a segcore ``model`` uses ``Prediction.to_coco_results``): the content of an official
    results JSON (``json.dump`` it), with ``mask_score`` where the mask's score differs from the
    box's.

    Args:
        predictor: ``segcore.predictor.Predictor``.
        records: segcore records with absolute ``file_name`` (``docs/INTERFACES.md``).
        score_threshold: predictor score threshold (0.05 = official eval default).
        progress: optional ``progress(done, total)`` callback.

    Raises:
        FileNotFoundError / ValueError: an image cannot be read (message names the file).
    """
    from segcore.data.dataset import read_image_rgb

    model = getattr(predictor, "model", None)
    write = coco_results_writer(model) if getattr(model, "info", None) is not None else None
    results: list[dict] = []
    for i, rec in enumerate(records):
        image = read_image_rgb(rec["file_name"], (int(rec["height"]), int(rec["width"])))
        pred = predictor.predict(image, score_threshold=score_threshold)
        image_id = int(rec["image_id"])
        results.extend(write(pred, image_id) if write is not None else pred.to_coco_results(image_id))
        if progress is not None:
            progress(i + 1, len(records))
    return results


def evaluate_predictions(predictor, records: list[dict], categories: list[dict], *,
                         score_threshold: float = 0.05, iou_types=_IOU_TYPES, verbose: bool = False,
                         progress=None, max_detections: int = 100, by_size: bool = True) -> dict:
    """Run ``predictor`` on every record's image and evaluate against the records' annotations.

    The ground truth is built in memory with :func:`records_to_coco` and pycocotools ``COCO``;
    predictions are matched by COCO category id (``predictor.categories``) and written as the
    model family's official evaluator writes them (:func:`predict_coco_results`).

    Args:
        predictor: ``segcore.predictor.Predictor``.
        records: segcore records with absolute ``file_name`` (``docs/INTERFACES.md``).
        categories: ``[{"id", "name"}, ...]`` of the ground truth.
        score_threshold: predictor score threshold (0.05 = official eval default).
        iou_types: subset of ``("bbox", "segm")``.
        verbose: print COCOeval tables.
        progress: optional ``progress(done, total)`` callback.
        max_detections: detections per image the AP counts (see :func:`evaluate_coco_objects`).
        by_size: also AP by object size (see :func:`evaluate_coco_objects`).

    Returns:
        Same structure as :func:`coco_evaluate` (without ``by_size``: AP, AP50, AP75 only).

    Raises:
        FileNotFoundError / ValueError: an image cannot be read (message names the file).
    """
    coco_gt = _coco_from_dict(records_to_coco(records, categories))
    results = predict_coco_results(predictor, records, score_threshold=score_threshold, progress=progress)
    return evaluate_coco_objects(coco_gt, results, iou_types, verbose=verbose, max_detections=max_detections,
                                 by_size=by_size)
