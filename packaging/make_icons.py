"""Render the app icon ``resources/icons/annotator.svg`` to PNGs with Qt's SVG renderer.

Usage: ``QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_icons.py`` writes
``resources/icons/annotator-<N>.png`` for N in 48, 128, 256 (committed; run again
after editing the SVG). The PNGs are what the ``.desktop`` entry's hicolor theme folders and
the window icon use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (48, 128, 256)
ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def render(svg: Path, out_dir: Path, sizes=SIZES) -> list[Path]:
    """Render ``svg`` to ``out_dir/annotator-<N>.png`` for each size; returns the paths.

    Raises:
        RuntimeError: the SVG cannot be parsed or a PNG cannot be written.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - needed by QPainter
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise RuntimeError(f"{svg}: not a valid SVG")
    written = []
    for n in sizes:
        image = QImage(n, n, QImage.Format_ARGB32)
        image.fill(Qt.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"annotator-{n}.png"
        if not image.save(str(path), "PNG"):
            raise RuntimeError(f"{path}: cannot write")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in render(ICONS / "annotator.svg", ICONS):
        print(p)
