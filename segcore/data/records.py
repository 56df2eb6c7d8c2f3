"""COCO instance JSON -> segcore dataset records (detectron2-style dicts).

A record (see ``docs/INTERFACES.md``, ``segcore.data``)::

    {"file_name": str (absolute path), "image_id": int, "height": int, "width": int,
     "annotations": [{"bbox": [x, y, w, h] (COCO XYWH pixels), "category_id": int (COCO id),
                      "segmentation": polygon list [[x1, y1, ...], ...] | RLE dict,
                      "iscrowd": 0 | 1}]}
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_coco_records"]


def load_coco_records(json_path: str | Path, image_root: str | Path) -> tuple[list[dict], list[dict]]:
    """Read a COCO instances JSON into records and categories.

    Args:
        json_path: COCO ``instances_*.json`` (``images``, ``annotations``, ``categories``).
        image_root: folder the images' ``file_name`` entries are relative to.

    Returns:
        ``(records, categories)``: one record per image, in the JSON's image order (images
        without annotations are kept, with an empty list); ``categories`` is
        ``[{"id": int, "name": str}, ...]`` sorted by COCO id, so list position = contiguous
        class index 0..K-1 used by the models. Annotation fields are copied as they are
        (segmentation polygon lists or RLE dicts with compressed ``str`` or uncompressed
        ``list`` counts); ``iscrowd`` defaults to 0.

    Raises:
        FileNotFoundError: ``json_path`` does not exist.
        ValueError: the JSON is not a COCO instances file (message names the file and key),
            or an annotation refers to an unknown image or category id.
    """
    json_path = Path(json_path)
    image_root = Path(image_root).resolve()
    with json_path.open("r", encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{json_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{json_path}: top level must be an object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_path}: key '{key}' missing or not a list")

    categories = []
    for i, cat in enumerate(data["categories"]):
        try:
            categories.append({"id": int(cat["id"]), "name": str(cat["name"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{json_path}: categories[{i}] needs 'id' and 'name' ({exc!r})") from exc
    categories.sort(key=lambda c: c["id"])
    cat_ids = {c["id"] for c in categories}
    if len(cat_ids) != len(categories):
        raise ValueError(f"{json_path}: duplicate ids in 'categories'")

    records: list[dict] = []
    by_id: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        try:
            rec = {
                "file_name": str(image_root / img["file_name"]),
                "image_id": int(img["id"]),
                "height": int(img["height"]),
                "width": int(img["width"]),
                "annotations": [],
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{json_path}: images[{i}] needs 'id', 'file_name', 'height', 'width' ({exc!r})") from exc
        if rec["image_id"] in by_id:
            raise ValueError(f"{json_path}: images[{i}]: duplicate image id {rec['image_id']}")
        by_id[rec["image_id"]] = rec
        records.append(rec)

    for i, ann in enumerate(data["annotations"]):
        try:
            image_id = int(ann["image_id"])
            category_id = int(ann["category_id"])
            bbox = [float(v) for v in ann["bbox"]]
            segmentation = ann["segmentation"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{json_path}: annotations[{i}] needs 'image_id', 'category_id', 'bbox', 'segmentation' ({exc!r})"
            ) from exc
        if image_id not in by_id:
            raise ValueError(f"{json_path}: annotations[{i}].image_id {image_id} is not in 'images'")
        if category_id not in cat_ids:
            raise ValueError(f"{json_path}: annotations[{i}].category_id {category_id} is not in 'categories'")
        if len(bbox) != 4:
            raise ValueError(f"{json_path}: annotations[{i}].bbox must have 4 numbers [x, y, w, h]")
        out = {
            "bbox": bbox,
            "category_id": category_id,
            "segmentation": segmentation,
            "iscrowd": int(ann.get("iscrowd", 0)),
        }
        if "id" in ann:
            out["id"] = int(ann["id"])
        if "area" in ann:
            out["area"] = float(ann["area"])
        by_id[image_id]["annotations"].append(out)
    return records, categories
