"""Desktop entry point: ``main(path)`` creates the QApplication, opens a project, runs the loop.

Ends cleanly however the session ends: the window's Quit, SIGTERM (a plain ``kill``, a service
manager), SIGINT (Ctrl+C in the terminal), SIGHUP (the terminal or the X session closes) and the
desktop's logout (``QGuiApplication.aboutToQuit``) all close the window, which saves where the
person was, stops the background jobs, closes the project and releases the session lock, so the
next start reports no unclean shutdown.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

QUIT_SIGNALS = (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


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
    app.aboutToQuit.connect(window.close)   # logout / session end
    _quit_on_signals(app)
    if path is not None:
        window.open_project(Path(path))
    try:
        return int(app.exec())
    finally:
        window.close()  # stops the pre-label thread and closes the project (idempotent)


def _quit_on_signals(app) -> None:
    """SIGTERM / SIGINT / SIGHUP quit the event loop (the window then closes cleanly). Python runs
    signal handlers only between bytecodes, so a 200 ms timer gives it the chance while Qt waits."""
    from PySide6.QtCore import QTimer

    for sig in QUIT_SIGNALS:
        signal.signal(sig, lambda *_: app.quit())
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(200)


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
