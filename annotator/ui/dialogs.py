"""Dialog helpers: error box, export options, checkpoint / model / category pickers.

Tests replace the blocking parts by monkeypatching the module-level functions
(``show_error``, ``show_info``, ``ask_export``, ``ask_checkpoint``, ``ask_model``); the window also records the
last message in ``MainWindow.last_error``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from annotator.errors import AnnotatorError
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QInputDialog,
    QLineEdit, QMessageBox, QPushButton, QWidget,
)

EXPORT_INCLUDES = ("accepted", "human", "all")
EXPORT_INCLUDE_HELP = {
    "accepted": "accepted + edited instances (reviewed ground truth)",
    "human": "human-drawn instances only",
    "all": "everything except rejected, predictions included",
}


def user_action(method):
    """Decorator for window methods: an ``AnnotatorError`` goes to ``self.report_error`` (an
    error dialog; a routine ``Refusal`` only to the status bar) and the method returns None."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except AnnotatorError as exc:
            self.report_error(exc)
            return None
    return wrapper


def class_name_dialog(parent: QWidget | None, label: str, default: str = "") -> QInputDialog:
    """The dialog :func:`ask_class_name` runs (title "Class", ``label``, the text ``default``)."""
    dlg = QInputDialog(parent)
    dlg.setWindowTitle("Class")
    dlg.setLabelText(label)
    dlg.setTextValue(default)
    return dlg


def ask_class_name(parent: QWidget | None, label: str, default: str = "") -> str | None:
    """A class name typed by the person (``None`` when cancelled)."""
    dlg = class_name_dialog(parent, label, default)
    return dlg.textValue() if dlg.exec() == QDialog.Accepted else None


def show_error(parent: QWidget | None, message: str, title: str = "Error") -> None:
    """Show a user error (one line, no traceback) in a modal message box."""
    QMessageBox.critical(parent, title, message)


def show_info(parent: QWidget | None, message: str, title: str = "Annotator") -> None:
    """Show a notice (read-only project, unclean shutdown) in a modal message box."""
    QMessageBox.information(parent, title, message)


class ExportDialog(QDialog):
    """Output path + ``include`` choice (accepted | human | all) for COCO export."""

    def __init__(self, parent: QWidget | None, default_path: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Export COCO")
        self.path_edit = QLineEdit(default_path)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        self.include_combo = QComboBox()
        for key in EXPORT_INCLUDES:
            self.include_combo.addItem(f"{key} - {EXPORT_INCLUDE_HELP[key]}", key)
        form = QFormLayout(self)
        form.addRow("File", row)
        form.addRow("Include", self.include_combo)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export COCO", self.path_edit.text(), "COCO JSON (*.json)")
        if path:
            self.path_edit.setText(path)

    def values(self) -> tuple[str, str]:
        """``(path, include)``."""
        return self.path_edit.text().strip(), self.include_combo.currentData()


def ask_export(parent: QWidget | None, default_path: str = "") -> tuple[str, str] | None:
    """Ask for the export file and ``include``; ``None`` if cancelled."""
    dlg = ExportDialog(parent, default_path)
    if dlg.exec() != QDialog.Accepted:
        return None
    path, include = dlg.values()
    return (path, include) if path else None


def ask_checkpoint(parent: QWidget | None, start_dir: str = "") -> str | None:
    """Ask for a segcore checkpoint file (``.pth``); ``None`` if cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Choose segcore checkpoint", start_dir,
                                          "segcore checkpoint (*.pth *.pt);;All files (*)")
    return path or None


def ask_folder(parent: QWidget | None, start_dir: str = "") -> str | None:
    """Ask for an image folder or project folder; ``None`` if cancelled."""
    path = QFileDialog.getExistingDirectory(parent, "Open folder or project", start_dir)
    return path or None


FILE_CHOICE = "Checkpoint file..."


def ask_model(parent: QWidget | None, versions: Sequence, start_dir: str = "") -> int | str | None:
    """Pick a registered model version (returns its id) or a checkpoint file (returns its path).

    ``versions``: ``ModelVersion`` records (``id``, ``arch``, ``checkpoint``). ``None`` if cancelled.
    """
    if not versions:
        return ask_checkpoint(parent, start_dir)
    items = [f"v{v.id}: {v.arch} ({Path(str(v.checkpoint)).name})" for v in versions] + [FILE_CHOICE]
    choice, ok = QInputDialog.getItem(parent, "Choose model", "Model", items, 0, False)
    if not ok:
        return None
    if choice == FILE_CHOICE:
        return ask_checkpoint(parent, start_dir)
    return int(versions[items.index(choice)].id)
