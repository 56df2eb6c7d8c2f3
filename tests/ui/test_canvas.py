"""Canvas widget offscreen: image + overlay display, zoom, click -> image coordinates, pan."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from annotator.tools.overlay import Label
from annotator.ui.canvas import Canvas, rgb_to_qimage, rgba_to_qimage

pytestmark = pytest.mark.gui


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    c.resize(400, 300)
    qtbot.addWidget(c)
    c.show()
    qtbot.waitExposed(c)
    return c


def test_numpy_to_qimage_keeps_pixels():
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[2, 3] = (10, 20, 30)
    img = rgb_to_qimage(rgb)
    assert (img.width(), img.height()) == (7, 5)
    assert img.pixelColor(3, 2).getRgb()[:3] == (10, 20, 30)
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[1, 1] = (255, 0, 0, 200)
    assert rgba_to_qimage(rgba).pixelColor(1, 1).getRgb() == (255, 0, 0, 200)


def test_image_overlay_labels_and_fit(canvas):
    canvas.set_image(np.full((100, 200, 3), 128, np.uint8))
    assert canvas.image_size() == (100, 200)
    fitted = canvas.zoom_factor()
    assert 0 < fitted <= 2.0
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[10:20, 10:20] = (0, 255, 0, 100)
    canvas.set_overlay(rgba, [Label(1, 10, 10, "cat 0.50", (0, 255, 0))])
    assert canvas.label_texts() == ["cat 0.50"]
    assert canvas.overlay_image().pixelColor(15, 15).getRgb() == (0, 255, 0, 100)
    canvas.set_overlay(None)
    assert canvas.label_texts() == [] and canvas.overlay_image().isNull()
    canvas.set_image(None)
    assert canvas.image_size() == (0, 0)


def test_zoom_in_out_fit_and_wheel(canvas, qtbot):
    canvas.set_image(np.zeros((60, 80, 3), np.uint8))
    base = canvas.zoom_factor()
    canvas.zoom_in()
    assert canvas.zoom_factor() == pytest.approx(base * 1.25)
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.zoom_factor() == pytest.approx(base / 1.25)
    canvas.set_zoom(1000)
    assert canvas.zoom_factor() == pytest.approx(64.0)
    assert canvas.horizontalScrollBar().maximum() > 0      # scroll bars when zoomed in
    canvas.fit()
    assert canvas.zoom_factor() == pytest.approx(base)


def test_click_emits_image_coordinates_and_middle_drag_pans(canvas, qtbot):
    canvas.set_image(np.zeros((100, 100, 3), np.uint8))
    canvas.set_zoom(8.0)
    canvas.horizontalScrollBar().setValue(0)
    canvas.verticalScrollBar().setValue(0)
    view_pt = canvas.mapFromScene(30.5, 40.5)
    with qtbot.waitSignal(canvas.clicked, timeout=1000) as blocker:
        qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=view_pt)
    x, y = blocker.args
    assert abs(x - 30.5) <= 1 and abs(y - 40.5) <= 1
    h0 = canvas.horizontalScrollBar().value()
    qtbot.mousePress(canvas.viewport(), Qt.MiddleButton, pos=QPoint(150, 150))
    move = QMouseEvent(QEvent.MouseMove, QPointF(100, 150), QPointF(100, 150), Qt.NoButton,
                       Qt.MiddleButton, Qt.NoModifier)
    QApplication.sendEvent(canvas.viewport(), move)   # QTest.mouseMove carries no buttons
    qtbot.mouseRelease(canvas.viewport(), Qt.MiddleButton, pos=QPoint(100, 150))
    assert canvas.horizontalScrollBar().value() > h0
