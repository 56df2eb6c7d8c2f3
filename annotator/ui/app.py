"""Desktop entry point: ``main(path)`` creates the QApplication, opens a project, runs the loop."""

from __future__ import annotations

import sys
from pathlib import Path


def main(path: str | None = None, *, score_threshold: float = 0.05) -> int:
    """Start the GUI; returns the event loop's exit status.

    ``path``: a project folder, its ``annotator.sqlite``, or an image folder (made into a
    project, its images scanned in the background). ``None``: start empty (File > Open).
    """
    from PySide6.QtWidgets import QApplication

    from annotator.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("annotator")
    app.setDesktopFileName("annotator")          # matches packaging/annotator.desktop (Wayland)
    _set_icon(app)
    window = MainWindow(score_threshold=score_threshold)
    window.show()
    if path is not None:
        window.open_project(Path(path))
    try:
        return int(app.exec())
    finally:
        window.close()  # stops the pre-label thread and closes the project (idempotent)


def _set_icon(app) -> None:
    """Window icon from the package resources (annotator-256.png); silently none if missing."""
    from importlib.resources import as_file

    from PySide6.QtGui import QIcon

    import annotator

    icon = annotator.resources() / "icons" / "annotator-256.png"
    if icon.is_file():
        with as_file(icon) as path:
            app.setWindowIcon(QIcon(str(path)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
