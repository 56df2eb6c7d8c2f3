"""GUI Train button (issue 7): Model > Train... starts a run in a child process, the progress bar
and the live curve update from the streamed dicts, Cancel returns to idle with the best
checkpoint registered as a new version; a child error shows a dialog and the app stays usable.
Tiny config on CPU (yolact_tiny, input 96, batch 2, one torch thread in the child)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from annotator.project import Project
from annotator.ui import dialogs
from annotator.ui.main_window import MainWindow
from annotator.ui.training import LOSS_COLOR, SEGM_COLOR, CurveWidget, TrainingDialog

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000
N_GT, N_EXTRA = 10, 1   # 10 labelled images, 2 assigned to validation in the fixture


@pytest.fixture(scope="module")
def base(tmp_path_factory, coco_tiny) -> Path:
    """base/images: 11 coco-tiny val images; base/proj: ground truth accepted on the first 10."""
    root = tmp_path_factory.mktemp("train_gui")
    images = root / "images"
    images.mkdir()
    gt = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())
    with_anns = {a["image_id"] for a in gt["annotations"] if not a.get("iscrowd")}
    chosen = sorted((im for im in gt["images"] if im["id"] in with_anns), key=lambda im: im["file_name"])
    chosen = chosen[: N_GT + N_EXTRA]
    for im in chosen:
        shutil.copy(coco_tiny / "val2017" / im["file_name"], images / im["file_name"])
    keep = {im["id"] for im in chosen[:N_GT]}
    sub = {"images": [im for im in gt["images"] if im["id"] in keep], "categories": gt["categories"],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    (root / "gt.json").write_text(json.dumps(sub))
    from annotator.io.coco import import_coco

    with Project.create(root / "proj", images_dir=images) as p:
        import_coco(p, root / "gt.json", image_root=images)
        # validation images chosen now: below MIN_VALIDATION_IMAGES a job only keeps a stored split
        p.assign_splits([r["image_id"] for r in p.training_records()[0]], val_fraction=0.2)
    return root


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, message, title="Error": seen.append(message))
    return seen


def _window(qtbot, project_dir: Path) -> MainWindow:
    win = MainWindow(Project.open(project_dir), score_threshold=0.0)
    qtbot.addWidget(win)
    win.show()
    return win


def _open_dialog(win: MainWindow) -> TrainingDialog:
    act = win.actions_by_name["train"]
    assert "Ctrl+T" in act.toolTip()
    act.trigger()
    dlg = win.training_dialog
    assert isinstance(dlg, TrainingDialog) and dlg.isVisible() and dlg.state == "idle"
    dlg.num_threads = 1
    dlg.arch_combo.setCurrentIndex(dlg.arch_combo.findData("yolact_tiny"))
    dlg.advanced.setChecked(True)
    dlg.input_size.setValue(96)
    dlg.iterations.setValue(400)
    dlg.batch_size.setValue(2)
    dlg.device.setCurrentText("cpu")
    return dlg


def test_train_cancel_registers_best_and_prelabels(qtbot, base, tmp_path, errors):
    shutil.copytree(base, tmp_path / "copy")
    win = _window(qtbot, tmp_path / "copy" / "proj")
    dlg = _open_dialog(win)
    assert "random init" in dlg.weights_label.text() or "ImageNet" in dlg.weights_label.text()
    assert dlg.train_kwargs() == {"arch": "yolact_tiny", "device": "cpu", "input_size": 96, "iterations": 400,
                                  "batch_size": 2, "augment": "photo"}   # iterations given: no time budget
    assert "YOLACT" in dlg.arch_help.text()                                # the one-line description
    assert dlg.models.table.rowCount() == 0

    dlg.start_button.click()
    assert dlg.state == "running" and not dlg.start_button.isEnabled() and dlg.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dlg.progress_count >= 1 or dlg.last_error is not None, timeout=TIMEOUT_MS)
    assert errors == [] and dlg.last_error is None
    assert dlg.progress_bar.maximum() == 400 and dlg.progress_bar.value() >= 1
    assert dlg.curve.loss_points and dlg.curve.iterations == 400
    dlg.curve.grab()   # paints the polylines
    # the GUI stays responsive while the child trains: a zero-delay timer fires within 0.5 s
    # (it only runs when the event loop is free), and an image switch goes through
    import time

    from PySide6.QtCore import QTimer

    fired = []
    t0 = time.perf_counter()
    QTimer.singleShot(0, lambda: fired.append(time.perf_counter() - t0))
    qtbot.waitUntil(lambda: bool(fired), timeout=2000)
    assert fired[0] < 0.5 and dlg.state == "running"
    before = win.current_image_id
    win.next_image()
    assert win.current_image_id != before

    with qtbot.waitSignal(dlg.run_finished, timeout=TIMEOUT_MS) as done:
        dlg.cancel_button.click()
    msg = done.args[0]
    assert errors == [] and dlg.state == "idle" and dlg.start_button.isEnabled()
    assert not dlg.cancel_button.isEnabled()
    assert msg["stopped"] and msg["iterations_done"] < 400 and Path(msg["checkpoint"]).is_file()
    versions = win.project.model_versions()
    assert [v.id for v in versions] == [msg["model_version"]]
    assert versions[0].metrics["stopped"] and "segm" in versions[0].metrics   # best checkpoint, evaluated
    assert Path(versions[0].checkpoint).name == "model_best.pth"
    assert versions[0].metrics["history"]      # the cancel evaluated the kept checkpoint
    # a model that only helps: a first version with validation AP at 0 after a few iterations is
    # registered and offered, not made active, and the dialog says why
    assert versions[0].metrics["segm"]["AP"] <= 0.01
    assert win.project.active_model_version() is None and win.model_choice is None
    assert not msg["activated"] and "not made active" in dlg.status_label.text()
    assert dlg.models.table.rowCount() == 1 and dlg.models.table.item(0, 0).text().startswith("v1")
    assert dlg.prelabel_button.isVisible() and dlg.prelabel_button.text() == "Pre-label unreviewed with v1"

    with qtbot.waitSignal(win.prelabel_finished, timeout=TIMEOUT_MS) as pre:
        dlg.prelabel_button.click()
    assert errors == [] and pre.args[0].images == N_EXTRA

    # model manager: set active (the person's choice), delete (file inside the project goes too)
    dlg.models.select_version(versions[0].id)
    dlg.models.set_active_selected()
    assert win.project.active_model_version() == versions[0].id and win.model_choice == versions[0].id
    assert "current model version v1" in dlg.weights_label.text()   # the next run starts from v1
    dlg.models.delete_selected(confirm=False)
    assert win.project.model_versions() == [] and not Path(versions[0].checkpoint).exists()
    assert dlg.models.table.rowCount() == 0


def test_child_error_shows_dialog_and_app_stays_usable(qtbot, base, tmp_path, errors):
    """A training process killed mid-run (as by the OOM killer) is reported in a dialog; nothing is
    registered and the window keeps working."""
    shutil.copytree(base, tmp_path / "copy")
    win = _window(qtbot, tmp_path / "copy" / "proj")
    dlg = _open_dialog(win)
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.progress_count >= 1 or dlg.last_error is not None, timeout=TIMEOUT_MS)
    assert dlg.last_error is None
    with qtbot.waitSignal(dlg.run_failed, timeout=TIMEOUT_MS) as failed:
        dlg.process.kill()
    assert "ended unexpectedly" in failed.args[0] and "SIGKILL" in failed.args[0]
    assert len(errors) == 1 and errors[0].startswith("Training failed")
    assert dlg.state == "idle" and dlg.start_button.isEnabled() and not dlg.cancel_button.isEnabled()
    assert not dlg.prelabel_button.isVisible()
    assert win.last_error == failed.args[0] and win.project.model_versions() == []
    ids = win.image_list.image_ids()
    win.next_image()
    assert win.current_image_id == ids[1]   # the app keeps working
    win.close()


def test_curve_widget_draws_streamed_dicts(qtbot):
    w = CurveWidget()
    qtbot.addWidget(w)
    w.resize(400, 200)
    for it in range(1, 11):
        info = {"iteration": it, "iterations": 10, "losses": {"total": 10.0 / it}}
        if it % 5 == 0:
            info["val"] = {"iteration": it, "segm_AP": 0.1 * it / 5, "bbox_AP": 0.2, "best_segm_AP": 0.2,
                           "best_iteration": it}
        w.add_progress(info)
    w.add_progress({"iteration": 11, "iterations": 10, "losses": {"total": float("nan")}})   # skipped
    assert len(w.loss_points) == 10 and len(w.val_points) == 2 and w.iterations == 11
    image = w.grab().toImage()
    colors = {image.pixelColor(x, y).rgb() for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)}
    assert image.width() == 400
    assert any(_near(c, LOSS_COLOR) for c in colors) and any(_near(c, SEGM_COLOR) for c in colors)
    w.clear()
    assert w.loss_points == [] and w.val_points == []


def _near(rgb: int, color) -> bool:
    r, g, b = (rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255
    return abs(r - color.red()) + abs(g - color.green()) + abs(b - color.blue()) < 30


def test_error_message_from_child_is_shown(qtbot, base, tmp_path, errors):
    """The child's own ``{"type": "error"}`` message (an AnnotatorError, a diverged run ...) goes to
    the error dialog the same way (the queue is stubbed: no process)."""
    shutil.copytree(base, tmp_path / "copy")
    win = _window(qtbot, tmp_path / "copy" / "proj")
    dlg = _open_dialog(win)

    class Stub:
        def poll(self, timeout=0.0):
            return [{"type": "log", "message": "starting"},
                    {"type": "error", "message": "TrainDivergedError: training diverged; lower --lr",
                     "traceback": "..."}]

    dlg.process, dlg.state = Stub(), "running"
    dlg.poll()
    assert dlg.state == "idle" and errors == ["Training failed: TrainDivergedError: training diverged; lower --lr"]
    assert "starting" in dlg.log_view.toPlainText() and dlg.start_button.isEnabled()
    assert win.last_error.startswith("TrainDivergedError")
