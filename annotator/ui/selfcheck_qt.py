"""The Qt parts of ``annotator --self-check`` (:mod:`annotator.selfcheck` calls them; only
``annotator/ui`` imports PySide6). The caller sets ``QT_QPA_PLATFORM=offscreen`` when there is no
display."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtWidgets import QApplication, QLabel

__all__ = ["check_binding", "open_main_window"]


def _app() -> QApplication:
    return QApplication.instance() or QApplication(sys.argv[:1])


def check_binding() -> str:
    """1,000 void Qt calls must not lower ``sys.getrefcount(None)`` (Python < 3.12; from 3.12
    None is immortal). Few enough calls that a faulty binding is caught before it aborts.

    Returns:
        One line for the self-check report.

    Raises:
        RuntimeError: the binding drops references to None (an excluded PySide6 release).
    """
    app = _app()
    if sys.version_info >= (3, 12):
        return f"PySide6 {pyside_version} (Python >= 3.12: None is immortal, nothing to check)"
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(500):
        label.setText("x")
        label.setToolTip("y")
    after = sys.getrefcount(None)
    label.deleteLater()
    app.processEvents()
    if after < before:
        raise RuntimeError(f"PySide6 {pyside_version} drops a reference to None on every void Qt call "
                           f"({before} -> {after} over 1,000 calls); a long session would abort. Install "
                           "PySide6-Essentials < 6.12 (pyproject.toml)")
    return f"PySide6 {pyside_version}: no reference to None lost over 1,000 void calls"


def open_main_window(sample: Path | None) -> str:
    """Open the main window (on the project folder ``sample`` when given), process events, close it.

    Returns:
        One line for the self-check report.

    Raises:
        RuntimeError: the window shows no image of the sample project, or reported an error.
    """
    from annotator.project import Project
    from annotator.ui.main_window import MainWindow

    app = _app()
    window = MainWindow()
    try:
        if sample is not None:
            window.set_project(Project.open(sample, create_if_folder=False))
        window.show()
        app.processEvents()
        if window.project is not None and window.current_image_id is None:
            raise RuntimeError("the main window shows no image of the sample project")
        if window.last_error:
            raise RuntimeError(window.last_error)
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()
    return f"main window opened and closed (Qt platform {app.platformName()}, PySide6 {pyside_version})"
