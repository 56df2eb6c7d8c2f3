"""Tiled canvas: the right pixels at two zoom levels on a synthetic image bigger than a tile,
instance boxes drawn from per-instance sprites, a preview replaced by the full pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.tools import tiles
from annotator.tools.overlay import Sprite
from annotator.ui.canvas import Canvas

pytestmark = pytest.mark.gui


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.show()
    return c


def _quadrants(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, : w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 0)
    return img


def _at(canvas, x: float, y: float) -> tuple:
    """RGB of the rendered viewport at image pixel (x, y)."""
    img = canvas.viewport().grab().toImage()
    p = canvas.mapFromScene(x, y)
    return img.pixelColor(p.x(), p.y()).getRgb()[:3]


def test_two_zoom_levels_show_the_right_pixels(canvas):
    h, w = 1500, 2100                                   # several 512 tiles, 4 pyramid levels
    canvas.set_image(_quadrants(h, w))
    assert canvas.image_size() == (h, w)
    item = canvas._image_item
    assert len(item.levels) == len(tiles.build_pyramid(np.zeros((h, w, 3), np.uint8)))
    for zoom in (canvas.zoom_factor(), 2.0):            # fitted (coarse level), then level 0
        canvas.set_zoom(zoom)
        for (x, y), rgb in (((300, 300), (255, 0, 0)), ((1800, 300), (0, 255, 0)),
                            ((300, 1200), (0, 0, 255)), ((1800, 1200), (255, 255, 0))):
            canvas.centerOn(x, y)
            assert _at(canvas, x, y) == rgb, (zoom, x, y)
    canvas.set_zoom(2.0)
    before = item.tiles_made
    canvas.centerOn(1000, 700)
    canvas.viewport().grab()
    assert 0 < item.tiles_made - before <= 4             # only the visible level-0 tiles made
    assert tiles.level_for_scale(2.0, 4) == 0 and tiles.level_for_scale(0.2, 4) == 2


def test_sprites_preview_and_full_pyramid(canvas):
    img = _quadrants(800, 800)
    canvas.set_image(img[::4, ::4].copy(), factor=4)   # preview: drawn at full size
    assert canvas.image_size() == (800, 800)
    canvas.fit()
    assert _at(canvas, 600, 600) == (255, 255, 0)
    canvas.set_pyramid(tiles.build_pyramid(img))
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[...] = (255, 255, 255, 255)
    a, b = Sprite(100, 100, rgba), Sprite(500, 120, rgba.copy())
    canvas.set_instances([a, b])
    assert canvas.sprite_count() == 2
    items = dict(canvas._sprite_items)
    canvas.set_instances([b, a])                        # reordered: the same items, new z
    assert canvas._sprite_items[id(a)] is items[id(a)]
    canvas.set_zoom(1.0)
    canvas.centerOn(120, 110)
    assert _at(canvas, 120, 110) == (255, 255, 255)
    assert _at(canvas, 90, 90) == (255, 0, 0)
    assert canvas.overlay_image().pixelColor(510, 130).getRgb() == (255, 255, 255, 255)
    canvas.set_instances([])
    assert canvas.sprite_count() == 0 and canvas.overlay_image().isNull()
