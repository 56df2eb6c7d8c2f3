"""GUI (offscreen): each editing tool driven with synthetic mouse / key events on a real
coco-tiny image; the resulting masks are checked in the store (pixel counts, holes, parts);
Undo / Redo return byte-identical rows, also after switching images; review workflow; session
lock (read-only second instance, unclean-shutdown notice)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from annotator import masks
from annotator.project import Project
from annotator.tools import mask_ops
from annotator.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
WIDTH = 200


@pytest.fixture
def project_dir(coco_tiny, tmp_path) -> Path:
    """Two real coco-tiny val images, downscaled to 200 px wide, made into a project."""
    folder = tmp_path / "images"
    folder.mkdir()
    for src in sorted((coco_tiny / "val2017").glob("*.jpg"))[:2]:
        img = cv2.imread(str(src))
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / src.with_suffix(".png").name), cv2.resize(img, (WIDTH, round(h * WIDTH / w))))
    with Project.create(tmp_path / "proj", images_dir=folder) as p:
        p.add_category("thing")
        p.add_category("stuff")
    return tmp_path / "proj"


def _view(canvas, x, y):
    return canvas.mapFromScene(QPointF(x, y))


def _send(canvas, kind, x, y, button=Qt.LeftButton, mods=Qt.NoModifier):
    p = QPointF(_view(canvas, x, y))
    buttons = Qt.NoButton if kind == QEvent.MouseButtonRelease else button
    QApplication.sendEvent(canvas.viewport(), QMouseEvent(kind, p, p, button, buttons, mods))


def drag(canvas, pts, button=Qt.LeftButton, mods=Qt.NoModifier):
    _send(canvas, QEvent.MouseButtonPress, *pts[0], button, mods)
    for x, y in pts[1:]:
        _send(canvas, QEvent.MouseMove, x, y, button, mods)
    _send(canvas, QEvent.MouseButtonRelease, *pts[-1], button, mods)


def click(canvas, x, y, button=Qt.LeftButton, mods=Qt.NoModifier):
    drag(canvas, [(x, y)], button, mods)


def key(qtbot, win, k, mods=Qt.NoModifier):
    qtbot.keyClick(win, k, mods)


def rows(win, image_id=None):
    img = win.current_image_id if image_id is None else image_id
    return win.project._conn.execute("SELECT * FROM annotations WHERE image_id = ? ORDER BY id", (img,)).fetchall()


def mask_of(win, ann_id):
    return masks.decode_rle(win.project.annotation(ann_id).rle)


def test_tools_edit_masks_and_undo_redo_is_byte_identical(qtbot, win, seen):
    c = win.canvas
    first = win.current_image_id
    history = [rows(win)]

    # brush (B) with nothing selected: a new instance, one stroke = one command
    key(qtbot, win, Qt.Key_B)
    assert win.tool.name == "brush" and c.tool_mode and "(B)" in win.actions_by_name["tool_brush"].toolTip()
    win.set_brush_radius(4)
    drag(c, [(20, 20), (60, 22), (100, 20)])
    (a,) = [r.id for r in win.project.annotations(first)]
    m = mask_of(win, a)
    assert 700 < m.sum() < 1100 and m[20, 60] and len(mask_ops.split_parts(m)) == 1
    history.append(rows(win))

    # eraser (E) across the stroke: two parts, kept as one multi-part instance
    key(qtbot, win, Qt.Key_E)
    drag(c, [(60, 5), (60, 40)])
    m = mask_of(win, a)
    assert len(mask_ops.split_parts(m)) == 2 and not m[20, 60] and len(win.annotations()) == 1
    history.append(rows(win))

    # split (Y): one instance per part
    key(qtbot, win, Qt.Key_Y)
    assert sorted(len(mask_ops.split_parts(mask_of(win, r.id))) for r in win.annotations()) == [1, 1]
    assert len(win.annotations()) == 2
    history.append(rows(win))

    # polygon (P): four clicks + Enter -> a new polygon instance
    key(qtbot, win, Qt.Key_P)
    win.select_instance(None)
    for x, y in [(30, 50), (110, 50), (110, 110), (30, 110)]:
        click(c, x, y)
    assert c.preview_item_count() >= 1
    key(qtbot, win, Qt.Key_Return)
    poly_id = max(r.id for r in win.annotations())
    rec = win.project.annotation(poly_id)
    assert rec.polygon is not None and 80 * 60 * 0.9 < rec.area < 82 * 62
    history.append(rows(win))

    # Shift + polygon inside the selected instance cuts a hole
    win.select_instance(poly_id)
    for x, y in [(50, 70), (80, 70), (80, 95), (50, 95)]:
        click(c, x, y, mods=Qt.ShiftModifier)
    key(qtbot, win, Qt.Key_Return)
    m = mask_of(win, poly_id)
    assert mask_ops.count_holes(m) == 1 and not m[80, 65] and m[60, 40]
    history.append(rows(win))

    # fill holes (O)
    key(qtbot, win, Qt.Key_O)
    assert mask_ops.count_holes(mask_of(win, poly_id)) == 0
    history.append(rows(win))

    # magic wand (W): a new instance from the clicked colour region
    key(qtbot, win, Qt.Key_W)
    win.select_instance(None)
    n = len(win.annotations())
    click(c, 150, 120)
    assert len(win.annotations()) == n + 1 and win.project.annotation(win.selected_id).area > 0
    history.append(rows(win))

    # merge (M): previously selected (the wand region) into the polygon instance
    wand_id = win.selected_id
    win.select_instance(poly_id)
    area = win.project.annotation(poly_id).area
    key(qtbot, win, Qt.Key_M)
    assert wand_id not in [r.id for r in win.annotations()]
    assert win.project.annotation(poly_id).area >= area
    history.append(rows(win))

    # box to mask (X): GrabCut off the GUI thread
    key(qtbot, win, Qt.Key_X)
    n = len(win.annotations())
    drag(c, [(92, 38), (110, 60), (124, 76)])          # around the blue balloon
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=20000)
    assert seen["errors"] == [] and len(win.annotations()) == n + 1
    box_id = win.selected_id
    bm = mask_of(win, box_id)
    ys, xs = np.nonzero(bm)
    assert 300 < bm.sum() < 32 * 38 and bm[55, 108] and xs.min() >= 92 and xs.max() <= 124
    history.append(rows(win))

    # GrabCut refine (G): an include stroke (left button) on the balloon, an exclude stroke
    # (right button) beside it; Enter applies
    key(qtbot, win, Qt.Key_G)
    drag(c, [(106, 50), (110, 58)])
    drag(c, [(126, 40), (126, 75)], button=Qt.RightButton)
    assert c.preview_item_count() >= 2
    key(qtbot, win, Qt.Key_Return)
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=20000)
    rm = mask_of(win, box_id)
    assert seen["errors"] == [] and rm[55, 108] and not rm[40:76, 124:129].any()
    if rows(win) != history[-1]:
        history.append(rows(win))

    # vertex tool (N): drag a polygon vertex outwards
    win.select_instance(poly_id)
    win.execute(__import__("annotator.tools.commands", fromlist=["x"]).set_polygon(
        win.current_image_id, poly_id, [[30.0, 50.0, 110.0, 50.0, 110.0, 110.0, 30.0, 110.0]]))
    history.append(rows(win))
    key(qtbot, win, Qt.Key_N)
    drag(c, [(110, 110), (120, 118), (130, 125)])
    assert win.project.annotation(poly_id).polygon[0][4:6] == pytest.approx([130, 125], abs=1)
    history.append(rows(win))
    assert seen["errors"] == []

    # switch image and back: the history is kept
    key(qtbot, win, Qt.Key_D)
    assert win.current_image_id != first and not win.actions_by_name["undo"].isEnabled()
    key(qtbot, win, Qt.Key_D, Qt.ShiftModifier)
    assert win.current_image_id == first and win.actions_by_name["undo"].isEnabled()

    # undo (Ctrl+Z) every step: byte-identical rows at each step
    for expected in reversed(history[:-1]):
        key(qtbot, win, Qt.Key_Z, Qt.ControlModifier)
        assert rows(win) == expected
    assert rows(win) == [] and not win.actions_by_name["undo"].isEnabled()
    # redo (Ctrl+Shift+Z and Ctrl+Y), after another image switch
    win.next_image()
    win.previous_image()
    for k, expected in enumerate(history[1:]):
        if k % 2:
            key(qtbot, win, Qt.Key_Y, Qt.ControlModifier)
        else:
            key(qtbot, win, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
        assert rows(win) == expected
    assert seen["errors"] == []


def test_review_workflow_threshold_done_filter_next_unreviewed(qtbot, win, seen):
    ids = win.image_list.image_ids()
    first, second = ids
    p = win.project
    for img in ids:
        preds = [{"category_id": 1, "rle": masks.encode_mask(_square(p, img, i)), "score": s}
                 for i, s in enumerate((0.9, 0.5, 0.2))]
        p.replace_predictions(img, preds, None)
    win.image_list.refresh()
    win.reload_annotations()
    assert len(win.layer().ann_ids) == 3
    win.threshold_slider.setValue(40)                         # live: hides the 0.2 prediction
    assert win.display_threshold == pytest.approx(0.4) and len(win.layer().ann_ids) == 2
    key(qtbot, win, Qt.Key_A, Qt.ShiftModifier)                # accept all above the threshold
    states = sorted(a.review_state for a in p.annotations(first))
    assert states == ["accepted", "accepted", "predicted"]
    key(qtbot, win, Qt.Key_D, Qt.ControlModifier)              # done: reject the rest, go on
    assert p.image(first).done and sorted(a.review_state for a in p.annotations(first))[-1] == "rejected"
    assert win.image_list.state_of(first) == "done"
    assert win.current_image_id == second                      # moved on to the next unreviewed image
    assert "done (1 remaining prediction(s) rejected); next:" in win.status_label.text()
    key(qtbot, win, Qt.Key_D, Qt.ShiftModifier)                # back, and undo "done" there
    key(qtbot, win, Qt.Key_Z, Qt.ControlModifier)
    assert not p.image(first).done and win.image_list.state_of(first) == "predicted"
    key(qtbot, win, Qt.Key_D, Qt.ControlModifier | Qt.ShiftModifier)   # done: accept the rest
    assert all(a.review_state == "accepted" for a in p.annotations(first))
    win.show_image(first)
    win.set_image_filter("predicted")
    assert win.image_list.image_ids() == [first, second]      # the current image stays listed
    win.show_image(second)
    win.set_image_filter("predicted")
    assert win.image_list.image_ids() == [second]
    win.set_image_filter(None)
    win.show_image(first)
    key(qtbot, win, Qt.Key_U)                                  # next unreviewed
    assert win.current_image_id == second
    # digit key changes class of the selected prediction -> edited; one undo restores it
    ann = win.annotations()[0]
    win.select_instance(ann.id)
    before = rows(win)
    key(qtbot, win, Qt.Key_2)
    assert p.annotation(ann.id).category_id == 2 and p.annotation(ann.id).review_state == "edited"
    key(qtbot, win, Qt.Key_Z, Qt.ControlModifier)
    assert rows(win) == before
    # class manager: add, rename, recolour, merge (COCO ids kept)
    cat = win.add_category("extra")
    assert win.rename_category(cat.id, "extra2").name == "extra2"
    assert win.recolor_category(cat.id, "#112233").color == "#112233"
    assert win.merge_categories(2, 1) >= 0 and [c.id for c in p.categories()] == [1, cat.id]
    assert win.rename_category(1, "extra2") is None and seen["errors"]   # name taken -> dialog


def _square(p, img, i):
    rec = p.image(img)
    m = np.zeros((rec.height, rec.width), bool)
    m[10 + 20 * i:25 + 20 * i, 10:40] = True
    return m


def test_second_instance_read_only_and_unclean_shutdown_notice(qtbot, win, project_dir, seen):
    other = MainWindow(Project.open(project_dir, create_if_folder=False))
    qtbot.addWidget(other)
    assert other.project.read_only and "read-only" in seen["info"][-1]
    other.set_tool("brush")
    drag(other.canvas, [(10, 10), (30, 30)])
    assert seen["errors"] and "read-only" in seen["errors"][-1]
    assert win.project.annotations() == []                     # nothing written
    other.close()
    # simulate a crash of the first instance: its lock dies with it, the session file stays
    import os
    os.close(win.session._fd)
    win.session._fd = None
    win.session = None
    third = MainWindow(Project.open(project_dir, create_if_folder=False))
    qtbot.addWidget(third)
    assert not third.project.read_only and "did not close cleanly" in seen["info"][-1]
    third.close()
    assert not (project_dir / "annotator.session").exists()    # clean close removes it


def test_prelabel_run_is_one_undoable_step(qtbot, win, seen, tmp_path):
    """A real pre-label run (random-init yolact_tiny in the background worker) of the shown
    image is one step on that image's undo stack; undo / redo restore byte-identical rows."""
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    save_checkpoint(ckpt, build_model("yolact_tiny", num_classes=2, input_size=160),
                    categories=[{"id": 1, "name": "thing"}, {"id": 2, "name": "stuff"}])
    img = win.current_image_id
    keep = win.execute(__import__("annotator.tools.commands", fromlist=["x"]).add_mask(
        img, 1, _square(win.project, img, 0)))
    before = rows(win)
    win.threshold_slider.setValue(0)
    win.score_threshold = 0.0
    win.set_model(str(ckpt))
    assert win.model_label.text().endswith("tiny.pth")
    with qtbot.waitSignal(win.prelabel_finished, timeout=60000):
        assert win.prelabel_current()
    after = rows(win)
    assert seen["errors"] == [] and len(after) > len(before)
    assert win.history.undo_text(img) == "Pre-label" and win.actions_by_name["undo"].isEnabled()
    win.undo()
    assert rows(win) == before and win.project.annotation(keep).source == "human"
    win.redo()
    assert rows(win) == after
    assert win.instance_panel.row_values(after[-1][0])[3] == "model"


def test_recording_project_reports_each_image_after_the_commit(project_dir):
    """RecordingProject (the GUI worker's project): inside a write transaction of several images
    each image's record is held until the commit, then reported one per image; a rolled-back
    transaction reports nothing; a replace on its own reports at once."""
    from annotator.ui.workers import RecordingProject

    with Project.open(project_dir) as p, Project.open(project_dir) as other:
        ids, cat = p.image_ids(), p.categories()[0].id

        def committed(image_id):
            return len(other._conn.execute("SELECT id FROM annotations WHERE image_id = ?", (image_id,)).fetchall())

        seen = []
        rec = RecordingProject(p, lambda image_id, before, after, *_: seen.append(
            (image_id, len(before), len(after), committed(image_id))))

        def pred(image_id):
            im = p.image(image_id)
            m = np.zeros((im.height, im.width), bool)
            m[5:20, 5:30] = True
            return [{"category_id": cat, "rle": masks.encode_mask(m), "score": 0.5}]

        with rec.transaction():
            for i in ids:
                rec.replace_predictions(i, pred(i), None)
            assert seen == []                                     # held while the transaction is open
        assert seen == [(ids[0], 0, 1, 1), (ids[1], 0, 1, 1)]     # one record per image, committed rows
        with pytest.raises(RuntimeError), rec.transaction():
            rec.replace_predictions(ids[0], [], None)
            raise RuntimeError("rolled back")
        assert len(seen) == 2 and committed(ids[0]) == 1
        rec.replace_predictions(ids[0], [], None)
        assert seen[-1] == (ids[0], 1, 0, 0)


def test_prelabel_all_in_one_write_transaction_is_one_undo_step_per_image(qtbot, win, seen, tmp_path, monkeypatch):
    """"Pre-label all unreviewed" through the pipeline with every image in one write transaction
    (WRITE_SECONDS raised): each image still gets its own undo step, pushed only after the
    commit, and undoing one image leaves the other's predictions alone."""
    import torch

    import annotator.jobs.prelabel as job
    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    monkeypatch.setattr(job, "WRITE_SECONDS", 1e9)
    monkeypatch.setattr(job, "MIN_IMAGES_FOR_WORKERS", 1)   # read in a DataLoader worker process
    commits_seen = []
    other = Project.open(win.project.db_path)               # another connection: sees only committed rows
    win.prelabel_jobs.recorded.connect(lambda args: commits_seen.append(
        len(other._conn.execute("SELECT id FROM annotations WHERE image_id = ?", (args[0],)).fetchall())))
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    save_checkpoint(ckpt, build_model("yolact_tiny", num_classes=2, input_size=160),
                    categories=[{"id": 1, "name": "thing"}, {"id": 2, "name": "stuff"}])
    ids = win.image_list.image_ids()
    win.score_threshold = 0.0
    win.set_model(str(ckpt))
    with qtbot.waitSignal(win.prelabel_finished, timeout=60000) as done:
        assert win.prelabel_unreviewed()
    other.close()
    assert seen["errors"] == [] and done.args[0].images == len(ids) == 2
    after = {i: rows(win, i) for i in ids}
    assert all(after[i] for i in ids)
    assert len(commits_seen) == 2 and all(n > 0 for n in commits_seen)   # recorded after the commit
    assert [win.history.undo_text(i) for i in ids] == ["Pre-label", "Pre-label"]
    shown = win.current_image_id
    win.undo()
    assert rows(win) == [] and all(rows(win, i) == after[i] for i in ids if i != shown)
    win.redo()
    assert {i: rows(win, i) for i in ids} == after
