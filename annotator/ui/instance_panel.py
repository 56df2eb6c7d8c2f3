"""Right dock: the current image's instances with their provenance (category, score, source,
review state: ``edited`` when a person changed a prediction, model version).

Selecting a row emits ``instance_selected(ann_id)`` (``-1`` when the selection is cleared).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from annotator.tools.colors import REVIEW_STATE_COLORS, category_color

COLUMNS = ("#", "Category", "Score", "Source", "Review", "Model")


class InstancePanel(QTableWidget):
    """Table of annotation records; thin view, no store access."""

    instance_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.setFocusPolicy(Qt.ClickFocus)
        self.itemSelectionChanged.connect(self._on_selection)

    def set_instances(self, annotations: Sequence, categories: Sequence) -> None:
        """Show annotation records (``id``, ``category_id``, ``score``, ``source``,
        ``review_state``); ``categories``: records with ``id``, ``name``, ``color``."""
        names = {int(c.id): c.name for c in categories}
        cats = {int(c.id): c for c in categories}
        self.blockSignals(True)
        self.setUpdatesEnabled(False)
        self.clearSelection()
        self.setRowCount(0)
        self.setRowCount(len(annotations))
        for row, a in enumerate(annotations):
            cat = cats.get(int(a.category_id))
            color = category_color(a.category_id, getattr(cat, "color", None))
            score = "" if a.score is None else f"{a.score:.2f}"
            model = "" if getattr(a, "model_version", None) is None else f"v{a.model_version}"
            values = (str(a.id), names.get(int(a.category_id), str(a.category_id)), score,
                      str(a.source), str(a.review_state), model)
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, int(a.id))
                self.setItem(row, col, item)
            self.item(row, 1).setForeground(QBrush(QColor(*color)))
            state_rgb = REVIEW_STATE_COLORS.get(str(a.review_state), (0, 0, 0))
            self.item(row, 4).setForeground(QBrush(QColor(*state_rgb)))
        self.resizeColumnsToContents()
        self.setUpdatesEnabled(True)
        self.blockSignals(False)

    def ann_ids(self) -> list[int]:
        return [int(self.item(r, 0).data(Qt.UserRole)) for r in range(self.rowCount())]

    def row_values(self, ann_id: int) -> tuple[str, ...] | None:
        """The texts shown for one instance (``COLUMNS`` order), or ``None``."""
        for r in range(self.rowCount()):
            if self.item(r, 0).data(Qt.UserRole) == ann_id:
                return tuple(self.item(r, c).text() for c in range(self.columnCount()))
        return None

    def selected_id(self) -> int | None:
        rows = self.selectionModel().selectedRows()
        return None if not rows else int(self.item(rows[0].row(), 0).data(Qt.UserRole))

    def select(self, ann_id: int | None) -> None:
        """Select an instance's row without emitting ``instance_selected``."""
        self.blockSignals(True)
        self.clearSelection()
        if ann_id is not None:
            for r in range(self.rowCount()):
                if self.item(r, 0).data(Qt.UserRole) == ann_id:
                    self.selectRow(r)
                    self.scrollToItem(self.item(r, 0))
                    break
        self.blockSignals(False)

    def _on_selection(self) -> None:
        sel = self.selected_id()
        self.instance_selected.emit(-1 if sel is None else sel)
