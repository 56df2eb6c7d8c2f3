"""Polygons traced by marching squares (skimage ``find_contours`` at 0.5: pycococreator and
many mask-to-COCO converters) are in pixel-centre coordinates; the readers move them by +0.5 px
to COCO's pixel-edge coordinates so that their masks cover the objects."""

from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as mask_utils

from segcore.data.records import load_coco_records, pixel_centre_polygons, shift_polygons

H = W = 64


def _blob(k: int) -> np.ndarray:
    """An ellipse, different for each k (star-shaped about its centroid, as nuclei are)."""
    yy, xx = np.mgrid[:H, :W]
    cy, cx, ry, rx = 20 + (k % 3) * 9, 18 + (k % 4) * 8, 6 + k % 4, 8 + k % 3
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def marching_squares(mask: np.ndarray) -> list[float]:
    """The 0.5 contour of a one-component mask as find_contours traces it, in (x, y) array-index
    coordinates: a vertex half way between each pair of 4-neighbouring pixel centres of which
    one is in and one out, chained around the boundary (enough for these convex-ish blobs:
    ordered by angle about the centroid)."""
    pad = np.pad(mask, 1).astype(bool)
    pts = []
    for dy, dx in ((0, 1), (1, 0)):
        a, b = pad[: pad.shape[0] - dy, : pad.shape[1] - dx], pad[dy:, dx:]
        ys, xs = np.nonzero(a != b)
        pts += [(x - 1 + dx / 2.0, y - 1 + dy / 2.0) for y, x in zip(ys, xs)]
    pts = np.array(pts)
    c = pts.mean(0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]))]
    return [float(v) for p in pts for v in p]


def _decode(poly) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, H, W))).astype(bool)


def _centroid(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.mean(), ys.mean()])


def test_marching_squares_polygons_are_found_and_shifted_onto_their_masks():
    blobs = [_blob(k) for k in range(6)]
    polys = [[marching_squares(m)] for m in blobs]
    assert pixel_centre_polygons(polys)
    for m, poly in zip(blobs, polys):
        raw, moved = _decode(poly), _decode(shift_polygons(poly))
        # read as pixel-edge coordinates the mask sits up and left of its object (measured
        # -0.22..-0.40 px: pycocotools rounds the half pixel away on some rows) ...
        d = _centroid(raw) - _centroid(m)
        assert np.all((-0.5 <= d) & (d <= -0.15)), d
        assert (raw & m).sum() / (raw | m).sum() < 0.96
        # ... moved by +0.5 px it is the object's mask, pixel for pixel
        assert (moved == m).all()


def test_hand_drawn_and_integer_polygons_are_left_alone():
    rng = np.random.default_rng(0)
    drawn = [[list(rng.uniform(0, 60, 12))] for _ in range(20)]       # COCO-style, free floats
    integer = [[[float(v) for v in rng.integers(0, 60, 12)]] for _ in range(20)]  # cv2.findContours-style
    assert not pixel_centre_polygons(drawn) and not pixel_centre_polygons(integer)
    few = [[marching_squares(_blob(0))[:12]]]  # 6 vertices: too few to tell
    assert not pixel_centre_polygons(few)
    rle = {"size": [H, W], "counts": "PPYo1"}
    assert shift_polygons(rle) is rle


def test_load_coco_records_moves_a_marching_squares_file(tmp_path):
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0,
             "segmentation": [marching_squares(_blob(k))]} for k in range(6)]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}], "annotations": anns,
            "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    records, _ = load_coco_records(tmp_path / "a.json", tmp_path)
    got = records[0]["annotations"]
    assert [a["segmentation"] for a in got] == [shift_polygons(a["segmentation"]) for a in anns]
    assert [a["bbox"] for a in got] == [[0.0, 0.0, 1.0, 1.0]] * 6  # boxes as they were
