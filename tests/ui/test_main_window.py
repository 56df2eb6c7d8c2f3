"""GUI acceptance: open a folder as a project, pre-label in the background worker with a real
(random-init, tiny) segcore checkpoint, review, export COCO; plus cancel, errors, keyboard."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import Qt

from annotator.tools.selection import hit_test_id
from annotator.ui import dialogs
from annotator.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init ``yolact_tiny`` (input 160, 3 classes) saved as a segcore checkpoint."""
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=3, input_size=160)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, model, categories=CATEGORIES)
    return path


def _image_folder(coco_tiny: Path, folder: Path, n: int) -> Path:
    """``n`` real coco-tiny val images, downscaled to 160 px wide, written into ``folder``."""
    folder.mkdir(parents=True)
    for src in sorted((coco_tiny / "val2017").glob("*.jpg"))[:n]:
        img = cv2.imread(str(src))
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / src.name), cv2.resize(img, (160, max(1, round(h * 160 / w)))))
    return folder


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Error dialogs are recorded instead of shown."""
    seen: list[str] = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, message, title="Error": seen.append(message))
    return seen


def _open(qtbot, folder: Path) -> MainWindow:
    win = MainWindow(score_threshold=0.0)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.project_opened, timeout=TIMEOUT_MS):
        win.open_project(folder)
    return win


def test_prelabel_review_export(qtbot, coco_tiny, tmp_path, checkpoint, errors):
    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 2))
    ids = win.image_list.image_ids()
    assert len(ids) == 2 and win.current_image_id == ids[0]
    assert win.image_list.state_of(ids[0]) == "unlabeled"

    win.set_model(str(checkpoint))
    with qtbot.waitSignal(win.prelabel_finished, timeout=TIMEOUT_MS):
        assert win.prelabel_current()
        assert win.prelabel_jobs.busy and win.progress_bar.isVisible()   # returned at once
    assert errors == [] and not win.progress_bar.isVisible()
    # the hardware's precision choice is shown (the tests pin the in-process default to fp32)
    assert win.status_label.text().endswith(" - precision: fp32 (CPU without native bf16)")
    anns = win.annotations()
    assert len(anns) >= 3 and all(a.review_state == "predicted" and a.source == "model" for a in anns)
    assert win.image_list.state_of(ids[0]) == "predicted"
    assert win.image_list.state_of(ids[1]) == "unlabeled"
    assert win.instance_panel.rowCount() == len(anns)
    assert any(" 0." in t or " 1.00" in t for t in win.canvas.label_texts())   # score labels
    assert win.category_combo.count() >= 1

    # click selection: the topmost visible instance under a pixel of the first mask
    layer = win.layer()
    ys, xs = layer.masks[0].nonzero()
    expected = hit_test_id(layer.masks, layer.ann_ids, xs[0] + 0.5, ys[0] + 0.5)
    with qtbot.waitSignal(win.selection_changed, timeout=1000) as sel:
        win.canvas.clicked.emit(float(xs[0] + 0.5), float(ys[0] + 0.5))
    assert sel.args == [expected] and win.instance_panel.selected_id() == expected

    first, second = anns[0].id, anns[1].id
    win.select_instance(first)
    win.accept_selected()
    assert win.selected_id == second                  # selection moves to the next prediction
    win.reject_selected()
    states = {a.id: a.review_state for a in win.project.annotations(ids[0])}
    assert states[first] == "accepted" and states[second] == "rejected"
    assert second not in win.layer().ann_ids          # rejected hidden on the canvas
    assert win.instance_panel.row_values(second)[4] == "rejected"
    assert win.image_list.state_of(ids[0]) == "predicted"

    accepted_cat = next(a.category_id for a in anns if a.id == first)
    counts = win.export_coco(tmp_path / "accepted.json", "accepted")
    assert counts is not None and errors == []
    data = json.loads((tmp_path / "accepted.json").read_text())
    assert len(data["annotations"]) == 1
    out = data["annotations"][0]
    assert out["category_id"] == accepted_cat and len(out["bbox"]) == 4 and out["segmentation"]
    assert {c["id"] for c in data["categories"]} >= {accepted_cat}
    win.export_coco(tmp_path / "all.json", include="all")
    everything = json.loads((tmp_path / "all.json").read_text())["annotations"]
    assert len(everything) == len(anns) - 1          # all but the rejected one

    # change class (digit key logic) makes a prediction "edited"; accept the rest -> reviewed
    third = win.annotations()[2]
    win.select_instance(third.id)
    target = win.project.categories()[2]
    win.actions_by_name["class_3"].trigger()           # digit key 3: third category
    edited = next(a for a in win.project.annotations(ids[0]) if a.id == third.id)
    assert edited.category_id == target.id and edited.review_state == "edited"
    win.actions_by_name["accept_all"].trigger()      # Shift+A: accept the remaining predictions
    assert all(a.review_state != "predicted" for a in win.project.annotations(ids[0]))
    assert win.image_list.state_of(ids[0]) == "in_progress"   # nothing waits for review; not marked done
    win.next_image()
    assert win.current_image_id == ids[1]
    win.previous_image()
    assert win.current_image_id == ids[0]
    win.close()


def test_cancel_stops_multi_image_prelabel_early(qtbot, coco_tiny, tmp_path, checkpoint, errors):
    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 8))
    win.set_model(str(checkpoint))
    seen = []

    def on_progress(done, total):
        seen.append((done, total))
        win.cancel_prelabel()

    win.prelabel_jobs.progress.connect(on_progress)
    # Also cancel synchronously in the worker thread after its first image, so the test does not
    # depend on how fast the GUI thread handles the queued progress signal on a loaded machine.
    from PySide6.QtCore import Qt

    win.prelabel_jobs._worker.progress.connect(lambda *_: win.prelabel_jobs.cancel(), Qt.DirectConnection)
    with qtbot.waitSignal(win.prelabel_finished, timeout=TIMEOUT_MS) as done:
        assert win.prelabel_unreviewed()
    assert errors == [] and seen and seen[0][1] == 8
    assert done.args[0].stopped and done.args[0].images < 8
    states = [win.image_list.state_of(i) for i in win.image_list.image_ids()]
    assert 1 <= states.count("predicted") < 8
    assert not win.prelabel_jobs.busy and not win.progress_bar.isVisible()
    win.close()


def test_prelabel_uses_latest_registered_model_version(qtbot, coco_tiny, tmp_path, checkpoint, errors):
    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 1))
    version = win.project.register_model_version(arch="yolact_tiny", checkpoint=checkpoint, categories=CATEGORIES)
    assert win.model_choice is None
    with qtbot.waitSignal(win.prelabel_finished, timeout=TIMEOUT_MS):
        assert win.prelabel_current()
    anns = win.annotations()
    assert errors == [] and anns and {a.model_version for a in anns} == {version}
    win.close()


def test_user_errors_show_dialog_not_traceback(qtbot, coco_tiny, tmp_path, checkpoint, errors):
    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 1))
    win.accept_selected()                              # nothing selected: a routine refusal
    assert not errors and win.last_error is None       # no modal dialog ...
    assert "no instance selected" in win.status_label.text() == win.last_refusal   # ... the status bar says it
    for refused in (win.reject_selected, win.delete_selected, win.split_instance, win.merge_instances,
                    win.fill_instance_holes):
        refused()
    assert not errors and win.last_refusal
    win.open_project(tmp_path / "no-such-folder")       # error from the background open
    qtbot.waitUntil(lambda: bool(errors) and "no-such-folder" in errors[-1], timeout=TIMEOUT_MS)
    assert win.project is not None and win.last_error == errors[-1]   # old project still open
    win.set_model(str(tmp_path / "missing.pth"))
    assert "missing.pth" in errors[-1] and win.model_choice is None
    assert win.export_coco(tmp_path / "x.json", include="bogus") is None
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    win.set_model(str(bad))
    with qtbot.waitSignal(win.prelabel_failed, timeout=TIMEOUT_MS):
        assert win.prelabel_current()
    assert "bad.pth" in errors[-1] and not win.prelabel_jobs.busy
    # no model chosen and none registered: asks for a checkpoint (cancelled here)
    win.model_choice = None
    asked = []
    dialogs_ask = lambda parent, start="": asked.append(start)  # noqa: E731
    import annotator.ui.dialogs as d
    orig, d.ask_checkpoint = d.ask_checkpoint, dialogs_ask
    try:
        assert win.prelabel_current() is False and asked
    finally:
        d.ask_checkpoint = orig
    win.close()


def test_shortcuts_and_tooltips(qtbot, coco_tiny, tmp_path, errors):
    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 2))
    acts = win.actions_by_name
    expected = {"accept": "A", "reject": "R", "delete": "Del", "next_image": "PgDown",
                "prev_image": "PgUp", "prelabel": "Ctrl+L", "export": "Ctrl+E", "cancel": "Esc"}
    for name, key in expected.items():
        assert acts[name].shortcut().toString() == key, name
        assert f"({key}" in acts[name].toolTip(), acts[name].toolTip()
    first = win.current_image_id
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    qtbot.keyClick(win, Qt.Key_D)
    assert win.current_image_id != first
    qtbot.keyClick(win, Qt.Key_D, Qt.ShiftModifier)
    assert win.current_image_id == first
    z = win.canvas.zoom_factor()
    qtbot.keyClick(win, Qt.Key_Plus)
    assert win.canvas.zoom_factor() > z
    win.close()


def test_app_main_opens_folder_and_quits(coco_tiny, tmp_path):
    """``annotator.ui.app.main(folder)`` in its own process (app.exec / quit would leave this
    process's QApplication in its closing state for later tests)."""
    import os
    import subprocess
    import sys

    folder = _image_folder(coco_tiny, tmp_path / "images", 1)
    script = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from annotator.ui.app import main\n"
        "from annotator.ui.main_window import MainWindow\n"
        "seen = []\n"
        "def close_when_open():\n"
        "    app = QApplication.instance()\n"
        "    wins = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]\n"
        "    if wins and wins[0].project is not None and wins[0].image_list.count():\n"
        "        seen.append(wins[0].image_list.count()); app.quit()\n"
        "    else:\n"
        "        QTimer.singleShot(50, close_when_open)\n"
        "QTimer.singleShot(0, close_when_open)\n"
        "QTimer.singleShot(30000, lambda: QApplication.instance().quit())\n"
        "rc = main(sys.argv[1])\n"
        "print('images', seen, 'rc', rc)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                         env=env, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "images [1] rc 0" in out.stdout, out.stdout + out.stderr
    assert (folder / "annotator.sqlite").is_file()


def test_image_list_orders_by_uncertainty(qtbot, coco_tiny, tmp_path, errors):
    """'Most uncertain first' puts the image whose predictions are least confident on top."""
    import numpy as np

    from annotator import masks

    win = _open(qtbot, _image_folder(coco_tiny, tmp_path / "images", 5))
    ids = win.image_list.image_ids()
    cat = win.project.add_category("thing", id=1)
    scores = {ids[0]: 0.95, ids[1]: 0.2, ids[2]: 0.6}  # uncertainty 0.05, 0.8, 0.4; ids[3] not pre-labelled
    mask = np.zeros((win.project.image(ids[4]).height, win.project.image(ids[4]).width), bool)
    mask[5:20, 5:20] = True
    win.project.add_annotation(ids[4], cat.id, rle=masks.encode_mask(mask))     # worked on by a person
    for image_id, score in scores.items():
        im = win.project.image(image_id)
        mask = np.zeros((im.height, im.width), bool)
        mask[10:40, 10:40] = True
        win.project.replace_predictions(image_id, [{"category_id": cat.id, "rle": masks.encode_mask(mask),
                                                    "score": score}], None)
    win.sort_combo.setCurrentIndex(win.sort_combo.findData("uncertainty"))
    # least certain predictions first, then the image without predictions, then the person's
    assert win.image_list.image_ids() == [ids[1], ids[2], ids[0], ids[3], ids[4]]
    win.sort_combo.setCurrentIndex(win.sort_combo.findData("name"))
    assert win.image_list.image_ids() == ids
    assert errors == []
    win.close()
