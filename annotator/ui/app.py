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
    window = MainWindow(score_threshold=score_threshold)
    window.show()
    if path is not None:
        window.open_project(Path(path))
    try:
        return int(app.exec())
    finally:
        window.close()  # stops the pre-label thread and closes the project (idempotent)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
