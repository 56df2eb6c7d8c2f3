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

__all__ = ["load_coco_records", "pixel_centre_polygons", "shift_polygons", "CENTRE_TO_EDGE"]

#: What :func:`shift_polygons` adds to pixel-centre polygon coordinates to put them in COCO's
#: pixel-edge coordinates (pixel (row i, column j) covers ``[j, j + 1) x [i, i + 1)``).
CENTRE_TO_EDGE = 0.5


def _polygon_parts(segmentations):
    for seg in segmentations:
        if isinstance(seg, list):
            for part in seg:
                if isinstance(part, (list, tuple)):
                    yield part


def pixel_centre_polygons(segmentations, *, min_vertices: int = 50, share: float = 0.95,
                          max_vertices: int = 20_000) -> bool:
    """Whether a file's polygons were traced in pixel-centre coordinates by marching squares.

    ``skimage.measure.find_contours(mask, 0.5)``, which pycococreator and many mask-to-COCO
    converters use, returns (row, column) array indices: the 0.5 contour of a mask crosses the
    grid lines half way between two pixel centres, so every vertex has one whole coordinate and
    one ``k + 0.5``. pycocotools rasterises polygons in pixel-edge coordinates, so such masks
    come out half a pixel up and to the left of their objects (nuclei-he: 99.9 % of 110,607
    vertices have that form; COCO's hand-drawn val2017 polygons: 0.06 %). On 17 px nuclei that
    half pixel cost a content-aligned model 0.6-3.3 points of masks accepted at IoU 0.7.

    Args:
        segmentations: COCO ``segmentation`` values (polygon lists ``[[x1, y1, ...], ...]``;
            RLE dicts are ignored).
        min_vertices: fewer polygon vertices than this: False (too few to tell).
        share: the fraction of vertices that must have the form.
        max_vertices: the file is judged on its first this many vertices (a Python loop: COCO
            train2017 has millions).

    Returns:
        True when at least ``share`` of at least ``min_vertices`` vertices (of the first
        ``max_vertices``) have exactly one coordinate at ``k + 0.5`` and the other whole.
    """
    n = hits = 0
    for part in _polygon_parts(segmentations):
        for x, y in zip(part[0::2], part[1::2]):
            fx, fy = float(x) * 2.0, float(y) * 2.0
            hits += fx.is_integer() and fy.is_integer() and (int(fx) % 2) != (int(fy) % 2)
            n += 1
            if n >= max_vertices:
                return hits >= share * n
    return n >= min_vertices and hits >= share * n


def shift_polygons(segmentation, offset: float = CENTRE_TO_EDGE):
    """``segmentation`` with every polygon vertex moved by ``offset`` pixels right and down (a
    new list); an RLE dict is returned as it is."""
    if not isinstance(segmentation, list):
        return segmentation
    return [[float(v) + offset for v in part] for part in segmentation]


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
        ``list`` counts); ``iscrowd`` defaults to 0. Polygons traced in pixel-centre coordinates
        (:func:`pixel_centre_polygons`: the whole file shows the marching-squares form) are
        moved by +0.5 px to COCO's pixel-edge coordinates.

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
    if pixel_centre_polygons(a["segmentation"] for r in records for a in r["annotations"]):
        for r in records:
            for a in r["annotations"]:
                a["segmentation"] = shift_polygons(a["segmentation"])
    return records, categories
