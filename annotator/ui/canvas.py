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

Drawing stays proportional to what is visible, whatever the image size: the image is a
:class:`TiledImageItem` painting :data:`~annotator.tools.tiles.TILE`-pixel tiles of the pyramid
level matching the view scale (:mod:`annotator.tools.tiles`; tile pixmaps made on first use,
kept in an LRU cache), and each instance is a :class:`SpriteItem` at its box, drawing a cached
premultiplied image (reduced copies when zoomed out, made straight from the mask).
:meth:`Canvas.set_instances` reuses the items of unchanged sprites, so a selection change
re-makes two boxes, not the image-size overlay.

Level of detail, so zoomed-out views do not draw hundreds of items: at pyramid level
:data:`COMPOSITE_MIN_LEVEL` and coarser (and at least the level where the image's longer side is
<= :data:`COMPOSITE_MAX_SIDE`), the instances are drawn from one :class:`CompositeItem` (all
reduced boxes painted into one image per level, remade when the instances change) instead of
the per-instance items; score labels are hidden while they would cover more than
:data:`LABEL_MAX_COVER` of the image on screen (:meth:`Canvas.labels_shown`). After
:meth:`Canvas.set_instances`, an idle prefetch (slices of a few ms on the GUI thread, while it
has nothing else to do) makes the zoomed-out images ahead (:meth:`Canvas.prefetch_pending`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene,
    QGraphicsSimpleTextItem, QGraphicsView, QStyleOptionGraphicsItem,
)

from annotator.tools import tiles
from annotator.tools.overlay import Sprite, compose_sprites

ZOOM_STEP = 1.25
ZOOM_MIN, ZOOM_MAX = 0.02, 64.0
#: Coarsest pyramid level drawn by the per-instance items (a box reduced by 8 at most).
SPRITE_MAX_LEVEL = 3
#: The composite overlay replaces the per-instance items from this level (scale < 1/4) ...
COMPOSITE_MIN_LEVEL = 2
#: ... and only where its pixmap's longer side is at most this (memory bound on huge images).
COMPOSITE_MAX_SIDE = 2048
#: Screen area of one score label (px^2, estimate) and the share of the image on screen
#: labels may cover before they are hidden (zoomed out over many instances they only clutter).
LABEL_AREA, LABEL_MAX_COVER = 90 * 16, 0.25


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


def _view_scale(painter: QPainter) -> float:
    return float(QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform()))


class TiledImageItem(QGraphicsItem):
    """The image as a pyramid of tiles; a paint draws only the exposed tiles of one level."""

    CACHE_TILES = 96      # ~96 MiB of 512 x 512 pixmaps

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption, True)
        self.levels: list[np.ndarray] = []
        self._size = (0, 0)
        self._cache: OrderedDict = OrderedDict()
        self.tiles_made = 0   # tile pixmaps created so far (tests / profiling)

    def set_levels(self, levels: list, size: tuple[int, int] | None = None) -> None:
        """Pyramid levels (``None`` for a level not loaded yet: the next coarser one is drawn);
        ``size``: level-0 ``(H, W)``, default ``levels[0]``'s."""
        self.prepareGeometryChange()
        self.levels = levels
        self._size = size if size is not None else levels[0].shape[:2] if levels else (0, 0)
        self._cache.clear()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(0, 0, self._size[1], self._size[0])

    def tile_pixmap(self, level: int, tx: int, ty: int) -> QPixmap:
        key = (level, tx, ty)
        pix = self._cache.get(key)
        if pix is None:
            arr = np.ascontiguousarray(tiles.tile_array(self.levels, level, tx, ty))
            pix = QPixmap.fromImage(QImage(arr.data, arr.shape[1], arr.shape[0], 3 * arr.shape[1],
                                           QImage.Format_RGB888))      # fromImage copies
            self.tiles_made += 1
            self._cache[key] = pix
            while len(self._cache) > self.CACHE_TILES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return pix

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if not self.levels:
            return
        level = tiles.level_for_scale(_view_scale(painter), len(self.levels))
        while self.levels[level] is None:       # preview only: draw the first level loaded
            level += 1
        r = option.exposedRect
        h, w = self._size
        for tx, ty in tiles.visible_tiles((r.left(), r.top(), r.right(), r.bottom()), level, h, w):
            pix = self.tile_pixmap(level, tx, ty)
            x, y, tw, th = tiles.tile_rect(level, tx, ty, (pix.height(), pix.width()))
            painter.drawPixmap(QRectF(x, y, tw, th), pix, QRectF(pix.rect()))


class _Group(QGraphicsItem):
    """An invisible parent: hiding it hides all its children at once."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.ItemHasNoContents, True)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        pass


def _argb_image(words: np.ndarray) -> QImage:
    """A QImage over ``[h, w]`` uint32 premultiplied ARGB words (no copy: keep ``words`` alive)."""
    h, w = words.shape
    return QImage(words.data, w, h, 4 * w, QImage.Format_ARGB32_Premultiplied)


class SpriteItem(QGraphicsItem):
    """One instance's overlay box at its image position; images made on first paint (or by the
    canvas's idle prefetch), one per power-of-two reduction used (zoomed out, a paint draws a
    small image made straight from the mask: :meth:`~annotator.tools.overlay.Sprite.argb32_at`),
    in the raster painter's native premultiplied format."""

    MARGIN = 1 << SPRITE_MAX_LEVEL      # a reduced box lies on the level grid: up to f-1 px outside

    def __init__(self, sprite: Sprite) -> None:
        super().__init__()
        self.sprite = sprite
        self._h, self._w = sprite.shape
        m = self.MARGIN
        self._rect = QRectF(-m, -m, self._w + 2 * m, self._h + 2 * m)
        self._images: dict[int, tuple[QRectF, QImage, np.ndarray]] = {}
        self.setPos(sprite.x0, sprite.y0)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect

    def level_for(self, scale: float) -> int:
        return min(SPRITE_MAX_LEVEL, tiles.level_for_scale(scale, max(self._h, self._w).bit_length()))

    def prepare(self, level: int) -> tuple[QRectF, QImage, np.ndarray]:
        """The image drawn at ``level`` (made now if needed): ``(target rect, image, words)``."""
        got = self._images.get(level)
        if got is None:
            X, Y, words = self.sprite.argb32_at(level)
            f = 1 << level
            rect = QRectF(X * f - self.sprite.x0, Y * f - self.sprite.y0, words.shape[1] * f, words.shape[0] * f)
            got = self._images[level] = (rect, _argb_image(words), words)
        return got

    def paint(self, painter: QPainter, option, widget=None) -> None:
        rect, img, _ = self.prepare(self.level_for(_view_scale(painter)))
        painter.drawImage(rect, img)


class CompositeItem(QGraphicsItem):
    """All instance boxes painted (in order, source-over) into one reduced overlay per pyramid
    level; a paint is one ``drawImage`` of the exposed part. A level's image is made on first
    paint at that level, or ahead in slices by :meth:`advance` (the canvas's idle prefetch)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption, True)
        self._sprites: list[Sprite] = []
        self._size = (0, 0)
        self._images: dict[int, QImage] = {}
        self._partial: dict[int, tuple[QImage, int]] = {}   # level -> (image, sprites drawn so far)
        self.composites_made = 0   # (tests / profiling)

    def set_sprites(self, sprites: Sequence[Sprite], size: tuple[int, int]) -> None:
        """The boxes (last on top) of an image of level-0 ``size`` ``(H, W)``; drops the images."""
        if size != self._size:
            self.prepareGeometryChange()
        self._sprites, self._size = list(sprites), size
        self._images.clear()
        self._partial.clear()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(0, 0, self._size[1], self._size[0])

    def ready(self, level: int) -> bool:
        return level in self._images

    def advance(self, level: int, deadline: float = float("inf")) -> bool:
        """Draw more boxes into ``level``'s image until ``time.perf_counter() >= deadline``;
        ``True`` once it is complete."""
        if level in self._images:
            return True
        got = self._partial.get(level)
        if got is None:
            f = 1 << level
            h, w = -(-self._size[0] // f), -(-self._size[1] // f)
            img = QImage(max(1, w), max(1, h), QImage.Format_ARGB32_Premultiplied)
            img.fill(0)
            got = (img, 0)
        img, i = got
        p = QPainter(img)
        n = len(self._sprites)
        while i < n:
            X, Y, words = self._sprites[i].argb32_at(level)
            p.drawImage(QPoint(X, Y), _argb_image(words))
            i += 1
            if i % 8 == 0 and time.perf_counter() >= deadline:
                break
        p.end()
        if i < n:
            self._partial[level] = (img, i)
            return False
        self._partial.pop(level, None)
        self._images[level] = img
        self.composites_made += 1
        return True

    def image(self, level: int) -> QImage:
        self.advance(level)
        return self._images[level]

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if not self._sprites:
            return
        level = tiles.level_for_scale(_view_scale(painter), 64)
        img = self.image(level)
        f = float(1 << level)
        r = option.exposedRect.intersected(self.boundingRect())
        painter.drawImage(r, img, QRectF(r.left() / f, r.top() / f, r.width() / f, r.height() / f))


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
        self.setOptimizationFlag(QGraphicsView.DontAdjustForAntialiasing, True)
        self._image_item = TiledImageItem()
        self._sprite_items: dict[int, SpriteItem] = {}   # id(sprite) -> item
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setZValue(1)
        self._sprite_group, self._label_group = _Group(), _Group()   # hidden as one when zoomed out
        self._sprite_group.setZValue(1)
        self._label_group.setZValue(2)
        self._composite = CompositeItem()
        self._composite.setZValue(1)
        self._composite.setVisible(False)
        for item in (self._image_item, self._overlay_item, self._sprite_group, self._composite,
                     self._label_group):
            self.scene().addItem(item)
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
        self._prefetch_jobs: Iterator | None = None
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(0)
        self._prefetch_timer.timeout.connect(self._prefetch_step)

    # ---- idle prefetch ---------------------------------------------------------------------
    PREFETCH_SLICE_S = 0.004

    def prefetch_pending(self) -> bool:
        """Whether idle work (zoomed-out images of the instances) is still queued."""
        return self._prefetch_jobs is not None

    def _start_prefetch(self) -> None:
        self._prefetch_jobs = self._prefetch_work()
        self._prefetch_timer.start()

    def _prefetch_work(self) -> Iterator[None]:
        """What a zoom-out will draw, made ahead while the GUI is idle: the composite images
        from the fitted level to the finest composite level, then the per-instance images of
        the levels between (each step a few boxes; see :meth:`_prefetch_step`)."""
        h, w = self.image_size()
        if not self._sprite_items or not h:
            return
        lo = self._composite_min_level()
        fit_scale = min(self.viewport().width() / w, self.viewport().height() / h)
        for level in range(max(lo, tiles.level_for_scale(fit_scale, 64)), lo - 1, -1):
            while not self._composite.advance(level, time.perf_counter() + self.PREFETCH_SLICE_S / 2):
                yield
        for level in range(1, min(lo, SPRITE_MAX_LEVEL + 1)):
            for item in list(self._sprite_items.values()):
                item.prepare(level)
                yield

    def _prefetch_step(self) -> None:
        jobs = self._prefetch_jobs
        if jobs is None:
            return
        deadline = time.perf_counter() + self.PREFETCH_SLICE_S
        try:
            while time.perf_counter() < deadline:
                next(jobs)
        except StopIteration:
            self._prefetch_jobs = None
            return
        self._prefetch_timer.start()

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
    def set_image(self, rgb: np.ndarray | None, *, factor: int = 1) -> None:
        """Show ``[H, W, 3]`` uint8 RGB (``None`` clears); resets zoom to fit. The array is
        kept (not copied) as pyramid level 0; smaller levels are computed here, once.
        ``factor`` > 1: ``rgb`` is a preview at ``1/factor`` (a power of two) of the image,
        shown at full size until :meth:`set_pyramid` brings the real levels."""
        self.set_overlay(None)
        if rgb is None:
            self._image_item.set_levels([])
            self.scene().setSceneRect(0, 0, 1, 1)
            return
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        k = max(0, int(factor).bit_length() - 1)
        size = (rgb.shape[0] * factor, rgb.shape[1] * factor)
        self._image_item.set_levels([None] * k + tiles.build_pyramid(rgb), size)
        self.scene().setSceneRect(0, 0, size[1], size[0])
        self.fit()

    def set_pyramid(self, levels: list[np.ndarray]) -> None:
        """Replace the shown image's pixels by full pyramid levels (same size; view kept)."""
        self._image_item.set_levels(levels)
        self.scene().setSceneRect(0, 0, levels[0].shape[1], levels[0].shape[0])

    def set_overlay(self, rgba: np.ndarray | None, labels: Sequence = ()) -> None:
        """Show one ``[H, W, 4]`` RGBA overlay and labels (objects with ``x``, ``y`` image
        pixels, ``text``, ``color`` RGB), replacing the previous overlay, sprites and labels."""
        self.set_instances([], labels)
        self._overlay_item.setPixmap(QPixmap() if rgba is None else QPixmap.fromImage(rgba_to_qimage(rgba)))

    def set_instances(self, sprites: Sequence[Sprite], labels: Sequence = ()) -> None:
        """Show per-instance overlay boxes (:class:`~annotator.tools.overlay.Sprite`, last on
        top) and labels. Items of sprites shown before (same object) are reused."""
        self._overlay_item.setPixmap(QPixmap())
        old, self._sprite_items = self._sprite_items, {}
        n = max(1, len(sprites))
        for i, sp in enumerate(sprites):
            item = old.pop(id(sp), None)
            if item is None or item.sprite is not sp:
                item = SpriteItem(sp)
                item.setParentItem(self._sprite_group)
            item.setZValue(1 + i / (n + 1))
            self._sprite_items[id(sp)] = item
        for item in old.values():
            self.scene().removeItem(item)
        self._composite.set_sprites(sprites, self.image_size())
        self._set_labels(labels)
        self._sync_lod()
        self._start_prefetch()

    def _set_labels(self, labels: Sequence) -> None:
        for item in self._label_items:
            self.scene().removeItem(item.parentItem())
        self._label_items = []
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
            back.setParentItem(self._label_group)
            self._label_items.append(item)

    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the shown image, ``(0, 0)`` if none."""
        h, w = self._image_item.boundingRect().height(), self._image_item.boundingRect().width()
        return (int(h), int(w))

    def label_texts(self) -> list[str]:
        """Texts of the labels shown (for tests and accessibility)."""
        return [item.text() for item in self._label_items]

    def overlay_image(self) -> QImage:
        """The overlay as a full-size QImage, sprites composed (empty if none; tests only)."""
        if not self._overlay_item.pixmap().isNull() or not self._sprite_items:
            return self._overlay_item.pixmap().toImage()
        h, w = self.image_size()
        return rgba_to_qimage(compose_sprites([it.sprite for it in self._sprite_items.values()], h, w))

    def sprite_count(self) -> int:
        """Instance boxes on the scene."""
        return len(self._sprite_items)

    # ---- level of detail -----------------------------------------------------------------
    def composite_shown(self) -> bool:
        """Whether the instances are drawn from the one reduced composite (zoomed out)."""
        return self._composite.isVisible()

    def labels_shown(self) -> bool:
        """Whether the score labels are drawn (hidden zoomed out over many labels)."""
        return self._label_group.isVisible()

    def _composite_min_level(self) -> int:
        """The finest level drawn from the composite: >= COMPOSITE_MIN_LEVEL, and where the
        composite's longer side is <= COMPOSITE_MAX_SIDE."""
        side = max(self.image_size())
        return max(COMPOSITE_MIN_LEVEL, max(0, (side - 1) // COMPOSITE_MAX_SIDE).bit_length())

    def _sync_lod(self) -> None:
        """Pick per-instance items or the composite, and show / hide the labels, for the
        current scale (cheap when nothing changes)."""
        scale = self.zoom_factor()
        h, w = self.image_size()
        composite = bool(self._sprite_items) and tiles.level_for_scale(scale, 64) >= self._composite_min_level()
        self._composite.setVisible(composite)
        self._sprite_group.setVisible(not composite)
        self._label_group.setVisible(len(self._label_items) * LABEL_AREA <= LABEL_MAX_COVER * h * w * scale * scale)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._sync_lod()
        super().paintEvent(event)

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
        self._sync_lod()
        self.zoom_changed.emit(factor)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom_factor() * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom_factor() / ZOOM_STEP)

    def fit(self) -> None:
        """Scale so the whole image fits the view (keeps aspect ratio); stays fitted on resize."""
        h, w = self.image_size()
        if h and w:
            self.fitInView(QRectF(0, 0, w, h), Qt.KeepAspectRatio)
        self._fit_mode = True
        self._sync_lod()
        self.zoom_changed.emit(self.zoom_factor())

    def view_state(self) -> dict:
        """``{"fit": bool, "zoom": float, "center": [x, y]}``: the scale and the image point at
        the middle of the view (for reopening where the person stopped)."""
        c = self.mapToScene(self.viewport().rect().center())
        return {"fit": bool(self._fit_mode), "zoom": self.zoom_factor(), "center": [float(c.x()), float(c.y())]}

    def restore_view(self, state: dict) -> None:
        """Undo of :meth:`view_state` (fitted, or that scale centred on that point)."""
        if state.get("fit", True):
            self.fit()
            return
        self.set_zoom(float(state.get("zoom", 1.0)))
        x, y = state.get("center", (0.0, 0.0))
        self.centerOn(float(x), float(y))

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
