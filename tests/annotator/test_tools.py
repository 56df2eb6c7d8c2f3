"""annotator.tools without Qt: overlay colours/outlines, hit-testing, review helpers, colours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annotator.tools import colors, overlay, review, selection


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


@dataclass
class Ann:
    id: int
    category_id: int
    rle: dict
    bbox: list
    score: float | None = None
    review_state: str = "predicted"
    source: str = "model"


@dataclass
class Cat:
    id: int
    name: str
    color: str | None = None


# ------------------------------------------------------------------ colours
def test_parse_and_category_colors():
    assert colors.parse_color("#ff8000") == (255, 128, 0)
    assert colors.parse_color("00ff00") == (0, 255, 0)
    assert colors.parse_color((1, 2, 300)) == (1, 2, 255)
    assert colors.parse_color("nope") is None and colors.parse_color(None) is None
    assert colors.category_color(3, "#010203") == (1, 2, 3)
    assert colors.category_color(3) == colors.PALETTE[3]
    assert colors.category_color(3 + len(colors.PALETTE)) == colors.PALETTE[3]
    assert colors.to_hex((255, 0, 16)) == "#ff0010"
    assert colors.category_colors([Cat(1, "a", "#000001")]) == {1: (0, 0, 1)}


# ------------------------------------------------------------------ overlay
def test_decode_masks_roundtrip_and_resize():
    m = _box_mask(20, 30, 5, 4, 15, 10)
    out = overlay.decode_masks([_rle(m)], 20, 30)
    assert out.shape == (1, 20, 30) and out.dtype == bool and np.array_equal(out[0], m)
    assert overlay.decode_masks([], 20, 30).shape == (0, 20, 30)
    big = overlay.decode_masks([_rle(m)], 40, 60)  # other size -> nearest resize
    assert big.shape == (1, 40, 60) and big[0].sum() == 4 * m.sum()
    uncompressed = {"size": [20, 30], "counts": [0, 600]}
    assert overlay.decode_masks([uncompressed], 20, 30).sum() == 600


def test_mask_outline_is_inner_edge():
    m = _box_mask(20, 20, 5, 5, 15, 15)
    edge = overlay.mask_outline(m, 1)
    assert edge[5, 5] and edge[5, 10] and edge[14, 14] and not edge[10, 10]
    assert edge.sum() == 10 * 4 - 4
    assert not (edge & ~m).any()
    thick = overlay.mask_outline(m, 2)
    assert thick[6, 10] and not thick[7, 10]
    border = overlay.mask_outline(np.ones((6, 6), bool), 1)
    assert border[0].all() and not border[2, 2]
    assert not overlay.mask_outline(np.zeros((5, 5), bool)).any()


def test_build_overlay_colours_fill_outline_and_order():
    a = _box_mask(30, 30, 2, 2, 20, 20)
    b = _box_mask(30, 30, 10, 10, 28, 28)
    rgba = overlay.build_overlay(np.stack([a, b]), [(255, 0, 0), (0, 0, 255)],
                                 fill_alpha=0.5, outline_width=1)
    assert rgba.shape == (30, 30, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[5, 5]) == (255, 0, 0, 128)        # fill of a, translucent
    assert tuple(rgba[2, 5]) == (255, 0, 0, 255)        # outline of a, opaque
    assert tuple(rgba[15, 15]) == (0, 0, 255, 128)      # overlap: b on top
    assert tuple(rgba[10, 20]) == (0, 0, 255, 255)      # b's outline
    assert tuple(rgba[0, 0]) == (0, 0, 0, 0)            # nothing
    assert tuple(rgba[29, 29]) == (0, 0, 0, 0)
    hl = overlay.build_overlay(np.stack([a, b]), [(255, 0, 0), (0, 0, 255)], highlight=0,
                               outline_width=1, filled=[True, False])
    assert tuple(hl[2, 5, :3]) == overlay.HIGHLIGHT_COLOR  # selected drawn last, white outline
    assert hl[25, 25, 3] == 0                              # b not filled
    with pytest.raises(ValueError):
        overlay.build_overlay(np.zeros((4, 4), bool), [])


def test_build_layer_hides_rejected_and_labels_scores():
    h, w = 24, 24
    anns = [Ann(1, 5, _rle(_box_mask(h, w, 0, 0, 10, 10)), [0, 0, 10, 10], 0.9),
            Ann(2, 7, _rle(_box_mask(h, w, 5, 5, 20, 20)), [5, 5, 15, 15], 0.4, "rejected"),
            Ann(3, 5, _rle(_box_mask(h, w, 12, 0, 20, 6)), [12, 0, 8, 6], None, "accepted", "human")]
    cats = [Cat(5, "cat", "#ff0000"), Cat(7, "dog", "#00ff00")]
    layer = overlay.build_layer(anns, cats, h, w)
    assert layer.ann_ids == [1, 3] and layer.masks.shape == (2, h, w)
    assert tuple(layer.rgba[5, 5, :3]) == (255, 0, 0)
    assert layer.rgba[15, 15, 3] == 0                    # rejected hidden
    assert [(lab.ann_id, lab.text, lab.x, lab.y) for lab in layer.labels] == [(1, "cat 0.90", 0.0, 0.0)]
    shown = overlay.build_layer(anns, cats, h, w, selected_id=2)
    assert shown.ann_ids == [1, 2, 3]
    assert shown.rgba[15, 15, 3] == 0 and shown.rgba[19, 15, 3] == 255  # outline only
    assert overlay.label_text("x", None) == "x"


# ------------------------------------------------------------------ selection
def test_hit_test_topmost():
    a = _box_mask(10, 10, 0, 0, 6, 6)
    b = _box_mask(10, 10, 3, 3, 9, 9)
    masks = np.stack([a, b])
    assert selection.hit_test(masks, 4.5, 4.2) == 1      # both cover -> last (topmost)
    assert selection.hit_test(masks, 1, 1) == 0
    assert selection.hit_test(masks, 9.5, 0.5) is None
    assert selection.hit_test(masks, -1, 3) is None and selection.hit_test(masks, 3, 10) is None
    assert selection.hit_test(np.zeros((0, 10, 10), bool), 1, 1) is None
    assert selection.hit_test_id(masks, [11, 22], 4, 4) == 22
    assert selection.hit_test_id(masks, [11, 22], 9.9, 0) is None


def test_step_selection():
    assert selection.step_selection([], None, 1) is None
    assert selection.step_selection([4, 5, 6], None, 1) == 4
    assert selection.step_selection([4, 5, 6], None, -1) == 6
    assert selection.step_selection([4, 5, 6], 6, 1) == 4
    assert selection.step_selection([4, 5, 6], 4, -1) == 6


# ------------------------------------------------------------------ review
def test_navigation_helpers():
    cats = [Cat(i, f"c{i}") for i in (10, 20, 30)]
    assert review.category_for_key(cats, 1).id == 10 and review.category_for_key(cats, 3).id == 30
    assert review.category_for_key(cats, 4) is None and review.category_for_key(cats, 0) is None
    assert review.step_image([1, 2, 3], 2, 1) == 3
    assert review.step_image([1, 2, 3], 3, 1) == 3
    assert review.step_image([1, 2, 3], 3, 1, wrap=True) == 1
    assert review.step_image([1, 2, 3], 1, -1) == 1
    assert review.step_image([1, 2, 3], None, -1) == 3
    assert review.step_image([], None, 1) is None
    anns = [Ann(1, 1, {}, [], review_state="accepted"), Ann(2, 1, {}, []), Ann(3, 1, {}, [], review_state="rejected"),
            Ann(4, 1, {}, [])]
    assert review.next_pending(anns, 2) == 4
    assert review.next_pending(anns, 4) == 2
    assert review.next_pending(anns, None) == 2
    assert review.next_pending(anns[:1], 1) is None



def test_mask_cache_decodes_only_changed():
    h, w = 12, 12
    a = Ann(1, 1, _rle(_box_mask(h, w, 0, 0, 4, 4)), [0, 0, 4, 4])
    b = Ann(2, 1, _rle(_box_mask(h, w, 5, 5, 9, 9)), [5, 5, 4, 4])
    cache = overlay.MaskCache()
    first = cache.masks([a, b], h, w)
    assert cache.decoded == 2 and first[1, 6, 6] and not first[0, 6, 6]
    b2 = Ann(2, 1, _rle(_box_mask(h, w, 1, 1, 3, 3)), [1, 1, 2, 2])
    again = cache.masks([a, b2], h, w)
    assert cache.decoded == 3 and again[1, 2, 2] and not again[1, 6, 6]
    assert cache.masks([a], h, w).shape == (1, h, w) and cache.decoded == 3


# ------------------------------------------------------------------ RLE (annotator.masks)
def test_decode_rle_crop_equals_the_box_of_the_full_decode():
    from annotator.masks import decode_rle, decode_rle_crop, rle_counts

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        m = np.zeros((h, w), bool)
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0, h + 1)), int(rng.integers(x0, w + 1))
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
        rle = _rle(m)
        assert np.array_equal(decode_rle(rle), m)
        got = decode_rle_crop(rle)
        if not m.any():
            assert got is None
            continue
        ys, xs = np.nonzero(m)
        assert got[:2] == (xs.min(), ys.min())
        assert np.array_equal(got[2], m[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        counts = rle_counts(rle)[2]  # the same runs as pycocotools' own uncompressed encoding
        assert counts.sum() == h * w
        assert np.array_equal(decode_rle({"size": [h, w], "counts": counts.tolist()}), m)


def test_check_rle_rejects_short_or_malformed_counts():
    from annotator.masks import check_rle, encode_mask

    good = encode_mask(np.ones((4, 5), bool))
    check_rle(good)
    with pytest.raises(ValueError, match="cover 10 pixels"):
        check_rle({"size": [4, 5], "counts": [3, 7]})
    with pytest.raises(ValueError, match="negative"):
        check_rle({"size": [4, 5], "counts": [25, -5]})
    with pytest.raises(ValueError, match="invalid character"):
        check_rle({"size": [4, 5], "counts": "0 1"})
    with pytest.raises(ValueError, match="inside a number"):
        check_rle({"size": [4, 5], "counts": "0o"})  # 'o' = 63: another group should follow
