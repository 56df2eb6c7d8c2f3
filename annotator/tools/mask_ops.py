"""Mask-native editing operations: pure functions on ``[H, W]`` bool masks at image resolution.

No Qt and no per-pixel Python loops: painting is OpenCV (``cv2.line`` / ``cv2.circle`` /
``cv2.fillPoly``), segmentation is OpenCV GrabCut and flood fill, parts are
``cv2.connectedComponents``. Every function returns a **new** array; inputs are not modified.

Coordinates: ``(x, y)`` image pixels (floats are rounded to the nearest pixel); boxes XYXY
``(x0, y0, x1, y1)`` absolute pixels; images ``[H, W, 3]`` uint8 RGB; polygons a sequence of
``(x, y)`` vertices (one ring).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]

#: GrabCut is run on the box (or mask bbox) plus this margin, in pixels, for speed.
GRABCUT_MARGIN = 16


def _pts(points: Sequence[Point]) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int32)


def stroke_mask(shape: tuple[int, int], points: Sequence[Point], radius: float) -> np.ndarray:
    """The pixels covered by a round brush of ``radius`` dragged through ``points`` (bool [H, W])."""
    h, w = int(shape[0]), int(shape[1])
    canvas = np.zeros((h, w), np.uint8)
    pts = _pts(points)
    r = max(0, int(round(radius)))
    if len(pts) == 0:
        return canvas.astype(bool)
    for x, y in pts:
        cv2.circle(canvas, (int(x), int(y)), r, 1, thickness=-1)
    if len(pts) > 1 and r > 0:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 1, thickness=2 * r + 1, lineType=cv2.LINE_8)
    elif len(pts) > 1:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 1, thickness=1)
    return canvas.astype(bool)


def brush(mask: np.ndarray, points: Sequence[Point], radius: float) -> np.ndarray:
    """``mask`` with a brush stroke through ``points`` painted in (union)."""
    return np.asarray(mask, bool) | stroke_mask(mask.shape, points, radius)


def erase(mask: np.ndarray, points: Sequence[Point], radius: float) -> np.ndarray:
    """``mask`` with a brush stroke through ``points`` removed."""
    return np.asarray(mask, bool) & ~stroke_mask(mask.shape, points, radius)


def polygon_mask(shape: tuple[int, int], polygon: Sequence[Point], holes: Sequence[Sequence[Point]] = ()) -> np.ndarray:
    """Rasterise one polygon ring, minus optional hole rings, into bool [H, W] with pycocotools
    (:func:`annotator.masks.polygon_to_rle`: the rule the store uses for a stored polygon, so a
    drawn polygon and its stored mask agree to the pixel)."""
    from annotator import masks

    h, w = int(shape[0]), int(shape[1])

    def fill(points) -> np.ndarray:
        flat = [float(v) for p in points for v in p]
        if len(flat) < 6:
            return np.zeros((h, w), bool)
        return masks.decode_rle(masks.polygon_to_rle([flat], h, w)).astype(bool)

    out = fill(polygon)
    for hole in holes:
        out &= ~fill(hole)
    return out


def add_polygon(mask: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """``mask`` plus the polygon's area."""
    return np.asarray(mask, bool) | polygon_mask(mask.shape, polygon)


def cut_polygon(mask: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """``mask`` with the polygon's area cut out (a hole when the polygon lies inside the mask)."""
    return np.asarray(mask, bool) & ~polygon_mask(mask.shape, polygon)


def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two masks."""
    return np.asarray(a, bool) | np.asarray(b, bool)


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` without the pixels of ``b``."""
    return np.asarray(a, bool) & ~np.asarray(b, bool)


def split_parts(mask: np.ndarray, *, min_area: int = 1, connectivity: int = 8) -> list[np.ndarray]:
    """The connected parts of a mask (``cv2.connectedComponents``), largest first; parts smaller
    than ``min_area`` pixels are dropped."""
    n, labels = cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=connectivity)
    if n <= 1:
        return []
    areas = np.bincount(labels.ravel(), minlength=n)[1:]
    order = [int(i) + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area]
    return [labels == k for k in order]


def count_holes(mask: np.ndarray) -> int:
    """Number of holes: background components not connected (4-connectivity) to the image border."""
    inv = np.pad(~np.asarray(mask, bool), 1, constant_values=True).astype(np.uint8)
    n, _ = cv2.connectedComponents(inv, connectivity=4)
    return max(0, n - 2)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every hole filled (background not reachable from the border becomes mask)."""
    m = np.pad(np.asarray(mask, np.uint8), 1)
    flood = m.copy()
    ff = np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 1, flags=4)
    holes = flood == 0
    return (m.astype(bool) | holes)[1:-1, 1:-1]


def magic_wand(image: np.ndarray, x: float, y: float, tolerance: float = 20.0, *, connectivity: int = 4,
               clean: bool = True) -> np.ndarray:
    """Pixels connected to ``(x, y)`` whose colour is within ``tolerance`` (per channel, 0..255)
    of the seed pixel (``cv2.floodFill``, fixed range). Outside the image: an empty mask.

    ``clean`` (default): the speckles that sensor noise and JPEG blocks leave in a fixed-range
    fill are removed: a morphological close then open with a 3 x 3 ellipse (a hard edge stays
    where it is), only the part holding the seed is kept, and holes smaller than
    :data:`WAND_MAX_HOLE` of the region's area are filled. ``clean=False`` gives the raw fill.
    """
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    xi, yi = int(np.floor(x)), int(np.floor(y))
    out = np.zeros((h + 2, w + 2), np.uint8)
    if not (0 <= xi < w and 0 <= yi < h):
        return np.zeros((h, w), bool)
    t = float(max(0.0, tolerance))
    diff = (t, t, t) if img.ndim == 3 else t
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    cv2.floodFill(img.copy(), out, (xi, yi), 0, diff, diff, flags)
    region = out[1:-1, 1:-1]
    if not clean:
        return region.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    region = cv2.morphologyEx(cv2.morphologyEx(region, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel)
    n, labels = cv2.connectedComponents(region, connectivity=8)
    if n <= 1 or labels[yi, xi] == 0:   # the open removed a hairline seed region: keep the raw fill
        return out[1:-1, 1:-1].astype(bool)
    region = labels == labels[yi, xi]
    holes = fill_holes(region) & ~region
    if holes.any():
        n, labels = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
        areas = np.bincount(labels.ravel(), minlength=n)
        small = np.flatnonzero(areas < WAND_MAX_HOLE * region.sum())
        region |= np.isin(labels, small[small > 0])
    return region


#: Holes smaller than this share of the wand region's area are filled by ``magic_wand(clean=True)``.
WAND_MAX_HOLE = 0.01


def _roi(h: int, w: int, x0: float, y0: float, x1: float, y1: float, margin: int) -> tuple[int, int, int, int]:
    return (max(0, int(np.floor(min(x0, x1))) - margin), max(0, int(np.floor(min(y0, y1))) - margin),
            min(w, int(np.ceil(max(x0, x1))) + 1 + margin), min(h, int(np.ceil(max(y0, y1))) + 1 + margin))


def grabcut_box(image: np.ndarray, box: Sequence[float], *, iterations: int = 3, seed: int = 0) -> np.ndarray:
    """Foreground inside ``box`` (XYXY) by OpenCV GrabCut (``GC_INIT_WITH_RECT``): the fallback
    box-to-mask when no model mask head is available. Returns bool [H, W] (empty for a box
    under 2 px). GrabCut runs on the box plus :data:`GRABCUT_MARGIN` only."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    out = np.zeros((h, w), bool)
    x0, y0, x1, y1 = (float(v) for v in box)
    bx0, by0 = max(0, int(round(min(x0, x1)))), max(0, int(round(min(y0, y1))))
    bx1, by1 = min(w, int(round(max(x0, x1)))), min(h, int(round(max(y0, y1))))
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return out
    rx0, ry0, rx1, ry1 = _roi(h, w, bx0, by0, bx1, by1, GRABCUT_MARGIN)
    crop = img[ry0:ry1, rx0:rx1]
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    gc = np.zeros(crop.shape[:2], np.uint8)
    rect = (bx0 - rx0, by0 - ry0, bx1 - bx0, by1 - by0)
    if rect[0] == 0 and rect[1] == 0 and rect[2] == crop.shape[1] and rect[3] == crop.shape[0]:
        rect = (1, 1, max(1, rect[2] - 2), max(1, rect[3] - 2))   # GrabCut needs some background
    cv2.setRNGSeed(seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, gc, rect, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_RECT)
    except cv2.error:   # degenerate colour model (e.g. a flat image): keep the box itself
        out[by0:by1, bx0:bx1] = True
        return out
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    out[ry0:ry1, rx0:rx1] = fg
    return out


def grabcut_refine(image: np.ndarray, mask: np.ndarray, include: np.ndarray | None = None,
                   exclude: np.ndarray | None = None, *, iterations: int = 3, band: int = 15,
                   seed: int = 0) -> np.ndarray:
    """Refine ``mask`` with GrabCut (``GC_INIT_WITH_MASK``): the mask is probable foreground,
    a ``band``-pixel ring around it probable background, farther away sure background;
    ``include`` strokes are sure foreground, ``exclude`` strokes sure background. Only the
    region around the mask and the strokes is processed. Returns bool [H, W]."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    mask = np.asarray(mask, bool)
    inc = np.zeros((h, w), bool) if include is None else np.asarray(include, bool)
    exc = np.zeros((h, w), bool) if exclude is None else np.asarray(exclude, bool)
    region = mask | inc
    if not region.any():
        return mask.copy()
    ys, xs = np.nonzero(region)
    rx0, ry0, rx1, ry1 = _roi(h, w, xs.min(), ys.min(), xs.max(), ys.max(), band + GRABCUT_MARGIN)
    sl = (slice(ry0, ry1), slice(rx0, rx1))
    m, i_, e_ = mask[sl], inc[sl], exc[sl]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near = cv2.dilate((m | i_).astype(np.uint8), kernel).astype(bool)
    gc = np.full(m.shape, cv2.GC_BGD, np.uint8)
    gc[near] = cv2.GC_PR_BGD
    gc[m] = cv2.GC_PR_FGD
    gc[i_] = cv2.GC_FGD
    gc[e_] = cv2.GC_BGD
    out = mask.copy()
    if not ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).any() or not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
        out[sl] = (m | i_) & ~e_
        return out
    bgr = cv2.cvtColor(np.ascontiguousarray(img[sl]), cv2.COLOR_RGB2BGR)
    cv2.setRNGSeed(seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, gc, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
        fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    except cv2.error:
        fg = (m | i_) & ~e_
    out[sl] = fg
    return out


# ------------------------------------------------------------------ polygon vertices
def move_vertex(polygon: list[list[float]], part: int, index: int, x: float, y: float) -> list[list[float]]:
    """COCO polygon (``[[x1, y1, ...], ...]``) with vertex ``index`` of ``part`` moved to ``(x, y)``."""
    out = [list(p) for p in polygon]
    out[part][2 * index:2 * index + 2] = [float(x), float(y)]
    return out


def insert_vertex(polygon: list[list[float]], part: int, index: int, x: float, y: float) -> list[list[float]]:
    """COCO polygon with a new vertex ``(x, y)`` inserted before vertex ``index`` of ``part``."""
    out = [list(p) for p in polygon]
    out[part][2 * index:2 * index] = [float(x), float(y)]
    return out


def delete_vertex(polygon: list[list[float]], part: int, index: int) -> list[list[float]]:
    """COCO polygon without vertex ``index`` of ``part``; a part left with < 3 vertices is dropped."""
    out = [list(p) for p in polygon]
    del out[part][2 * index:2 * index + 2]
    return [p for p in out if len(p) >= 6]


def nearest_vertex(polygon: list[list[float]], x: float, y: float) -> tuple[int, int, float] | None:
    """``(part, index, distance)`` of the polygon vertex closest to ``(x, y)``, or None."""
    best = None
    for k, part in enumerate(polygon):
        pts = np.asarray(part, np.float64).reshape(-1, 2)
        if len(pts) == 0:
            continue
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        i = int(np.argmin(d))
        if best is None or d[i] < best[2]:
            best = (k, i, float(d[i]))
    return best


def nearest_edge(polygon: list[list[float]], x: float, y: float) -> tuple[int, int, float] | None:
    """``(part, index, distance)`` of the closest edge; inserting at ``index`` splits that edge
    (the edge from vertex ``index - 1`` to vertex ``index``, wrapping)."""
    best = None
    p = np.array([x, y], np.float64)
    for k, part in enumerate(polygon):
        pts = np.asarray(part, np.float64).reshape(-1, 2)
        if len(pts) < 2:
            continue
        a, b = np.roll(pts, 1, axis=0), pts
        ab = b - a
        t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
        d = np.hypot(*(a + t[:, None] * ab - p).T)
        i = int(np.argmin(d))
        if best is None or d[i] < best[2]:
            best = (k, i, float(d[i]))
    return best
