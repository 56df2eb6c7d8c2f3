"""COCO box / mask AP with pycocotools ``COCOeval`` (no evaluator of our own).

Metrics are fractions in [0, 1] (not percent): ``AP`` (IoU .50:.95), ``AP50``, ``AP75``,
``APs``, ``APm``, ``APl`` = ``COCOeval.stats[0:6]``; -1.0 means "no ground truth in that
range" (COCOeval's convention, kept so the numbers stay JSON-serialisable).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["METRIC_NAMES", "coco_evaluate", "evaluate_coco_objects", "records_to_coco",
           "evaluate_predictions"]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_IOU_TYPES = ("bbox", "segm")


def _zeros() -> dict:
    return {name: 0.0 for name in METRIC_NAMES}


def _quiet(verbose: bool):
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _coco_from_dict(dataset: dict, verbose: bool = False) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with _quiet(verbose):
        coco.createIndex()
    return coco


def evaluate_coco_objects(coco_gt: COCO, results: list[dict], iou_types=_IOU_TYPES, *,
                          verbose: bool = True) -> dict:
    """Evaluate in-memory COCO results against a ``COCO`` ground-truth object.

    Args:
        coco_gt: pycocotools ``COCO`` with the ground truth.
        results: COCO results entries (``image_id``, ``category_id``, ``score``, ``bbox``
            [x, y, w, h] pixels and/or ``segmentation`` RLE).
        iou_types: subset of ``("bbox", "segm")``.
        verbose: print COCOeval's standard table.

    Returns:
        ``{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl"}}`` floats. An empty
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
        return {t: _zeros() for t in iou_types}
    out = {}
    for iou_type in iou_types:
        dts = copy.deepcopy(results)
        if iou_type == "segm":
            # Without 'bbox', loadRes uses the mask area for the small/medium/large split
            # (as detectron2's COCOEvaluator does).
            for d in dts:
                d.pop("bbox", None)
            if "segmentation" not in dts[0]:
                raise ValueError("segm evaluation needs 'segmentation' in the results")
        with _quiet(verbose):
            coco_dt = coco_gt.loadRes(dts)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            if verbose:
                print(f"COCOeval {iou_type}:")
            ev.summarize()
        out[iou_type] = {name: float(ev.stats[i]) for i, name in enumerate(METRIC_NAMES)}
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


def evaluate_predictions(predictor, records: list[dict], categories: list[dict], *,
                         score_threshold: float = 0.05, iou_types=_IOU_TYPES, verbose: bool = False,
                         progress=None) -> dict:
    """Run ``predictor`` on every record's image and evaluate against the records' annotations.

    The ground truth is built in memory with :func:`records_to_coco` and pycocotools ``COCO``;
    predictions are matched by COCO category id (``predictor.categories``).

    Args:
        predictor: ``segcore.predictor.Predictor``.
        records: segcore records with absolute ``file_name`` (``docs/INTERFACES.md``).
        categories: ``[{"id", "name"}, ...]`` of the ground truth.
        score_threshold: predictor score threshold (0.05 = official eval default).
        iou_types: subset of ``("bbox", "segm")``.
        verbose: print COCOeval tables.
        progress: optional ``progress(done, total)`` callback.

    Returns:
        Same structure as :func:`coco_evaluate`.

    Raises:
        FileNotFoundError / ValueError: an image cannot be read (message names the file).
    """
    from segcore.data.dataset import read_image_rgb

    coco_gt = _coco_from_dict(records_to_coco(records, categories))
    results: list[dict] = []
    for i, rec in enumerate(records):
        image = read_image_rgb(rec["file_name"], (int(rec["height"]), int(rec["width"])))
        pred = predictor.predict(image, score_threshold=score_threshold)
        results.extend(pred.to_coco_results(int(rec["image_id"])))
        if progress is not None:
            progress(i + 1, len(records))
    return evaluate_coco_objects(coco_gt, results, iou_types, verbose=verbose)
