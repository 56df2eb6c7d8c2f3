"""Class manager: add, rename, recolour and merge categories (COCO ids kept).

:class:`ClassManagerMixin` holds the window's methods (one store transaction each). Category
changes are project-wide, so they are undone on their own stack
(:mod:`annotator.tools.category_commands`), not on the per-image ones: the dialog's Undo / Redo
buttons (Ctrl+Z / Ctrl+Shift+Z while it has focus) walk it.
:class:`ClassManagerDialog` is the thin dialog over them (Ctrl+K).
"""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QColorDialog, QDialog, QHBoxLayout, QInputDialog, QListWidget, QListWidgetItem, QPushButton,
    QVBoxLayout,
)

from annotator.errors import AnnotatorError
from annotator.tools import category_commands as cc
from annotator.tools.colors import category_color
from annotator.tools.commands import History


class ClassManagerMixin:
    """Needs the window's ``project``, ``report_error``, ``_refresh_categories``, ``reload_annotations``."""

    def _category_changed(self) -> None:
        self._refresh_categories()
        self.reload_annotations()

    def _writable(self):
        if self.project is None:
            raise AnnotatorError("no project open")
        return self.project

    @property
    def category_history(self) -> History:
        """The project-wide undo stack of class changes (a new one for each opened project)."""
        owner, history = getattr(self, "_category_history", (None, None))
        if history is None or owner is not self.project:
            history = History()
            self._category_history = (self.project, history)
        return history

    def _run_category_command(self, cmd):
        try:
            self.category_history.execute(self._writable(), cmd)   # an unchanged command is not pushed
        except AnnotatorError as exc:
            self.report_error(exc)
            return None
        self._category_changed()
        return cmd.result

    def add_category(self, name: str, color: str | None = None):
        """Add a category (next free COCO id); returns it, or None on a user error."""
        return self._run_category_command(cc.add_category(name, color))

    def rename_category(self, category_id: int, name: str):
        """Rename a category (COCO id kept); returns it, or None on a user error."""
        return self._run_category_command(cc.rename_category(category_id, name))

    def recolor_category(self, category_id: int, color: str):
        """Set a category's ``#rrggbb`` colour; returns it, or None on a user error."""
        return self._run_category_command(cc.recolor_category(category_id, color))

    def merge_categories(self, source_id: int, into_id: int) -> int | None:
        """Move every instance of ``source_id`` to ``into_id`` and delete ``source_id``."""
        moved = self._run_category_command(cc.merge_categories(source_id, into_id))
        if moved is not None and self.current_category_id == int(source_id):
            self.current_category_id = int(into_id)
        return moved

    def undo_category_change(self) -> bool:
        """Undo the last class change; False when there is none or the store refused it."""
        return self._step_category_history("undo")

    def redo_category_change(self) -> bool:
        """Redo the last undone class change; False when there is none or the store refused it."""
        return self._step_category_history("redo")

    def _step_category_history(self, which: str) -> bool:
        if self.project is None:
            return False
        try:
            cmd = getattr(self.category_history, which)(self._writable(), cc.PROJECT_SCOPE)
        except AnnotatorError as exc:
            self.report_error(f"cannot {which} class change: {exc}")
            return False
        if cmd is None:
            return False
        if self.current_category_id is not None and self.current_category_id not in {
                c.id for c in self.project.categories()}:
            self.current_category_id = None
        self._category_changed()
        self.statusBar().showMessage(f"{which.capitalize()}: {cmd.text}", 4000)
        return True

    def class_manager_dialog(self) -> None:
        if self.project is None:
            self.report_error("no project open")
            return
        ClassManagerDialog(self).exec()


class ClassManagerDialog(QDialog):
    """List of categories (``id: name``, in their colour) with Add / Rename / Colour / Merge."""

    def __init__(self, window):
        super().__init__(window)
        self.setWindowTitle("Classes")
        self.window_ = window
        self.list = QListWidget(self)
        buttons = QHBoxLayout()
        for text, slot in (("Add...", self._add), ("Rename...", self._rename), ("Colour...", self._color),
                           ("Merge into...", self._merge), ("Undo", self._undo), ("Redo", self._redo),
                           ("Close", self.accept)):
            b = QPushButton(text, self)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list)
        lay.addLayout(buttons)
        QShortcut(QKeySequence.StandardKey.Undo, self, self._undo)
        QShortcut(QKeySequence.StandardKey.Redo, self, self._redo)
        self.refresh()

    def _undo(self) -> None:
        self.window_.undo_category_change()
        self.refresh()

    def _redo(self) -> None:
        self.window_.redo_category_change()
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for c in self.window_.project.categories():
            item = QListWidgetItem(f"{c.id}: {c.name}")
            item.setData(256, int(c.id))
            item.setForeground(QBrush(QColor(*category_color(c.id, c.color))))
            self.list.addItem(item)

    def _current(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(256))

    def _add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name")
        if ok and name.strip():
            self.window_.add_category(name)
            self.refresh()

    def _rename(self) -> None:
        cid = self._current()
        if cid is not None:
            name, ok = QInputDialog.getText(self, "Rename class", "Name", text=self.window_.project.category(cid).name)
            if ok:
                self.window_.rename_category(cid, name)
                self.refresh()

    def _color(self) -> None:
        cid = self._current()
        if cid is not None:
            color = QColorDialog.getColor(parent=self)
            if color.isValid():
                self.window_.recolor_category(cid, color.name())
                self.refresh()

    def _merge(self) -> None:
        cid = self._current()
        if cid is None:
            return
        others = [c for c in self.window_.project.categories() if c.id != cid]
        items = [f"{c.id}: {c.name}" for c in others]
        if not items:
            return
        choice, ok = QInputDialog.getItem(self, "Merge class", "Merge into", items, 0, False)
        if ok:
            self.window_.merge_categories(cid, others[items.index(choice)].id)
            self.refresh()
