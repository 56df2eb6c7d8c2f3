"""Mask helpers on top of :mod:`pycocotools.mask` (no hand-written RLE codec).

Formats used throughout the annotator:

* **RLE** (the stored form): a pycocotools *compressed* RLE dict
  ``{"size": [height, width], "counts": str}`` (counts as an ASCII ``str``, JSON-ready).
* **uncompressed RLE**: ``{"size": [h, w], "counts": [int, ...]}`` (COCO crowd regions).
* **polygon**: COCO polygon list ``[[x1, y1, x2, y2, ...], ...]``, absolute pixel coordinates,
  one flat list per part; parts are merged (union) into one mask.
* **bbox**: COCO ``[x, y, w, h]`` (XYWH, absolute pixels, floats).
* **mask**: a numpy ``bool`` array ``[H, W]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segcore.ops.rle import rle_counts  # the one RLE counts reader (re-exported)

__all__ = [
    "counts_to_str",
    "counts_to_bytes",
    "encode_mask",
    "decode_rle",
    "polygon_to_rle",
    "uncompressed_to_rle",
    "to_rle",
    "rle_area",
    "rle_bbox",
    "rle_iou",
    "is_rle",
    "check_rle",
    "rle_counts",
    "decode_rle_crop",
]


def counts_to_str(rle: dict) -> dict:
    """Return a copy of a compressed RLE whose ``counts`` is a ``str`` (decoded from bytes)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def counts_to_bytes(rle: dict) -> dict:
    """Return a copy of a compressed RLE whose ``counts`` is ``bytes`` (what pycocotools wants)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def is_rle(segmentation: Any) -> bool:
    """True when ``segmentation`` is an RLE dict (compressed or not), False for a polygon list."""
    return isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a ``[H, W]`` mask (bool or 0/1 ints) as a compressed RLE with ``counts`` str."""
    arr = np.asfortranarray(np.asarray(mask, dtype=bool).astype(np.uint8))
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {arr.shape}")
    return counts_to_str(mask_utils.encode(arr))


def decode_rle(rle: dict) -> np.ndarray:
    """Decode a compressed or uncompressed RLE into a ``[H, W]`` bool mask."""
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(_compressed(rle)).astype(bool)


def polygon_to_rle(polygon: list[list[float]], height: int, width: int) -> dict:
    """Rasterise a COCO polygon (one or several parts, absolute pixels) into one compressed RLE.

    Parts are merged by union (COCO semantics). Returns counts as str.
    """
    parts = [list(map(float, p)) for p in polygon]
    rles = mask_utils.frPyObjects(parts, int(height), int(width))
    return counts_to_str(mask_utils.merge(rles))


def uncompressed_to_rle(rle: dict) -> dict:
    """Convert an uncompressed RLE (``counts`` list of ints) into a compressed one (counts str)."""
    h, w = int(rle["size"][0]), int(rle["size"][1])
    return counts_to_str(mask_utils.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w))


def _compressed(rle: dict) -> dict:
    if isinstance(rle.get("counts"), list):
        rle = uncompressed_to_rle(rle)
    return counts_to_bytes(rle)


def to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Any COCO segmentation (polygon list, RLE compressed or not) -> compressed RLE, counts str."""
    if is_rle(segmentation):
        if isinstance(segmentation["counts"], list):
            return uncompressed_to_rle(segmentation)
        return counts_to_str(segmentation)
    return polygon_to_rle(segmentation, height, width)


def check_rle(rle: dict) -> None:
    """Check that an RLE's run lengths are non-negative and cover exactly ``height * width`` pixels.

    Raises:
        ValueError: a negative run, runs that overrun or stop short of the mask, or a malformed
            counts string.
    """
    h, w, runs = rle_counts(rle)
    if (runs < 0).any():
        raise ValueError("negative run length in RLE counts")
    if int(runs.sum()) != h * w:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, not height x width = {h * w}")


def decode_rle_crop(rle: Mapping) -> tuple[int, int, np.ndarray] | None:
    """``(x0, y0, mask)``: the instance's bounding box of an RLE, ``mask`` ``[h, w]`` bool with its
    top-left pixel at ``(x0, y0)`` of the image; ``None`` for an empty mask.

    Work and memory scale with the box's columns (``H x w``), not the image: the runs of the
    box's columns (column-major, so a contiguous range of pixels) become an uncompressed RLE of
    size ``[H, w]`` that pycocotools decodes; the rows are then cut to the box.
    """
    h, w, cnts = rle_counts(rle)
    if cnts.size < 2 or not cnts[1::2].any():
        return None
    box = mask_utils.toBbox(_compressed(rle))           # XYWH, pycocotools
    x0, x1 = int(box[0]), int(box[0] + box[2])          # columns [x0, x1)
    ends = np.cumsum(cnts)
    lo, hi = x0 * h, x1 * h                             # flat column-major range of the box's columns
    starts = ends - cnts
    keep = (ends > lo) & (starts < hi)
    first = int(np.flatnonzero(keep)[0])
    runs = np.minimum(ends[keep], hi) - np.maximum(starts[keep], lo)
    if first % 2:                                       # the range starts inside a foreground run
        runs = np.concatenate(([0], runs))
    part = mask_utils.frPyObjects({"size": [h, x1 - x0], "counts": runs.tolist()}, h, x1 - x0)
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        strip = mask_utils.decode(part).astype(bool)
    y0, y1 = int(box[1]), int(box[1] + box[3])
    return x0, y0, np.ascontiguousarray(strip[y0:y1])


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE."""
    return int(mask_utils.area(_compressed(rle)))


def rle_bbox(rle: dict) -> list[float]:
    """Tight bounding box of an RLE as COCO ``[x, y, w, h]`` (XYWH absolute pixels).

    An empty mask gives ``[0, 0, 0, 0]``.
    """
    return [float(v) for v in mask_utils.toBbox(_compressed(rle))]


def rle_iou(a: dict, b: dict) -> float:
    """Mask IoU of two RLEs of the same size (1.0 for two empty masks)."""
    ra, rb = _compressed(a), _compressed(b)
    union = mask_utils.area(mask_utils.merge([ra, rb], intersect=False))
    if union == 0:
        return 1.0
    inter = mask_utils.area(mask_utils.merge([ra, rb], intersect=True))
    return float(inter) / float(union)
