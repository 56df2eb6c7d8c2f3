"""GUI (offscreen): box-to-mask (X) with the project's active model version. A random-init
centermask_tiny checkpoint (saved with segcore.checkpoints): drawing a box creates a model
instance (source model, the version id) whose mask lies inside the box and equals
``segcore.prompt.BoxPrompter``'s mask for that box and class; the model is loaded and run off the
GUI thread; undo / redo are byte-identical. A broken checkpoint shows one error and falls back to
GrabCut; a YOLACT active version uses GrabCut without loading anything."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from annotator import masks  # noqa: E402
from annotator.project import Project  # noqa: E402
from annotator.tools import interaction  # noqa: E402
from annotator.ui.workers import BoxPrompterCache  # noqa: E402

pytestmark = pytest.mark.gui
WIDTH = 200
CATS = [{"id": 1, "name": "thing"}, {"id": 2, "name": "stuff"}]


@pytest.fixture
def project_dir(coco_tiny, tmp_path) -> Path:
    """One real coco-tiny val image, 200 px wide, a project with two categories and a
    random-init centermask_tiny model version (active)."""
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    folder = tmp_path / "images"
    folder.mkdir()
    src = sorted((coco_tiny / "val2017").glob("*.jpg"))[0]
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    cv2.imwrite(str(folder / "a.png"), cv2.resize(img, (WIDTH, round(h * WIDTH / w))))
    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=2)
    with torch.no_grad():   # random init predicts ~0.5 everywhere; spread the mask logits
        torch.nn.init.normal_(model.roi_heads.mask_head.predictor.weight, std=0.05)
    save_checkpoint(tmp_path / "centermask_tiny.pth", model, categories=CATS)
    with Project.create(tmp_path / "proj", images_dir=folder) as p:
        p.add_category("thing", id=1)
        p.add_category("stuff", id=2)
        v = p.register_model_version(arch="centermask_tiny", checkpoint=tmp_path / "centermask_tiny.pth",
                                     categories=CATS)
        p.set_active_model_version(v)
    return tmp_path / "proj"


def _send(canvas, kind, x, y):
    p = QPointF(canvas.mapFromScene(QPointF(x, y)))
    buttons = Qt.NoButton if kind == QEvent.MouseButtonRelease else Qt.LeftButton
    QApplication.sendEvent(canvas.viewport(), QMouseEvent(kind, p, p, Qt.LeftButton, buttons, Qt.NoModifier))


def drag(canvas, pts):
    _send(canvas, QEvent.MouseButtonPress, *pts[0])
    for x, y in pts[1:]:
        _send(canvas, QEvent.MouseMove, x, y)
    _send(canvas, QEvent.MouseButtonRelease, *pts[-1])


def rows(win):
    return win.project._conn.execute("SELECT * FROM annotations WHERE image_id = ? ORDER BY id",
                                     (win.current_image_id,)).fetchall()


@pytest.fixture
def spy(monkeypatch) -> dict:
    """Records the boxes the tool asked for and the threads the model was loaded / run on."""
    from segcore.prompt import BoxPrompter

    out = {"boxes": [], "load_threads": [], "predict_threads": []}
    orig_job, orig_load, orig_predict = interaction.box_mask_job, BoxPrompter.from_checkpoint, BoxPrompter.predict

    def job(ctx, box, model=None):
        out["boxes"].append(tuple(box))
        return orig_job(ctx, box, model)

    def load(cls, *args, **kwargs):
        out["load_threads"].append(threading.current_thread() is threading.main_thread())
        return orig_load.__func__(cls, *args, **kwargs)

    def predict(self, *args, **kwargs):
        out["predict_threads"].append(threading.current_thread() is threading.main_thread())
        return orig_predict(self, *args, **kwargs)

    monkeypatch.setattr(interaction, "box_mask_job", job)
    monkeypatch.setattr(BoxPrompter, "from_checkpoint", classmethod(load))
    monkeypatch.setattr(BoxPrompter, "predict", predict)
    return out


def test_box_uses_active_centermask_off_the_gui_thread(qtbot, win, seen, spy, project_dir, monkeypatch):
    from segcore.prompt import BoxPrompter

    # the plumbing of a model mask (threads, provenance, undo): accept even this random-init
    # model's mask, which the quality rule would replace by GrabCut (the next test)
    monkeypatch.setattr(interaction, "MIN_MASK_SCORE", 0.0)
    monkeypatch.setattr(interaction, "MIN_BOX_FILL", 0.0)

    c = win.canvas
    qtbot.keyClick(win, Qt.Key_X)
    assert win.tool.name == "box" and "(X)" in win.actions_by_name["tool_box"].toolTip()
    win.current_category_id = 2
    version = win.project.active_model_version()
    before = rows(win)
    drag(c, [(60, 30), (100, 60), (150, 110)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert seen["errors"] == [] and len(rows(win)) == len(before) + 1
    assert spy["load_threads"] == [False] and spy["predict_threads"] == [False]     # never the GUI thread
    ann = win.project.annotation(win.selected_id)
    assert (ann.source, ann.model_version, ann.category_id, ann.review_state) == ("model", version, 2, "edited")
    assert ann.score is not None and 0.0 <= ann.score <= 1.0
    (box,) = spy["boxes"]
    x0, y0, x1, y1 = box
    assert abs(x0 - 60) < 1.5 and abs(y1 - 110) < 1.5
    m = masks.decode_rle(ann.rle)
    ys, xs = np.nonzero(m)
    assert m.any() and xs.min() >= int(x0) and xs.max() <= int(x1) and ys.min() >= int(y0) and ys.max() <= int(y1)
    reference = BoxPrompter(win.box_prompters.get(str(project_dir.parent / "centermask_tiny.pth")).predictor)
    expected = reference.predict(win.canvas_image, [list(box)], [2])
    del spy["predict_threads"][1:]     # the reference call above ran here, on purpose
    assert np.array_equal(m, expected.masks[0]) and ann.score == pytest.approx(float(expected.scores[0]), abs=1e-6)
    after = rows(win)

    # a second box reuses the loaded model
    drag(c, [(56, 26), (100, 60), (146, 106)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert win.box_prompters.loads == 1 and spy["predict_threads"] == [False, False] and seen["errors"] == []
    assert win.project.annotation(win.selected_id).source == "model"
    # undo both: byte-identical rows; redo the first
    win.undo()
    assert rows(win) == after
    win.undo()
    assert rows(win) == before
    win.redo()
    assert rows(win) == after


def test_poor_model_mask_falls_back_to_grabcut_and_the_engine_is_a_choice(qtbot, win, seen, spy):
    """The random-init model's box mask covers 0.2 % of the box with score 0: GrabCut is used,
    the status bar (not a dialog) says why; with the engine set to GrabCut the model is not asked."""
    qtbot.keyClick(win, Qt.Key_X)
    n = len(rows(win))
    drag(win.canvas, [(60, 30), (100, 60), (150, 110)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert seen["errors"] == [] and len(rows(win)) == n + 1
    assert win.project.annotation(win.selected_id).source == "human" and spy["predict_threads"] == [False]
    assert "looked poor" in win.status_label.text() and "GrabCut" in win.status_label.text()
    assert win.box_engine_combo.isVisible() and win.box_engine_combo.currentData() == "model"
    win.box_engine_combo.setCurrentIndex(win.box_engine_combo.findData("grabcut"))
    assert win.box_engine == "grabcut" and win.box_model() is None
    drag(win.canvas, [(56, 26), (100, 60), (146, 106)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert len(rows(win)) == n + 2 and spy["predict_threads"] == [False]      # the model was not asked
    assert seen["errors"] == []


def test_broken_model_falls_back_to_grabcut_and_yolact_uses_grabcut(qtbot, win, seen, spy, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    p = win.project
    v_bad = p.register_model_version(arch="blendmask_tiny", checkpoint=bad, categories=CATS)
    p.set_active_model_version(v_bad)
    qtbot.keyClick(win, Qt.Key_X)
    n = len(rows(win))
    drag(win.canvas, [(60, 30), (100, 60), (150, 110)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert len(seen["errors"]) == 1 and f"model v{v_bad} failed" in seen["errors"][0]
    assert "GrabCut" in seen["errors"][0] and len(rows(win)) == n + 1
    assert p.annotation(win.selected_id).source == "human"       # GrabCut's instance
    # again: no second dialog (status bar only), no second load attempt
    drag(win.canvas, [(56, 26), (100, 60), (146, 106)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert len(seen["errors"]) == 1 and len(rows(win)) == n + 2 and win.box_prompters.loads == 1
    assert "GrabCut" in win.status_label.text()

    # a YOLACT active version: GrabCut, nothing loaded, nothing reported
    v_yolact = p.register_model_version(arch="yolact_tiny", checkpoint=tmp_path / "missing.pth", categories=CATS)
    p.set_active_model_version(v_yolact)
    assert win.box_model() is None
    drag(win.canvas, [(60, 30), (100, 60), (150, 110)])
    qtbot.waitUntil(lambda: win.pending_jobs == 0, timeout=60000)
    assert len(seen["errors"]) == 1 and len(rows(win)) == n + 3 and win.box_prompters.loads == 1
    assert p.annotation(win.selected_id).source == "human" and spy["predict_threads"] == []


def test_prompter_cache_reloads_when_the_checkpoint_changes(tmp_path):
    cache = BoxPrompterCache(device="cpu")
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    for _ in range(2):
        with pytest.raises(ValueError, match="a.pth"):
            cache.loader(str(a))()
    assert cache.loads == 1
    with pytest.raises(ValueError, match="b.pth"):
        cache.get(str(b))
    assert cache.loads == 2
    cache.clear()
    with pytest.raises(ValueError):
        cache.get(str(b))
    assert cache.loads == 3
