"""Fixtures shared by the GUI tests: dialogs recorded instead of shown, and the main window
(shown, active) over the test file's own ``project_dir`` fixture."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture
def seen(monkeypatch) -> dict:
    """Error and info dialogs are recorded instead of shown."""
    from annotator.ui import dialogs

    out = {"errors": [], "info": []}
    monkeypatch.setattr(dialogs, "show_error", lambda parent, message, title="Error": out["errors"].append(message))
    monkeypatch.setattr(dialogs, "show_info", lambda parent, message, title="": out["info"].append(message))
    return out


@pytest.fixture
def win(qtbot, project_dir, seen):
    """The main window on ``project_dir`` (defined by each test file), shown and active."""
    from annotator.project import Project
    from annotator.ui.main_window import MainWindow

    w = MainWindow(Project.open(project_dir, create_if_folder=False))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=2000)
    yield w
    w.close()
