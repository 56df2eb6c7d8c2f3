"""Image canvas: a QGraphicsView showing one image, its RGBA mask overlay and score labels.

Zoom: mouse wheel (around the cursor), :meth:`Canvas.zoom_in` / :meth:`Canvas.zoom_out`
(``+`` / ``-`` in the window), :meth:`Canvas.fit` (``F``). Pan: drag with the middle button,
or hold Space and drag with the left button; scroll bars appear when zoomed in.
A left click (without drag) emits :attr:`Canvas.clicked` with image pixel coordinates.
With :attr:`Canvas.tool_mode` on (an editing tool is active) the mouse goes to the tool
instead: ``tool_pressed(x, y, button, modifiers)``, ``tool_moved(x, y)``,
``tool_released(x, y, button)``, ``tool_double_clicked(x, y)`` (image pixels; button
``"left"``/``"right"``; modifiers a frozenset of ``"shift"``, ``"ctrl"``, ``"alt"``), and
Enter emits ``tool_key("enter")``. :meth:`Canvas.set_preview` draws the gesture in progress.
The canvas holds no annotation logic: the window hands it arrays built by
:mod:`annotator.tools.overlay`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene,
    QGraphicsSimpleTextItem, QGraphicsView,
)

ZOOM_STEP = 1.25
ZOOM_MIN, ZOOM_MAX = 0.02, 64.0


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """``[H, W, 3]`` uint8 RGB -> QImage (a deep copy: the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """``[H, W, 4]`` uint8 straight-alpha RGBA -> QImage (deep copy)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()


class Canvas(QGraphicsView):
    """Shows an image with a mask overlay; emits ``clicked(x, y)`` in image pixels."""

    clicked = Signal(float, float)
    zoom_changed = Signal(float)
    tool_pressed = Signal(float, float, str, object)
    tool_moved = Signal(float, float)
    tool_released = Signal(float, float, str)
    tool_double_clicked = Signal(float, float)
    tool_key = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.SmoothPixmapTransform, False)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.setBackgroundBrush(QBrush(QColor(40, 40, 40)))
        self.setFocusPolicy(Qt.StrongFocus)
        self._image_item = QGraphicsPixmapItem()
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setZValue(1)
        self.scene().addItem(self._image_item)
        self.scene().addItem(self._overlay_item)
        self._label_items: list[QGraphicsSimpleTextItem] = []
        self._space = False
        self._pan_from: QPoint | None = None
        self._press_pos: QPoint | None = None
        self._fit_mode = True
        self.tool_mode = False
        self._tool_button: str | None = None
        self._preview_items: list = []
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)

    # ---- tool preview ----------------------------------------------------------------------
    def set_preview(self, preview) -> None:
        """Draw a tool preview (``annotator.tools.interaction.Preview``: lines, circles, rect in
        image pixels); ``None`` clears it."""
        for item in self._preview_items:
            self.scene().removeItem(item)
        self._preview_items = []
        if preview is None:
            return

        def add(path: QPainterPath, rgb) -> None:
            pen = QPen(QColor(*rgb))
            pen.setCosmetic(True)
            pen.setWidth(2)
            item = QGraphicsPathItem(path)
            item.setPen(pen)
            item.setZValue(3)
            self.scene().addItem(item)
            self._preview_items.append(item)

        for pts, closed, rgb in preview.lines:
            if not pts:
                continue
            path = QPainterPath(QPointF(*pts[0]))
            for p in pts[1:]:
                path.lineTo(QPointF(*p))
            if closed:
                path.closeSubpath()
            add(path, rgb)
        for x, y, r, rgb in preview.circles:
            path = QPainterPath()
            path.addEllipse(QPointF(x, y), r, r)
            add(path, rgb)
        if preview.rect is not None:
            x0, y0, x1, y1 = preview.rect
            path = QPainterPath()
            path.addRect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
            add(path, (255, 255, 0))

    def preview_item_count(self) -> int:
        return len(self._preview_items)

    @staticmethod
    def _mods(event) -> frozenset:
        m = event.modifiers()
        return frozenset(name for name, flag in (("shift", Qt.ShiftModifier), ("ctrl", Qt.ControlModifier),
                                                 ("alt", Qt.AltModifier)) if m & flag)

    def _scene_xy(self, event) -> tuple[float, float]:
        p = self.mapToScene(event.position().toPoint())
        return float(p.x()), float(p.y())

    # ---- content -------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray | None) -> None:
        """Show ``[H, W, 3]`` uint8 RGB (``None`` clears); resets zoom to fit."""
        self.set_overlay(None)
        if rgb is None:
            self._image_item.setPixmap(QPixmap())
            self.scene().setSceneRect(0, 0, 1, 1)
            return
        pix = QPixmap.fromImage(rgb_to_qimage(rgb))
        self._image_item.setPixmap(pix)
        self.scene().setSceneRect(0, 0, pix.width(), pix.height())
        self.fit()

    def set_overlay(self, rgba: np.ndarray | None, labels: Sequence = ()) -> None:
        """Show an ``[H, W, 4]`` RGBA overlay and labels (objects with ``x``, ``y`` image
        pixels, ``text``, ``color`` RGB), replacing the previous ones."""
        for item in self._label_items:
            self.scene().removeItem(item.parentItem())
        self._label_items = []
        self._overlay_item.setPixmap(QPixmap() if rgba is None else QPixmap.fromImage(rgba_to_qimage(rgba)))
        font = QFont()
        font.setBold(True)
        for lab in labels:
            item = QGraphicsSimpleTextItem(lab.text)
            item.setFont(font)
            item.setBrush(QBrush(QColor(*lab.color)))
            back = QGraphicsRectItem(item.boundingRect().adjusted(-2, 0, 2, 0))  # readable on any image
            back.setBrush(QBrush(QColor(0, 0, 0, 160)))
            back.setPen(Qt.NoPen)
            back.setFlag(QGraphicsItem.ItemIgnoresTransformations, True)
            back.setPos(QPointF(lab.x, lab.y))
            back.setZValue(2)
            item.setParentItem(back)
            self.scene().addItem(back)
            self._label_items.append(item)

    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the shown image, ``(0, 0)`` if none."""
        pix = self._image_item.pixmap()
        return (pix.height(), pix.width())

    def label_texts(self) -> list[str]:
        """Texts of the labels shown (for tests and accessibility)."""
        return [item.text() for item in self._label_items]

    def overlay_image(self) -> QImage:
        """The overlay as a QImage (empty if none)."""
        return self._overlay_item.pixmap().toImage()

    # ---- zoom ----------------------------------------------------------------------------
    def zoom_factor(self) -> float:
        """Current scale, view pixels per image pixel."""
        return float(self.transform().m11())

    def set_zoom(self, factor: float) -> None:
        """Set the absolute scale (clamped to [0.02, 64])."""
        factor = float(np.clip(factor, ZOOM_MIN, ZOOM_MAX))
        self._fit_mode = False
        self.resetTransform()
        self.scale(factor, factor)
        self.zoom_changed.emit(factor)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom_factor() * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom_factor() / ZOOM_STEP)

    def fit(self) -> None:
        """Scale so the whole image fits the view (keeps aspect ratio); stays fitted on resize."""
        h, w = self.image_size()
        if h and w:
            self.fitInView(self._image_item, Qt.KeepAspectRatio)
        self._fit_mode = True
        self.zoom_changed.emit(self.zoom_factor())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        dy = event.angleDelta().y()
        if dy:
            self.set_zoom(self.zoom_factor() * (ZOOM_STEP if dy > 0 else 1 / ZOOM_STEP))
        event.accept()

    # ---- pan / click ---------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:  # noqa: N802
        if self.tool_mode and event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.tool_key.emit("enter")
            event.accept()
            return
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().unsetCursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position().toPoint()
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space):
            self._pan_from = pos
            self.viewport().setCursor(Qt.ClosedHandCursor)
        elif self.tool_mode and event.button() in (Qt.LeftButton, Qt.RightButton):
            self._tool_button = "left" if event.button() == Qt.LeftButton else "right"
            self.tool_pressed.emit(*self._scene_xy(event), self._tool_button, self._mods(event))
        elif event.button() == Qt.LeftButton:
            self._press_pos = pos
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            pos = event.position().toPoint()
            delta = pos - self._pan_from
            self._pan_from = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
        elif self.tool_mode:
            self.tool_moved.emit(*self._scene_xy(event))
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if self.tool_mode and event.button() == Qt.LeftButton:
            self.tool_double_clicked.emit(*self._scene_xy(event))
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        pos = event.position().toPoint()
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
        elif self._tool_button is not None:
            button, self._tool_button = self._tool_button, None
            self.tool_released.emit(*self._scene_xy(event), button)
        elif event.button() == Qt.LeftButton and self._press_pos is not None:
            moved = (pos - self._press_pos).manhattanLength()
            self._press_pos = None
            if moved <= 4:
                p = self.mapToScene(pos)
                self.clicked.emit(float(p.x()), float(p.y()))
        event.accept()
