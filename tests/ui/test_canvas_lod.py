"""Canvas level of detail: zoomed out, the instances come from one composite image and crowded
score labels are hidden; zoomed in, the per-instance items draw them; the idle prefetch makes
the zoomed-out images ahead; instance sprites keep build_overlay's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.tools import overlay
from annotator.tools.overlay import Label, crops_from_masks, instance_sprite
from annotator.ui.canvas import Canvas

pytestmark = pytest.mark.gui

H = W = 3000
RED = (255, 0, 0)


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.show()
    return c


def _at(canvas, x: float, y: float) -> tuple:
    img = canvas.viewport().grab().toImage()
    p = canvas.mapFromScene(x, y)
    return img.pixelColor(p.x(), p.y()).getRgb()[:3]


def _squares(n: int = 40, side: int = 200) -> tuple[list, list]:
    """``n`` filled squares on a grid (crops), one label each."""
    crops, labels = [], []
    for i in range(n):
        x0, y0 = 100 + (i % 8) * 350, 100 + (i // 8) * 500
        m = np.zeros((side, side), bool)
        m[...] = True
        crops.append(overlay.Crop(x0, y0, m))
        labels.append(Label(i, x0, y0, f"cell 0.{i:02d}", RED))
    return crops, labels


def test_composite_when_zoomed_out_items_when_zoomed_in(canvas, qtbot):
    canvas.set_image(np.zeros((H, W, 3), np.uint8))
    crops, labels = _squares()
    sprites = [instance_sprite(c, RED, H, W) for c in crops]
    canvas.set_instances(sprites, labels)
    canvas.fit()                                        # ~0.1: pyramid level 3
    canvas.viewport().repaint()
    assert canvas.composite_shown() and not canvas.labels_shown()
    assert canvas.label_texts() == [lab.text for lab in labels]     # kept, only not drawn
    fill = _at(canvas, 200, 200)                        # inside the first square: red at 40 %
    assert fill[0] > 60 and fill[1] == fill[2] == 0
    assert _at(canvas, 2900, 2900) == (0, 0, 0)         # no instance there
    qtbot.waitUntil(lambda: not canvas.prefetch_pending(), timeout=5000)
    assert canvas._composite.ready(2)                   # zoom-in target made ahead
    canvas.set_zoom(1.0)
    canvas.centerOn(200, 200)
    assert not canvas.composite_shown() and canvas.labels_shown()
    assert _at(canvas, 200, 200) == (102, 0, 0)         # level 0: 0.4 * 255 over black
    assert _at(canvas, 101, 150) == RED                 # opaque outline


def test_selection_change_rebuilds_the_composite(canvas):
    canvas.set_image(np.zeros((H, W, 3), np.uint8))
    crops, _ = _squares(4)
    canvas.set_instances([instance_sprite(c, RED, H, W) for c in crops])
    canvas.fit()
    canvas.viewport().repaint()
    made = canvas._composite.composites_made
    sel = [instance_sprite(c, RED, H, W, highlight=i == 0) for i, c in enumerate(crops)]
    canvas.set_instances(sel[1:] + sel[:1])
    canvas.viewport().repaint()
    assert canvas._composite.composites_made > made
    img = canvas.viewport().grab().toImage()
    p = canvas.mapFromScene(101, 200)                   # the highlighted square's left edge
    assert any(img.pixelColor(p.x() + dx, p.y()).getRgb()[:3] == (255, 255, 255) for dx in (-1, 0, 1))


def test_few_labels_stay_shown_when_fitted(canvas):
    canvas.set_image(np.zeros((400, 600, 3), np.uint8))
    crops, labels = _squares(1, 50)
    canvas.set_instances([instance_sprite(crops[0], RED, 400, 600)], labels)
    canvas.fit()
    assert canvas.labels_shown() and not canvas.composite_shown()


@pytest.mark.parametrize("highlight, filled, width", [(False, True, 2), (True, True, 2), (True, False, 1),
                                                      (False, True, 0)])
def test_instance_sprite_pixels_equal_build_overlay(highlight, filled, width):
    rng = np.random.default_rng(3)
    m = np.zeros((60, 80), bool)
    m[5:40, 0:50] = rng.random((35, 50)) > 0.2          # ragged, touching the left border
    crop = crops_from_masks(m[None])[0]
    sp = instance_sprite(crop, (10, 200, 30), 60, 80, outline_width=width, filled=filled, highlight=highlight)
    ref = overlay.build_overlay(m[None], [(10, 200, 30)], outline_width=width, highlight=0 if highlight else None,
                                filled=[filled])
    got = overlay.compose_sprites([sp], 60, 80)
    assert np.array_equal(got[got[..., 3] > 0], ref[got[..., 3] > 0])
    assert np.array_equal(got[..., 3] > 0, ref[..., 3] > 0)
    for level in (1, 2):                                 # reduced boxes: on the level grid, premultiplied
        X, Y, words = sp.argb32_at(level)
        assert words.dtype == np.uint32 and words.ndim == 2
        assert (X, Y) == (crop.x0 >> level, crop.y0 >> level)
        a = words >> 24
        assert (((words >> 16) & 255) <= a).all()
