"""The first ten minutes in the app (offscreen): tools on a visible palette, a class asked for
when the project has none (the shape kept), shortcuts that work whichever dock has focus,
routine refusals in the status bar, a clean end on SIGTERM and a reopening where the person
stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from annotator.project import Project
from annotator.tools.session import SessionLock
from annotator.ui.main_window import MainWindow
from tests.ui.test_editing import click, key

pytestmark = pytest.mark.gui


@pytest.fixture
def project_dir(coco_tiny, tmp_path) -> Path:
    """Three real coco-tiny images (200 px wide) in a project with no classes yet."""
    folder = tmp_path / "images"
    folder.mkdir()
    for src in sorted((coco_tiny / "val2017").glob("*.jpg"))[:3]:
        img = cv2.imread(str(src))
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / src.name), cv2.resize(img, (200, round(h * 200 / w))))
    Project.create(tmp_path / "proj", images_dir=folder).close()
    return tmp_path / "proj"


def _polygon(qtbot, win, pts=((30, 40), (110, 40), (110, 100), (30, 100))):
    key(qtbot, win, Qt.Key_P)
    for x, y in pts:
        click(win.canvas, x, y)
    key(qtbot, win, Qt.Key_Return)


def test_first_shape_asks_for_a_class_and_is_kept(qtbot, win, seen, monkeypatch):
    from annotator.ui import dialogs

    asked = []
    monkeypatch.setattr(dialogs, "ask_class_name", lambda parent, label, default="": asked.append(label) or "cell")
    assert win.project.categories() == []
    _polygon(qtbot, win)
    assert asked and "no classes yet" in asked[0]
    (ann,) = win.annotations()
    assert win.project.category(ann.category_id).name == "cell" and ann.area > 4000
    assert seen["errors"] == []
    assert win.category_combo.currentText().endswith("cell")            # the picker shows it
    assert [a.text() for a in win.class_menu.actions() if a.text()][:1] == ["cell"]
    assert "Class manager..." in [a.text() for a in win.class_menu.actions()]
    # cancelling the prompt (another project without classes) still keeps the shape
    win.project.delete_annotations([ann.id])
    win.project._conn.execute("DELETE FROM categories")
    win._refresh_categories()
    win.current_category_id = None
    monkeypatch.setattr(dialogs, "ask_class_name", lambda *a, **k: None)
    _polygon(qtbot, win, ((20, 20), (60, 20), (60, 60)))
    (ann,) = win.annotations()
    assert win.project.category(ann.category_id).name == "object" and "kept" in win.status_label.text()


def test_class_picker_follows_the_selected_instance(qtbot, win, seen):
    a = win.add_category("cell")
    b = win.add_category("debris")
    win.current_category_id = b.id
    _polygon(qtbot, win)
    win.current_category_id = a.id
    _polygon(qtbot, win, ((120, 20), (180, 20), (180, 70)))
    first, second = win.annotations()
    win.select_instance(first.id)
    assert win.category_combo.currentData() == b.id
    win.select_instance(second.id)
    assert win.category_combo.currentData() == a.id
    key(qtbot, win, Qt.Key_2)                       # digit key: class 2 for the selected instance
    assert win.project.annotation(second.id).category_id == b.id
    assert win.category_combo.currentData() == b.id
    assert win.category_label.text().strip() == "Class:" and win.category_label.buddy() is win.category_combo


def _click_row(view, row: int) -> None:
    rect = view.visualRect(view.model().index(row, 1 if view is view.window().instance_panel else 0))
    QTest.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())


def test_shortcuts_work_whichever_dock_has_focus(qtbot, win, seen):
    cat = win.add_category("cell")
    win.current_category_id = cat.id
    _polygon(qtbot, win)
    _polygon(qtbot, win, ((120, 20), (180, 20), (180, 70)))
    first, second = (a.id for a in win.annotations())
    win.project.set_review_state([first, second], "predicted")
    win.reload_annotations()
    _click_row(win.instance_panel, 0)                 # a click in the Instances table takes the focus
    assert win.focusWidget() is win.instance_panel and win.selected_id == first
    QTest.keyClick(win.focusWidget(), Qt.Key_R)       # reject, typed while the table has the focus
    assert win.project.annotation(first).review_state == "rejected"
    QTest.keyClick(win.focusWidget(), Qt.Key_A)       # the selection moved on to the next pending one
    assert win.project.annotation(second).review_state == "accepted"
    QTest.keyClick(win.focusWidget(), Qt.Key_W)       # a tool key
    assert win.tool.name == "wand"
    ids = win.image_list.image_ids()
    _click_row(win.image_list, 1)                     # a click in the Images list
    assert win.focusWidget() is win.image_list and win.current_image_id == ids[1]
    QTest.keyClick(win.focusWidget(), Qt.Key_D)       # next image
    assert win.current_image_id == ids[2]
    QTest.keyClick(win.focusWidget(), Qt.Key_V)
    assert win.tool.name == "select"
    win.filter_combo.setFocus()
    QTest.keyClick(win.filter_combo, Qt.Key_B)
    assert win.tool.name == "brush"
    assert seen["errors"] == []


def test_routine_refusals_are_status_messages_not_dialogs(qtbot, win, seen):
    for k in (Qt.Key_A, Qt.Key_R, Qt.Key_Delete, Qt.Key_M, Qt.Key_Y, Qt.Key_O):
        key(qtbot, win, k)                           # nothing selected
    key(qtbot, win, Qt.Key_Z, Qt.ControlModifier)    # nothing to undo
    assert seen["errors"] == [] and seen["info"] == []
    assert "select" in win.status_label.text()


def test_tools_are_on_a_visible_palette_at_1280_px(qtbot, win):
    win.resize(1280, 800)
    qtbot.wait(50)
    palette = win.findChild(type(win.findChild(object, "main_toolbar")), "tool_palette")
    assert palette is not None and palette.isVisible() and palette.orientation() == Qt.Vertical
    for name in ("select", "polygon", "brush", "eraser", "box", "wand", "refine", "vertex"):
        act = win.actions_by_name[f"tool_{name}"]
        button = palette.widgetForAction(act)
        assert button is not None and button.isVisible() and not act.icon().isNull()
        assert palette.rect().contains(button.geometry()), name          # not in an overflow menu
        assert act.iconText() and f"({act.shortcut().toString()})" in act.toolTip()
    main = win.findChild(type(palette), "main_toolbar")
    for act in main.actions():
        if act.isSeparator() or not act.isVisible():
            continue
        widget = main.widgetForAction(act)
        assert widget.isVisible() and main.rect().contains(widget.geometry()), act.iconText()
    key(qtbot, win, Qt.Key_B)
    assert win.actions_by_name["tool_brush"].isChecked() and not win.actions_by_name["tool_select"].isChecked()


def test_reopens_on_the_last_image_and_view(qtbot, project_dir, seen):
    win = MainWindow(Project.open(project_dir, create_if_folder=False))
    qtbot.addWidget(win)
    win.show()
    ids = win.image_list.image_ids()
    win.next_image()
    win.next_image()
    win.canvas.set_zoom(2.0)
    win.canvas.centerOn(60, 50)
    view = win.canvas.view_state()
    win.close()
    again = MainWindow(Project.open(project_dir, create_if_folder=False))
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    qtbot.wait(20)
    assert again.current_image_id == ids[2]
    state = again.canvas.view_state()
    assert state["fit"] is False and state["zoom"] == pytest.approx(2.0)
    assert state["center"] == pytest.approx(view["center"], abs=2)
    again.close()


def test_sigterm_ends_cleanly_and_next_start_reports_nothing(project_dir, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-m", "annotator.cli", "gui", str(project_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = project_dir / "annotator.session"
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and lock.stat().st_size > 0):
        time.sleep(0.2)
    assert lock.exists(), proc.stderr.read() if proc.poll() is not None else "no session lock"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    status = SessionLock(project_dir).acquire()
    assert not status.locked and not status.unclean



def test_predictions_written_by_another_process_appear(qtbot, win, seen, tmp_path):
    """`annotator prelabel` from a terminal while the app is open: the window shows the new
    predictions within the poll interval, keeping its selection and undo history."""

    cat = win.add_category("cell")
    win.current_category_id = cat.id
    _polygon(qtbot, win)
    (mine,) = win.annotations()
    win.select_instance(mine.id)
    assert win.actions_by_name["undo"].isEnabled()
    ids = win.image_list.image_ids()
    ckpt = tmp_path / "tiny.pth"
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    save_checkpoint(ckpt, build_model("yolact_tiny", num_classes=1, input_size=128),
                    categories=[{"id": cat.id, "name": "cell"}])
    proc = subprocess.run([sys.executable, "-m", "annotator.cli", "prelabel", str(win.project.root), "--model",
                           str(ckpt), "--score-threshold", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    qtbot.waitUntil(lambda: win.image_list.state_of(ids[1]) == "predicted", timeout=5000)
    qtbot.waitUntil(lambda: len(win.annotations()) > 1, timeout=5000)
    assert win.selected_id == mine.id and win.actions_by_name["undo"].isEnabled()
    assert win.instance_panel.rowCount() == len(win.project.annotations(win.current_image_id))
    assert seen["errors"] == []  # no dialog on the way
