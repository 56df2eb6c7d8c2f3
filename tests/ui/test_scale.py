"""Real-size projects and long sessions (offscreen): a 5,000-image project (symlinks to coco-tiny
images) opens and is stepped through 200 images; a scripted session of 5,000+ user actions (next
/ previous image, brush, polygon, undo / redo, accept, class change, select, delete, pre-label with
a tiny model) ends with no crash, no error dialog and resident memory growth under 200 MB."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import Qt

from annotator.project import Project
from annotator.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_5000_image_project_opens_and_steps_200_images(qtbot, tmp_path, coco_tiny, seen):
    src = sorted((coco_tiny / "val2017").glob("*.jpg")) + sorted((coco_tiny / "train2017").glob("*.jpg"))
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(5000):
        os.symlink(src[k % len(src)], folder / f"img_{k:05d}.jpg")
    with Project.create(tmp_path / "proj", images_dir=folder) as p:
        assert p.scan.added == 5000 and not p.scan.skipped
    t0 = time.perf_counter()
    win = MainWindow(Project.open(tmp_path / "proj", create_if_folder=False))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    opened = time.perf_counter() - t0
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    assert win.image_list.count() == 5000 and win.current_image_id == win.image_list.image_ids()[0]
    ids = win.image_list.image_ids()
    for k in range(200):
        qtbot.keyClick(win, Qt.Key_D)
        assert win.current_image_id == ids[k + 1]
        assert win.image_list.current_image_id() == ids[k + 1]
        assert win.canvas_image is not None
    assert win.image_list.state_of(ids[200]) == "unlabeled"
    win.set_image_filter("done")  # nothing done: only the current image stays listed
    assert win.image_list.image_ids() == [ids[200]]
    win.set_image_filter(None)
    assert seen["errors"] == []
    print(f"5,000-image project: window in {opened:.2f} s")
    win.close()


@pytest.fixture
def project_dir(coco_tiny, tmp_path) -> Path:
    """Twelve real coco-tiny val images, 200 px wide, in a project with two classes."""
    folder = tmp_path / "images"
    folder.mkdir()
    for src in sorted((coco_tiny / "val2017").glob("*.jpg"))[:12]:
        img = cv2.imread(str(src))
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / src.with_suffix(".png").name), cv2.resize(img, (200, round(h * 200 / w))))
    with Project.create(tmp_path / "proj", images_dir=folder) as p:
        p.add_category("thing")
        p.add_category("stuff")
    return tmp_path / "proj"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    save_checkpoint(path, build_model("yolact_tiny", num_classes=2, input_size=128),
                    categories=[{"id": 1, "name": "thing"}, {"id": 2, "name": "stuff"}])
    return path


@pytest.mark.slow
def test_soak_session_of_5000_actions(qtbot, win, seen, checkpoint):
    from tests.ui.test_editing import click, drag  # the same synthetic mouse events as the tool tests

    c = win.canvas
    actions = 0

    def key(k, mods=Qt.NoModifier):
        nonlocal actions
        qtbot.keyClick(win, k, mods)
        actions += 1

    def stroke(points):
        nonlocal actions
        drag(c, points)
        actions += 1

    def tap(x, y):
        nonlocal actions
        click(c, x, y)
        actions += 1

    win.set_model(str(checkpoint))
    baseline = None
    cycle = 0
    while actions < 5000:
        if cycle == 20:  # after warm-up (caches, first pre-label, Qt's own allocations)
            baseline = rss_mb()
        o = 8 + cycle % 40
        key(Qt.Key_D)
        key(Qt.Key_Escape)
        key(Qt.Key_B)
        stroke([(o, 20), (o + 40, 22), (o + 70, 24)])
        key(Qt.Key_2 if cycle % 2 else Qt.Key_1)
        key(Qt.Key_P)
        for x, y in [(o, 50), (o + 50, 50), (o + 50, 90), (o, 90)]:
            tap(x, y)
        key(Qt.Key_Return)
        key(Qt.Key_Z, Qt.ControlModifier)
        key(Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
        key(Qt.Key_V)
        tap(o + 25, 70)  # selects the polygon
        assert win.selected_id is not None
        key(Qt.Key_A)
        key(Qt.Key_D, Qt.ShiftModifier)
        key(Qt.Key_D)
        if cycle % 3 == 0:
            tap(o + 25, 70)
            key(Qt.Key_Delete)
        if cycle % 60 == 5:  # pre-label the shown image with the tiny model (background worker)
            with qtbot.waitSignal(win.prelabel_finished, timeout=120_000):
                win.prelabel_current()
            actions += 1
        assert seen["errors"] == [], seen["errors"][:3]
        cycle += 1
    growth = rss_mb() - baseline
    print(f"soak: {actions} actions in {cycle} cycles, resident memory growth {growth:.0f} MB")
    assert actions >= 5000
    assert growth < 200
    assert sum(len(win.project.annotations(i)) for i in win.project.image_ids()) > 0
    assert win.project._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
