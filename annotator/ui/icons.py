"""Tool icons, drawn with ``QPainter`` at the size asked (no image files to ship or theme to
depend on): one function per tool of the palette, in a shared two-colour style (dark outline,
accent fill), so the active tool reads at a glance in light and dark themes.

``tool_icon(name)`` returns a ``QIcon`` for ``select``, ``polygon``, ``brush``, ``eraser``,
``box``, ``wand``, ``refine``, ``vertex`` (the names of :data:`annotator.tools.interaction.TOOLS`).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

INK = QColor(40, 44, 52)
ACCENT = QColor(0, 130, 200)
SOFT = QColor(0, 130, 200, 70)
SIZE = 48  # drawn at 48 px; Qt scales the pixmap for smaller buttons


def _pen(width: float = 3.0, color: QColor = INK) -> QPen:
    pen = QPen(color, width)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    return pen


def _select(p: QPainter) -> None:
    arrow = QPolygonF([QPointF(x, y) for x, y in ((12, 6), (12, 38), (20, 30), (26, 42), (31, 40), (25, 28),
                                                   (36, 28))])
    p.setBrush(QBrush(ACCENT))
    p.setPen(_pen(2.5))
    p.drawPolygon(arrow)


def _polygon(p: QPainter) -> None:
    pts = [QPointF(x, y) for x, y in ((8, 34), (18, 8), (40, 14), (36, 38), (20, 42))]
    p.setBrush(QBrush(SOFT))
    p.setPen(_pen(3, ACCENT))
    p.drawPolygon(QPolygonF(pts))
    p.setBrush(QBrush(Qt.white))
    p.setPen(_pen(2.5))
    for q in pts:
        p.drawEllipse(q, 3.5, 3.5)


def _brush(p: QPainter) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(QBrush(SOFT))
    p.drawEllipse(QPointF(16, 34), 11, 9)
    p.setPen(_pen(7, ACCENT))
    p.drawLine(QPointF(30, 18), QPointF(18, 32))
    p.setPen(_pen(4))
    p.drawLine(QPointF(42, 6), QPointF(30, 18))


def _eraser(p: QPainter) -> None:
    p.translate(24, 26)
    p.rotate(-35)
    p.setPen(_pen(2.5))
    p.setBrush(QBrush(QColor(245, 130, 150)))
    p.drawRoundedRect(QRectF(-16, -8, 20, 16), 3, 3)
    p.setBrush(QBrush(Qt.white))
    p.drawRoundedRect(QRectF(4, -8, 14, 16), 3, 3)
    p.resetTransform()
    p.setPen(_pen(2, INK))
    p.drawLine(QPointF(8, 42), QPointF(40, 42))


def _box(p: QPainter) -> None:
    pen = _pen(2.5)
    pen.setStyle(Qt.DashLine)
    p.setPen(pen)
    p.setBrush(Qt.NoBrush)
    p.drawRect(QRectF(6, 8, 36, 32))
    p.setPen(_pen(2, ACCENT))
    p.setBrush(QBrush(SOFT))
    blob = QPainterPath()
    blob.addEllipse(QRectF(13, 14, 22, 20))
    p.drawPath(blob)


def _wand(p: QPainter) -> None:
    p.setPen(_pen(5))
    p.drawLine(QPointF(8, 42), QPointF(28, 22))
    p.setPen(_pen(2.5, ACCENT))
    cx, cy = 34, 14
    for k in range(8):
        a = k * math.pi / 4
        r0, r1 = (4, 10) if k % 2 == 0 else (4, 7)
        p.drawLine(QPointF(cx + r0 * math.cos(a), cy + r0 * math.sin(a)),
                   QPointF(cx + r1 * math.cos(a), cy + r1 * math.sin(a)))


def _refine(p: QPainter) -> None:
    p.setPen(_pen(2, ACCENT))
    p.setBrush(QBrush(SOFT))
    p.drawEllipse(QRectF(8, 10, 30, 28))
    p.setPen(_pen(4, QColor(40, 170, 70)))
    p.drawLine(QPointF(16, 22), QPointF(26, 28))
    p.setPen(_pen(4, QColor(200, 50, 50)))
    p.drawLine(QPointF(34, 36), QPointF(44, 42))


def _vertex(p: QPainter) -> None:
    pts = [QPointF(x, y) for x, y in ((8, 36), (20, 10), (40, 22))]
    p.setPen(_pen(3, ACCENT))
    p.drawPolyline(QPolygonF(pts))
    p.setPen(_pen(2.5))
    p.setBrush(QBrush(Qt.white))
    for q in pts:
        p.drawRect(QRectF(q.x() - 4, q.y() - 4, 8, 8))
    p.setBrush(QBrush(ACCENT))
    p.drawRect(QRectF(16, 6, 8, 8))


_DRAW = {"select": _select, "polygon": _polygon, "brush": _brush, "eraser": _eraser, "box": _box, "wand": _wand,
         "refine": _refine, "vertex": _vertex}


def tool_icon(name: str) -> QIcon:
    """The palette icon of tool ``name``. Raises KeyError for an unknown tool."""
    draw = _DRAW[name]
    pix = QPixmap(SIZE, SIZE)
    pix.fill(Qt.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    draw(p)
    p.end()
    return QIcon(pix)
