"""Folders as they are, in the app (offscreen): opening a folder with bad files makes the project
from the readable images and lists the others; a file that breaks later is a visible image state,
not an error dialog; the background file check hashes new images and finds changed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.project import Project
from annotator.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(coco_tiny, tmp_path) -> Path:
    out = tmp_path / "photos"
    out.mkdir()
    for src in sorted((coco_tiny / "val2017").glob("*.jpg"))[:3]:
        shutil.copy(src, out / src.name)
    (out / "empty.jpg").write_bytes(b"")
    (out / "readme.png").write_text("not a picture")
    return out


def test_open_folder_lists_skipped_files_and_marks_broken_ones(qtbot, folder, seen):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.project_opened, timeout=60_000):
        win.open_project(folder)
    qtbot.waitUntil(lambda: bool(seen["info"]), timeout=5000)
    assert "2 file(s)" in seen["info"][0] and "empty.jpg: empty file" in seen["info"][0]
    assert "readme.png: not a valid image" in seen["info"][0]
    assert win.image_list.count() == 3
    assert win.status_label.text().endswith("could not be read and were left out:")  # first line only

    # a listed file breaks after the project was made: stepping onto it shows its state, no dialog
    ids = win.image_list.image_ids()
    path = win.project.image_path(ids[1])
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])
    win.next_image()
    assert win.current_image_id == ids[1] and seen["errors"] == []
    assert win.image_list.state_of(ids[1]) == "unreadable"
    assert "cannot read image" in win.status_label.text()
    assert "not a valid image" in win.image_list.list_model.data(
        win.image_list.list_model.index(1), __import__("PySide6.QtCore").QtCore.Qt.ToolTipRole)
    win.set_image_filter("unreadable")
    assert win.image_list.image_ids() == [ids[1]]
    win.set_image_filter(None)
    # mended: the next visit clears the mark
    path.write_bytes(good)
    win.next_image()
    win.previous_image()
    assert win.image_list.state_of(ids[1]) == "unlabeled" and seen["errors"] == []
    win.close()


def test_background_file_check_hashes_and_reports_changed_files(qtbot, folder, seen):
    with Project.create(folder.parent / "proj", images_dir=folder) as p:
        assert len(p.unhashed_image_ids()) == 3
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.file_check.finished, timeout=30_000) as first:
        win.set_project(Project.open(folder.parent / "proj", create_if_folder=False))
    assert len(first.args[0].hashed) == 3 and first.args[0].changed == []
    assert win.project.unhashed_image_ids() == []
    # a file is edited outside the app (same size in pixels, other content) and one is resized
    ids = win.project.image_ids()
    a, b = win.project.image_path(ids[0]), win.project.image_path(ids[2])
    img = cv2.imread(str(a))
    img[:20, :20] = 0
    cv2.imwrite(str(a), img)
    cv2.imwrite(str(b), np.zeros((10, 10, 3), np.uint8))
    with qtbot.waitSignal(win.file_check.finished, timeout=30_000) as second:
        win.set_project(Project.open(folder.parent / "proj", create_if_folder=False))
    assert second.args[0].changed == [ids[0], ids[2]] and list(second.args[0].unreadable) == [ids[2]]
    assert "2 image file(s) changed on disk" in win.status_label.text()
    assert win.image_list.state_of(ids[2]) == "unreadable" and win.image_list.state_of(ids[0]) == "unlabeled"
    assert seen["errors"] == []
    win.close()
