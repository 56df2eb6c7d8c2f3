"""Screenshots of the main window with each tool in use -> ``docs/screenshots/*.png``.

Run by ``packaging/screenshots.sh`` under Xvfb (works offscreen too: then only the window is
grabbed, dialogs separately). Builds the bundled sample project in a temporary
``XDG_DATA_HOME`` and drives the tools through the canvas signals, the way mouse input does.
Usage: ``python packaging/screenshots.py [OUT_DIR]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(out: Path) -> int:
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="annotator-shots-")
    from PySide6.QtCore import QThreadPool, Qt
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    from annotator.project import Project
    from annotator.samples import ensure_sample_project
    from annotator.ui import dialogs
    from annotator.ui.class_manager import ClassManagerDialog
    from annotator.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    dialogs.show_info = lambda *a, **k: None
    out.mkdir(parents=True, exist_ok=True)
    project = Project.open(ensure_sample_project())
    win = MainWindow(score_threshold=0.0)
    win.resize(1280, 800)
    win.move(0, 0)
    win.show()
    win.set_project(project)
    c = win.canvas

    def settle() -> None:
        for _ in range(5):
            app.processEvents()

    def shot(name: str, widget=None) -> None:
        settle()
        pix = (widget or win).grab()
        if widget is not None and QApplication.platformName() == "xcb":   # window + dialog
            pix = app.primaryScreen().grabWindow(0, 0, 0, 1280, 800)
        path = out / f"{name}.png"   # 256 colours: ~3x smaller PNGs, error-diffused
        pix.toImage().convertToFormat(QImage.Format_Indexed8, Qt.DiffuseDither).save(str(path), "PNG")
        print(f"{path} {path.stat().st_size // 1024} KiB")

    def press(x, y, button="left", mods=frozenset()):
        c.tool_pressed.emit(float(x), float(y), button, mods)

    def drag(points, button="left", release=True):
        press(*points[0], button)
        for p in points[1:]:
            c.tool_moved.emit(float(p[0]), float(p[1]))
        if release:
            c.tool_released.emit(float(points[-1][0]), float(points[-1][1]), button)

    anns = win.annotations()
    h, w = c.image_size()
    biggest = max(anns, key=lambda a: a.area)
    bx, by, bw, bh = biggest.bbox
    cx, cy = bx + bw / 2, by + bh / 2

    win.set_tool("select")
    win.select_instance(biggest.id)
    shot("01-select")

    win.select_instance(None)
    win.set_tool("polygon")
    for x, y in ((0.1, 0.1), (0.3, 0.08), (0.35, 0.3), (0.15, 0.35)):
        press(x * w, y * h)
        c.tool_released.emit(x * w, y * h, "left")
    c.tool_moved.emit(0.12 * w, 0.25 * h)
    shot("02-polygon")
    win.cancel_gesture()

    win.set_tool("brush")
    win.set_brush_radius(12)
    stroke = [(0.55 * w + i * 0.02 * w, 0.15 * h + (i % 3) * 0.02 * h) for i in range(12)]
    drag(stroke, release=False)
    shot("03-brush")
    c.tool_released.emit(*stroke[-1], "left")
    settle()

    win.select_instance(biggest.id)
    win.set_tool("eraser")
    drag([(cx - bw * 0.3, cy), (cx, cy + bh * 0.05), (cx + bw * 0.3, cy)], release=False)
    shot("04-eraser")
    win.cancel_gesture()

    win.select_instance(None)
    win.set_tool("box")
    drag([(0.05 * w, 0.55 * h), (0.2 * w, 0.7 * h), (0.3 * w, 0.9 * h)], release=False)
    shot("05-box-to-mask")
    win.cancel_gesture()

    win.set_tool("wand")
    win.tolerance_spin.setValue(25)
    press(0.9 * w, 0.1 * h)
    c.tool_released.emit(0.9 * w, 0.1 * h, "left")
    shot("06-magic-wand")

    win.select_instance(biggest.id)
    win.set_tool("refine")
    drag([(cx - bw * 0.2, cy - bh * 0.1), (cx, cy - bh * 0.15), (cx + bw * 0.2, cy - bh * 0.1)])
    drag([(bx + bw * 0.05, by + bh * 0.9), (bx + bw * 0.3, by + bh * 0.95)], button="right")
    shot("07-grabcut-refine")
    win.cancel_gesture()

    poly = next((a for a in win.annotations() if a.polygon), biggest)
    win.set_tool("vertex")
    win.select_instance(poly.id)
    shot("08-vertex-edit")

    win.set_tool("select")
    win.select_instance(None)
    dialog = ClassManagerDialog(win)
    dialog.show()
    dialog.move(400, 200)
    shot("09-class-manager", dialog)
    dialog.close()

    image_id = win.current_image_id
    preds = [{"category_id": a.category_id, "rle": a.rle, "score": s}
             for a, s in zip(sorted(win.annotations(), key=lambda a: -a.area)[:4], (0.92, 0.71, 0.45, 0.2))]
    win.project.replace_predictions(image_id, preds, None)
    win.reload_annotations()
    win.set_display_threshold(0.5)
    shot("10-review-slider")

    from annotator.ui.training import open_training

    dlg = open_training(win)
    dlg.move(330, 120)
    shot("12-train-dialog", dlg)
    dlg.close()
    QThreadPool.globalInstance().waitForDone(10_000)
    settle()

    # a folder without classes: the first polygon asks for the class in place (the shape stays)
    from annotator.ui.dialogs import class_name_dialog
    from annotator.ui.editing import FIRST_CLASS_PROMPT

    folder = Path(tempfile.mkdtemp(prefix="annotator-shots-folder-"))
    src = win.project.image_path(image_id)
    (folder / src.name).write_bytes(src.read_bytes())
    win.set_project(Project.open(folder))
    h, w = c.image_size()
    win.set_tool("polygon")
    for x, y in ((0.2, 0.2), (0.5, 0.15), (0.55, 0.5), (0.25, 0.55)):
        press(x * w, y * h)
        c.tool_released.emit(x * w, y * h, "left")
    prompt = class_name_dialog(win, FIRST_CLASS_PROMPT, "object")
    prompt.show()
    prompt.move(480, 330)
    shot("11-class-prompt", prompt)
    prompt.close()
    win.cancel_gesture()
    QThreadPool.globalInstance().waitForDone(10_000)
    settle()
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots"))
