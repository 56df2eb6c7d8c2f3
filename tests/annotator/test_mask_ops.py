"""annotator.tools.mask_ops and annotator.tools.interaction without Qt: pure mask operations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotator.tools import interaction, mask_ops


def _rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _scene(h=120, w=160):
    """A dark image with a bright disc (the object) and a mid-grey square."""
    img = np.full((h, w, 3), 30, np.uint8)
    cv2.circle(img, (50, 60), 25, (220, 200, 40), -1)
    img[20:50, 100:140] = (120, 120, 120)
    return img


def test_brush_and_eraser_follow_the_stroke():
    m = np.zeros((50, 80), bool)
    stroke = mask_ops.stroke_mask(m.shape, [(10, 10), (60, 10)], 3)
    assert stroke[10, 10:61].all() and stroke[7:14, 35].all() and not stroke[15, 35]
    painted = mask_ops.brush(m, [(10, 10), (60, 10)], 3)
    assert painted.sum() == stroke.sum() and not m.any()             # input untouched
    erased = mask_ops.erase(painted, [(35, 0), (35, 30)], 2)
    assert not erased[10, 34:37].any() and erased[10, 20] and len(mask_ops.split_parts(erased)) == 2


def test_polygon_cut_makes_a_hole_and_fill_holes_closes_it():
    m = _rect(60, 60, 5, 5, 55, 55)
    holed = mask_ops.cut_polygon(m, [(20, 20), (40, 20), (40, 40), (20, 40)])
    assert mask_ops.count_holes(holed) == 1 and not holed[30, 30] and holed[10, 10]
    assert mask_ops.count_holes(m) == 0
    filled = mask_ops.fill_holes(holed)
    assert mask_ops.count_holes(filled) == 0 and np.array_equal(filled, m)
    added = mask_ops.add_polygon(np.zeros((60, 60), bool), [(0, 0), (10, 0), (10, 10), (0, 10)])
    assert added[5, 5] and added.sum() == 100          # the polygon's area: pixels whose centre is inside
    from annotator import masks

    poly = [(3.5, 2.0), (41.2, 7.7), (30.0, 52.3), (8.1, 40.0)]  # drawn and stored masks agree to the pixel
    stored = masks.decode_rle(masks.polygon_to_rle([[v for p in poly for v in p]], 60, 60)).astype(bool)
    assert np.array_equal(mask_ops.polygon_mask((60, 60), poly), stored)
    ring = mask_ops.polygon_mask((60, 60), [(5, 5), (55, 5), (55, 55), (5, 55)], holes=[[(20, 20), (40, 20), (40, 40)]])
    assert mask_ops.count_holes(ring) == 1


def test_merge_subtract_split():
    a, b = _rect(40, 40, 0, 0, 10, 10), _rect(40, 40, 20, 20, 30, 30)
    both = mask_ops.merge(a, b)
    assert both.sum() == 200
    parts = mask_ops.split_parts(both | _rect(40, 40, 35, 0, 37, 2))
    assert [p.sum() for p in parts] == [100, 100, 4]
    assert [p.sum() for p in mask_ops.split_parts(both | _rect(40, 40, 35, 0, 37, 2), min_area=5)] == [100, 100]
    assert mask_ops.subtract(both, a).sum() == 100 and mask_ops.split_parts(np.zeros((3, 3), bool)) == []


def test_magic_wand_grabcut_box_and_refine_find_the_disc():
    img = _scene()
    disc = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(disc, (50, 60), 25, 1, -1)
    disc = disc.astype(bool)
    wand = mask_ops.magic_wand(img, 50, 60, tolerance=10, clean=False)
    assert np.array_equal(wand, disc)
    clean = mask_ops.magic_wand(img, 50, 60, tolerance=10)
    assert (clean & disc).sum() / (clean | disc).sum() > 0.97
    assert not mask_ops.magic_wand(img, -5, 3).any()
    box = mask_ops.grabcut_box(img, (20, 30, 80, 90))
    iou = (box & disc).sum() / (box | disc).sum()
    assert iou > 0.9, iou
    rough = _rect(*img.shape[:2], 30, 40, 70, 80)          # a square roughly over the disc
    refined = mask_ops.grabcut_refine(img, rough, include=mask_ops.stroke_mask(rough.shape, [(50, 60)], 4))
    assert (refined & disc).sum() / (refined | disc).sum() > (rough & disc).sum() / (rough | disc).sum()
    excl = mask_ops.grabcut_refine(img, disc, exclude=_rect(*img.shape[:2], 0, 0, 160, 60))
    assert not excl[:60].any()                              # sure background stays out


def test_polygon_vertex_helpers():
    poly = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]
    assert mask_ops.move_vertex(poly, 0, 2, 20, 20)[0][4:6] == [20.0, 20.0]
    assert len(mask_ops.insert_vertex(poly, 0, 1, 5, -1)[0]) == 10
    assert mask_ops.delete_vertex(poly, 0, 0)[0] == [10.0, 0.0, 10.0, 10.0, 0.0, 10.0]
    assert mask_ops.delete_vertex([[0, 0, 1, 0, 1, 1]], 0, 0) == []
    assert mask_ops.nearest_vertex(poly, 9, 9)[:2] == (0, 2)
    part, index, dist = mask_ops.nearest_edge(poly, 5, 0.5)
    assert (part, index) == (0, 1) and dist == pytest.approx(0.5)


def test_tool_state_machines_emit_edits():
    t = interaction.Tool("brush", radius=4)
    assert t.press(1, 1) is None and t.busy
    t.move(5, 5)
    e = t.release(9, 9)
    assert e.kind == "stroke" and e.points == [(1, 1), (5, 5), (9, 9)] and e.data == {"erase": False, "radius": 4}
    assert t.preview().circles and not t.busy
    p = interaction.Tool("polygon")
    for x, y in [(0, 0), (10, 0), (10, 10)]:
        p.press(x, y, "left", {"shift"})
    assert p.preview().lines
    e = p.key("enter")
    assert e.kind == "polygon" and len(e.points) == 3 and "shift" in e.modifiers
    p.press(0, 0)
    assert p.key("escape") is None and not p.busy
    b = interaction.Tool("box")
    b.press(0, 0)
    b.move(20, 20)
    assert b.preview().rect == (0, 0, 20, 20)
    assert b.release(20, 20).kind == "box"
    r = interaction.Tool("refine")
    r.press(1, 1)
    r.release(2, 2)
    r.press(3, 3, "right")
    r.release(4, 4, "right")
    e = r.key("enter")
    assert e.kind == "refine" and [inc for _, inc in e.data["strokes"]] == [True, False]
    v = interaction.Tool("vertex", polygon=[[0, 0, 40, 0, 40, 40]])
    assert v.press(40.5, 0.5) is None and v.release(45, 5).data == {"part": 0, "index": 1}
    assert v.press(20, 0.5).kind == "insert_vertex"
    assert v.press(0, 0, "left", {"shift"}).kind == "delete_vertex"


def test_magic_wand_cleans_speckles_and_ragged_edges_of_a_jpeg():
    """A red disc on green, with sensor noise (sigma 7) and JPEG compression (quality 70): the raw
    fixed-range fill is speckled with holes and has a ragged outline; the cleaned fill has no
    holes, an outline much closer to the true circle's, and overlaps the disc at least as well."""
    rng = np.random.default_rng(0)
    disc = np.zeros((200, 240), np.uint8)
    cv2.circle(disc, (120, 100), 50, 1, -1)
    img = np.full((200, 240, 3), (90, 140, 60), np.uint8)
    img[disc.astype(bool)] = (200, 80, 70)
    noisy = np.clip(img + rng.normal(0, 7, img.shape), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    truth, true_outline = disc.astype(bool), 2 * np.pi * 50
    found = {}
    for clean in (False, True):
        region = mask_ops.magic_wand(jpeg, 120, 100, tolerance=15, clean=clean)
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        found[clean] = (mask_ops.count_holes(region), sum(cv2.arcLength(c, True) for c in contours) - true_outline,
                        (region & truth).sum() / (region | truth).sum())
    (raw_holes, raw_excess, raw_iou), (holes, excess, iou) = found[False], found[True]
    assert raw_holes > 10 and holes == 0
    assert excess < raw_excess / 2, (excess, raw_excess)
    assert iou >= raw_iou
