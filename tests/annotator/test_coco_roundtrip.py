"""Acceptance: coco-tiny val2017 -> project -> COCO export evaluates to AP 1.000 against the original."""

from __future__ import annotations

import contextlib
import io
import json

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotator.io import export_coco, import_coco
from annotator.project import Project


def _evaluate(gt: COCO, results: list[dict], iou_type: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_coco_tiny_roundtrip_ap_is_one(tmp_path, coco_tiny):
    src = coco_tiny / "annotations" / "instances_val2017.json"
    original = json.loads(src.read_text())
    with Project.create(tmp_path / "proj", images_dir=coco_tiny / "val2017") as project:
        summary = import_coco(project, src)
        assert (summary.images, summary.new_images) == (len(original["images"]), 0)
        assert summary.annotations == len(original["annotations"])
        assert summary.crowd == sum(a["iscrowd"] for a in original["annotations"])
        assert summary.new_categories == len(original["categories"])
        out = tmp_path / "export" / "instances.json"
        counts = export_coco(project, out, include="human")
        assert counts["annotations"] == len(original["annotations"])
        accepted = export_coco(project, tmp_path / "accepted.json", include="accepted")
        assert accepted["annotations"] == counts["annotations"]

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(src))
        exported = COCO(str(out))  # the export is valid COCO for pycocotools
    assert sorted(exported.getImgIds()) == sorted(gt.getImgIds())
    names = {c["id"]: c["name"] for c in original["categories"]}
    assert {c["id"]: c["name"] for c in exported.dataset["categories"]} == names
    by_id = {a["id"]: a for a in original["annotations"]}
    for ann in exported.dataset["annotations"]:  # ids, bbox, area, crowd flags kept
        ref = by_id[ann["id"]]
        assert (ann["image_id"], ann["category_id"], ann["bbox"], ann["iscrowd"]) == \
               (ref["image_id"], ref["category_id"], ref["bbox"], ref["iscrowd"])
        assert abs(ann["area"] - ref["area"]) < 1e-6

    segm, bbox = [], []
    for ann in exported.dataset["annotations"]:
        rle = exported.annToRLE(ann)
        rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes)
               else rle["counts"]}
        segm.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                     "score": 1.0})
        bbox.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                     "score": 1.0})
    segm_ap, bbox_ap = _evaluate(gt, segm, "segm"), _evaluate(gt, bbox, "bbox")
    print(f"round-trip segm AP {segm_ap:.3f}, bbox AP {bbox_ap:.3f}")
    assert round(segm_ap, 3) == 1.0 and round(bbox_ap, 3) == 1.0

    # the masks themselves survive: every exported mask equals the original one
    for ann in exported.dataset["annotations"]:
        assert mask_utils.iou([exported.annToRLE(ann)], [gt.annToRLE(by_id[ann["id"]])], [0])[0][0] == 1.0
