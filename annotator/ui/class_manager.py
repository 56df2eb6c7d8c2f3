"""Class manager: add, rename, recolour and merge categories (COCO ids kept).

:class:`ClassManagerMixin` holds the window's methods (one store transaction each; category
changes are project-wide, so they are not on the per-image undo stacks);
:class:`ClassManagerDialog` is the thin dialog over them (Ctrl+K).
"""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QColorDialog, QDialog, QHBoxLayout, QInputDialog, QListWidget, QListWidgetItem, QPushButton,
    QVBoxLayout,
)

from annotator.errors import AnnotatorError
from annotator.tools.colors import category_color


class ClassManagerMixin:
    """Needs the window's ``project``, ``report_error``, ``_refresh_categories``, ``reload_annotations``."""

    def _category_changed(self) -> None:
        self._refresh_categories()
        self.reload_annotations()

    def _writable(self):
        if self.project is None:
            raise AnnotatorError("no project open")
        return self.project

    def add_category(self, name: str, color: str | None = None):
        """Add a category (next free COCO id); returns it, or None on a user error."""
        try:
            cat = self._writable().add_category(name, color=color)
        except AnnotatorError as exc:
            self.report_error(str(exc))
            return None
        self._category_changed()
        return cat

    def rename_category(self, category_id: int, name: str):
        try:
            cat = self._writable().rename_category(int(category_id), name)
        except AnnotatorError as exc:
            self.report_error(str(exc))
            return None
        self._category_changed()
        return cat

    def recolor_category(self, category_id: int, color: str):
        try:
            cat = self._writable().set_category_color(int(category_id), color)
        except AnnotatorError as exc:
            self.report_error(str(exc))
            return None
        self._category_changed()
        return cat

    def merge_categories(self, source_id: int, into_id: int) -> int | None:
        """Move every instance of ``source_id`` to ``into_id`` and delete ``source_id``."""
        try:
            moved = self._writable().merge_categories(int(source_id), int(into_id))
        except AnnotatorError as exc:
            self.report_error(str(exc))
            return None
        if self.current_category_id == int(source_id):
            self.current_category_id = int(into_id)
        self._category_changed()
        return moved

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
                           ("Merge into...", self._merge), ("Close", self.accept)):
            b = QPushButton(text, self)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list)
        lay.addLayout(buttons)
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
