"""GUI (offscreen): the class manager's Undo / Redo buttons and Ctrl+Z walk the project-wide
stack of class changes; per-image undo stacks are untouched."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from annotator import masks
from annotator.project import Project
from annotator.ui import dialogs
from annotator.ui.class_manager import ClassManagerDialog
from annotator.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def win(qtbot, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, message, title="Error": errors.append(message))
    imgs = tmp_path / "images"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), np.full((30, 40, 3), 90, np.uint8))
    with Project.create(tmp_path / "proj", images_dir=imgs) as p:
        p.add_category("cat", id=5)
        p.add_category("dog", id=9)
        m = np.zeros((30, 40), bool)
        m[2:10, 2:20] = True
        p.add_annotation(p.images()[0].id, 5, rle=masks.encode_mask(m))
    w = MainWindow(Project.open(tmp_path / "proj", create_if_folder=False))
    w.errors = errors
    qtbot.addWidget(w)
    yield w
    w.close()


def _button(dialog, text):
    return next(b for b in dialog.findChildren(QPushButton) if b.text() == text)


def test_dialog_undo_redo_of_merge_and_rename(qtbot, win):
    p = win.project
    before = (p.categories(), p.annotations())
    dialog = ClassManagerDialog(win)
    qtbot.addWidget(dialog)
    assert win.rename_category(5, "kitty").name == "kitty"
    assert win.merge_categories(5, 9) == 1
    dialog.refresh()
    assert [c.id for c in p.categories()] == [9] and dialog.list.count() == 1

    qtbot.mouseClick(_button(dialog, "Undo"), Qt.LeftButton)          # merge undone
    assert [c.name for c in p.categories()] == ["kitty", "dog"] and dialog.list.count() == 2
    assert p.annotations()[0].category_id == 5
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=2000)
    qtbot.keyClick(dialog, Qt.Key_Z, Qt.ControlModifier)                 # rename undone
    assert (p.categories(), p.annotations()) == before
    qtbot.mouseClick(_button(dialog, "Redo"), Qt.LeftButton)
    qtbot.mouseClick(_button(dialog, "Redo"), Qt.LeftButton)
    assert [c.id for c in p.categories()] == [9] and p.annotations()[0].category_id == 9
    assert not win.redo_category_change() and win.errors == []
    assert win.history.depth(p.images()[0].id) == (0, 0)               # per-image stack untouched
