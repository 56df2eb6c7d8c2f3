"""GUI: File > Import annotations / Export for every interchange format (file dialogs patched),
a bad file shown as an error with the project unchanged, and Help > About."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

import annotator  # noqa: E402
from annotator.project import Project  # noqa: E402
from annotator.samples import ensure_sample_project  # noqa: E402
from annotator.ui import dialogs  # noqa: E402
from annotator.ui.main_window import MainWindow  # noqa: E402

pytestmark = pytest.mark.gui
FORMATS = ("yolo", "labelme", "via", "masks")


@pytest.fixture
def shown(monkeypatch) -> dict:
    """Error and information dialogs are recorded instead of shown."""
    out: dict[str, list[str]] = {"errors": [], "info": []}
    monkeypatch.setattr(dialogs, "show_error", lambda parent, message, title="Error": out["errors"].append(message))
    monkeypatch.setattr(dialogs, "show_info", lambda parent, message, title="": out["info"].append(message))
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The bundled sample project (5 images, 39 COCO annotations), built once per module."""
    return ensure_sample_project(tmp_path_factory.mktemp("sample") / "sample-project")


def _window(qtbot, project_dir: Path) -> MainWindow:
    win = MainWindow(score_threshold=0.0)
    qtbot.addWidget(win)
    win.set_project(Project.open(project_dir, create_if_folder=False))
    win.show()
    return win


def _blank_copy(sample: Path, dest: Path) -> Path:
    """A new project over a copy of the sample images, without annotations."""
    dest.mkdir()
    for f in sample.glob("*.jpg"):
        shutil.copyfile(f, dest / f.name)
    Project.create(dest, images_dir=dest).close()
    return dest


def _patch_dialogs(monkeypatch, path: Path) -> list[str]:
    """Every QFileDialog static chooser answers ``path``; returns the list of titles asked."""
    asked: list[str] = []

    def folder(parent, title, start="", *a, **k):
        asked.append(title)
        return str(path)

    def file(parent, title, start="", filt="", *a, **k):
        asked.append(title)
        return str(path), filt

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(folder))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(file))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(file))
    return asked


def test_file_menu_has_every_format(qtbot, sample, shown):
    win = _window(qtbot, sample)
    bar = [a.text() for a in win.menuBar().actions()]
    assert bar[0] == "&File" and bar[-1] == "&Help"
    file_menu = win.menuBar().actions()[0].menu()
    subs = {a.text(): a.menu() for a in file_menu.actions() if a.menu() is not None}
    assert [a.text() for a in subs["&Import annotations"].actions()] == \
        ["COCO...", "YOLO-seg...", "labelme...", "VIA...", "mask PNGs..."]
    assert [a.text() for a in subs["E&xport"].actions()] == \
        ["COCO...", "YOLO-seg...", "labelme...", "VIA...", "mask PNGs..."]
    export = win.actions_by_name["export"]
    assert export.shortcut().toString() == "Ctrl+E" and export.toolTip() == "Export COCO (Ctrl+E)"
    win.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_through_the_menu(qtbot, sample, tmp_path, monkeypatch, shown, fmt):
    win = _window(qtbot, sample)
    out = tmp_path / ("export.json" if fmt == "via" else "export")
    if fmt != "via":
        out.mkdir()
    asked = _patch_dialogs(monkeypatch, out)
    win.actions_by_name[f"export_{fmt}"].trigger()
    assert shown["errors"] == [] and len(asked) == 1
    line = shown["info"][-1]
    assert line.startswith(f"wrote {out}: exported 5 images") and f"({fmt})" in line
    assert win.status_label.text() == line
    written = {"yolo": out / "data.yaml", "labelme": out / "000000261888.json", "via": out,
               "masks": out / "categories.json"}[fmt]
    assert written.is_file()
    win.close()

    blank = _blank_copy(sample, tmp_path / "blank")
    win = _window(qtbot, blank)
    assert win.project.annotations() == []
    source = out / "data.yaml" if fmt == "yolo" else out
    _patch_dialogs(monkeypatch, source)
    win.actions_by_name[f"import_{fmt}"].trigger()
    assert shown["errors"] == [], shown["errors"]
    line = shown["info"][-1]
    assert line.startswith("imported 5 images") and f"({fmt})" in line and win.status_label.text() == line
    anns = win.project.annotations()
    assert len(anns) > 0 and all(a.source == "human" and a.review_state == "accepted" for a in anns)
    assert win.instance_panel.rowCount() == len(win.project.annotations(win.current_image_id))
    assert win.category_combo.count() == len(win.project.categories()) > 0
    if fmt != "yolo":  # YOLO export copies the images into images/{train,val}: matched by content
        assert len(win.project.images()) == 5
    assert all(win.image_list.state_of(i) == "done" for i in win.image_list.image_ids())
    win.close()


def test_import_coco_and_bad_file_leaves_project_unchanged(qtbot, sample, tmp_path, monkeypatch, shown):
    blank = _blank_copy(sample, tmp_path / "blank")
    win = _window(qtbot, blank)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"_via_img_metadata": {"x": {"filename": "nope.jpg", "regions": 3}}}))
    _patch_dialogs(monkeypatch, bad)
    win.actions_by_name["import_via"].trigger()
    assert len(shown["errors"]) == 1 and "bad.json" in shown["errors"][0] and "\n" not in shown["errors"][0]
    assert win.last_error == shown["errors"][0] and shown["info"] == []
    assert win.project.annotations() == [] and win.project.categories() == []

    win.actions_by_name["import_coco"].trigger()    # not a COCO file either
    assert len(shown["errors"]) == 2 and win.project.annotations() == []

    coco = tmp_path / "instances.json"
    shutil.copyfile(annotator.resources() / "samples" / "annotations.json", coco)
    _patch_dialogs(monkeypatch, coco)
    win.actions_by_name["import_coco"].trigger()
    assert len(shown["errors"]) == 2
    assert shown["info"][-1].startswith("imported 5 images (0 new), 39 annotations")
    assert len(win.project.annotations()) == 39 and win.instance_panel.rowCount() > 0
    win.close()


def test_cancelled_dialog_does_nothing(qtbot, sample, tmp_path, monkeypatch, shown):
    win = _window(qtbot, sample)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    for fmt in FORMATS:
        win.actions_by_name[f"export_{fmt}"].trigger()
    assert shown == {"errors": [], "info": []}
    win.close()


def test_about_dialog(qtbot, sample, shown):
    win = _window(qtbot, sample)
    win.actions_by_name["about"].trigger()
    dlg = win.about_dialog
    assert dlg is not None and dlg.isVisible()
    text = dlg.plain_text()
    assert f"annotator {annotator.version()}" in text
    assert "torch " in text and "CUDA build:" in text and "CUDA device:" in text and "PySide6 " in text
    assert "MIT License" in text and "CC BY-NC 4.0" in text and "non-commercial" in text
    assert "000000547336.jpg" in text and "CC BY-SA 2.0" in text       # sample data licences
    assert not win.windowIcon().isNull()
    dlg.close()
    win.close()
