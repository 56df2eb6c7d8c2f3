"""File > Import annotations / Export: COCO, YOLO-seg, labelme, VIA and mask PNGs in the GUI.

The handlers call the same :mod:`annotator.io` functions as ``annotator import PROJECT --coco`` /
``--format F PATH`` and ``annotator export PROJECT --format F --out PATH`` (see
:mod:`annotator.cli`), on the GUI thread: imports are validated completely and written in one
transaction, exports file by file through temporary files, and both take well under a second
on the project sizes the app is used with. The summary line (``imported 5 images, 39 instances
(yolo); ...``, see :meth:`annotator.io.policy.FormatReport.line`) goes to the status bar and a
message box; an :class:`~annotator.errors.AnnotatorError` becomes an error dialog and leaves
the project unchanged. Exports write the ``accepted`` selection (accepted + edited, as the CLI's
default ``--include``); File > Export > COCO... keeps its dialog with the include choice.

The file choosers are the ``QFileDialog`` static methods (tests patch them).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from annotator.errors import AnnotatorError
from annotator.ui.dialogs import user_action

#: format key -> menu label (keys as in the CLI's ``--format``, plus ``coco``)
FORMAT_LABELS = {"coco": "COCO", "yolo": "YOLO-seg", "labelme": "labelme", "via": "VIA", "masks": "mask PNGs"}

# What each format reads / writes: "file" (with a name filter) or "folder".
IMPORT_SOURCES = {
    "coco": ("file", "COCO instances JSON (*.json);;All files (*)"),
    "yolo": ("file", "YOLO data.yaml (*.yaml *.yml);;All files (*)"),
    "labelme": ("folder", "folder of labelme JSON files"),
    "via": ("file", "VIA 2 project / region JSON (*.json);;All files (*)"),
    "masks": ("folder", "folder with instances/, classes/, categories.json"),
}
EXPORT_TARGETS = {
    "yolo": ("folder", "output folder (images/, labels/, data.yaml)"),
    "labelme": ("folder", "output folder (one JSON per image)"),
    "via": ("file", "VIA 2 region JSON (*.json)"),
    "masks": ("folder", "output folder (instances/, classes/, categories.json)"),
}


def _io_function(fmt: str, direction: str):
    """The ``import_<fmt>`` / ``export_<fmt>`` function of :mod:`annotator.io` (as the CLI uses)."""
    from annotator.io import coco, labelme, mask_png, via, yolo

    table = {
        ("import", "coco"): coco.import_coco, ("import", "yolo"): yolo.import_yolo,
        ("import", "labelme"): labelme.import_labelme, ("import", "via"): via.import_via,
        ("import", "masks"): mask_png.import_masks,
        ("export", "yolo"): yolo.export_yolo, ("export", "labelme"): labelme.export_labelme,
        ("export", "via"): via.export_via, ("export", "masks"): mask_png.export_masks,
    }
    try:
        return table[(direction, fmt)]
    except KeyError:
        raise AnnotatorError(f"format: {fmt!r} cannot be {direction}ed here; one of "
                             f"{', '.join(sorted(f for d, f in table if d == direction))}") from None


class _BusyCursor:
    def __enter__(self):
        QApplication.setOverrideCursor(Qt.WaitCursor)

    def __exit__(self, *exc):
        QApplication.restoreOverrideCursor()
        return False


class FormatsMixin:
    """File menu import / export of the interchange formats.

    Needs: ``project``, ``status_label``, ``report_error``, ``notify``, ``history``,
    ``image_list``, ``current_image_id``, ``show_image``, ``reload_annotations``,
    ``_refresh_categories``, ``_update_undo_actions``, ``prelabel_jobs``.
    """

    def _require_writable_project(self, action: str):
        if self.project is None:
            raise AnnotatorError(f"no project open: nothing to {action}")
        if action == "import" and self.prelabel_jobs.busy:
            raise AnnotatorError("pre-labelling is running: wait for it or cancel it (Esc) before importing")
        return self.project

    @user_action
    def import_annotations(self, fmt: str, path: str | Path) -> str:
        """Import annotations in format ``fmt`` (coco | yolo | labelme | via | masks) from
        ``path`` into the open project, all or nothing, then refresh the window.

        Args:
            fmt: format key (:data:`FORMAT_LABELS`).
            path: the file or folder the CLI's ``annotator import`` takes for that format.

        Returns:
            The summary line (also shown in the status bar and a message box); ``None`` after
            a user error, which is shown as an error dialog with the project unchanged.

        Raises:
            Nothing for user errors (:class:`AnnotatorError` is reported, not raised).
        """
        project = self._require_writable_project("import")
        path = Path(path)
        if not path.exists():
            raise AnnotatorError(f"{path}: not found")
        with _BusyCursor():
            result = _io_function(fmt, "import")(project, path)
        line = result.line()
        self._after_import()
        self.status_label.setText(line)
        self.notify(line)
        return line

    def _after_import(self) -> None:
        """New images / categories / annotations: reload lists, the canvas and undo state (the
        undo history is cleared: an import is not an undoable edit)."""
        self.history.clear()
        self.image_list.refresh()
        self._refresh_categories()
        ids = self.image_list.image_ids()
        if self.current_image_id is None and ids:
            self.show_image(ids[0])
        else:
            self.reload_annotations()
        self._update_undo_actions()

    @user_action
    def export_annotations(self, fmt: str, path: str | Path, include: str = "accepted") -> str:
        """Export the open project in format ``fmt`` (yolo | labelme | via | masks) to ``path``.

        Args:
            fmt: format key; COCO is :meth:`export_coco`.
            path: output folder (yolo, labelme, masks) or ``.json`` file (via).
            include: ``accepted`` | ``human`` | ``all`` (as ``annotator export --include``).

        Returns:
            ``"wrote PATH: <summary line>"`` (also in the status bar and a message box); ``None``
            after a user error (error dialog; nothing half-written at ``path``).
        """
        project = self._require_writable_project("export")
        with _BusyCursor():
            report = _io_function(fmt, "export")(project, Path(path), include=include)
        line = f"wrote {path}: {report.line()}"
        self.status_label.setText(line)
        self.notify(line)
        return line

    def _start_dir(self) -> str:
        return "" if self.project is None else str(self.project.root)

    def import_annotations_dialog(self, fmt: str) -> None:
        """File > Import annotations > FORMAT...: ask for the file / folder, then import."""
        kind, what = IMPORT_SOURCES[fmt]
        title = f"Import {FORMAT_LABELS[fmt]} annotations"
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, f"{title}: {what}", self._start_dir())
        else:
            path, _ = QFileDialog.getOpenFileName(self, title, self._start_dir(), what)
        if path:
            self.import_annotations(fmt, path)

    def export_annotations_dialog(self, fmt: str) -> None:
        """File > Export > FORMAT...: ask for the output folder / file, then export."""
        kind, what = EXPORT_TARGETS[fmt]
        title = f"Export {FORMAT_LABELS[fmt]}"
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, f"{title}: {what}", self._start_dir())
        else:
            start = str(Path(self._start_dir()) / f"{fmt}.json") if self.project is not None else ""
            path, _ = QFileDialog.getSaveFileName(self, title, start, what)
        if path:
            self.export_annotations(fmt, path)
