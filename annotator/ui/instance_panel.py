"""Right dock: the current image's instances with their provenance (category, score, source,
review state: ``edited`` when a person changed a prediction, model version).

Model / view, so a dense image (300-1,900 instances) fills the table in one model reset and Qt
asks only for the visible cells: :class:`InstanceTableModel` holds the annotation records,
:class:`InstancePanel` is a ``QTableView``. Column ``#`` numbers the instances of the image
1..n in drawing order; the stored annotation id is in its tooltip. Selecting a row emits
``instance_selected(ann_id)`` (``-1`` when the selection is cleared).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QAbstractTableModel, QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from annotator.tools.colors import REVIEW_STATE_COLORS, category_color

COLUMNS = ("#", "Category", "Score", "Source", "Review", "Model")
ID_ROLE = Qt.UserRole


def _swatch(rgb: tuple[int, int, int]) -> QIcon:
    """A 12 x 12 colour square with a dark border (visible for pale colours on white)."""
    pix = QPixmap(12, 12)
    pix.fill(QColor(*rgb))
    p = QPainter(pix)
    p.setPen(QColor(60, 60, 60))
    p.drawRect(0, 0, 11, 11)
    p.end()
    return QIcon(pix)


class InstanceTableModel(QAbstractTableModel):
    """Rows = annotation records (``id``, ``category_id``, ``score``, ``source``, ``review_state``,
    ``model_version``); texts are made when a cell is drawn."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list = []
        self._names: dict[int, str] = {}
        self._cat_icon: dict[int, QIcon] = {}
        self._row: dict[int, int] = {}
        self._state_brush = {s: QBrush(QColor(*rgb)) for s, rgb in REVIEW_STATE_COLORS.items()}

    def set_records(self, annotations: Sequence, categories: Sequence) -> None:
        self.beginResetModel()
        self.records = list(annotations)
        self._names = {int(c.id): c.name for c in categories}
        self._cat_icon = {int(c.id): _swatch(category_color(c.id, getattr(c, "color", None))) for c in categories}
        self._row = {int(a.id): row for row, a in enumerate(self.records)}
        self.endResetModel()

    def row_of(self, ann_id: int) -> int | None:
        return self._row.get(int(ann_id))

    def text(self, row: int, col: int) -> str:
        a = self.records[row]
        if col == 0:
            return str(row + 1)
        if col == 1:
            return self._names.get(int(a.category_id), str(a.category_id))
        if col == 2:
            return "" if a.score is None else f"{a.score:.2f}"
        if col == 3:
            return str(a.source)
        if col == 4:
            return str(a.review_state)
        return "" if getattr(a, "model_version", None) is None else f"v{a.model_version}"

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.DisplayRole:
            return self.text(row, col)
        if role == ID_ROLE:
            return int(self.records[row].id)
        if role == Qt.DecorationRole and col == 1:   # a colour swatch beside black text: readable
            return self._cat_icon.get(int(self.records[row].category_id))
        if role == Qt.ForegroundRole and col == 4:
            return self._state_brush.get(str(self.records[row].review_state))
        if role == Qt.ToolTipRole and col == 0:
            return f"annotation id {self.records[row].id}"
        return None


class InstancePanel(QTableView):
    """Table of annotation records; thin view, no store access."""

    instance_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table_model = InstanceTableModel(self)
        self.setModel(self.table_model)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)  # uniform rows: no per-row sizing
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((30, 104, 42, 52, 64)):
            self.setColumnWidth(col, width)
        self.setFocusPolicy(Qt.ClickFocus)
        self._quiet = False
        self.selectionModel().selectionChanged.connect(self._on_selection)

    def set_instances(self, annotations: Sequence, categories: Sequence) -> None:
        """Show annotation records (``id``, ``category_id``, ``score``, ``source``,
        ``review_state``); ``categories``: records with ``id``, ``name``, ``color``."""
        self._quiet = True
        self.table_model.set_records(annotations, categories)
        self._quiet = False

    def rowCount(self) -> int:  # noqa: N802 - mirrors QTableWidget for callers and tests
        return self.table_model.rowCount()

    def ann_ids(self) -> list[int]:
        return [int(a.id) for a in self.table_model.records]

    def row_values(self, ann_id: int) -> tuple[str, ...] | None:
        """The texts shown for one instance (``COLUMNS`` order), or ``None``."""
        row = self.table_model.row_of(ann_id)
        if row is None:
            return None
        return tuple(self.table_model.text(row, c) for c in range(len(COLUMNS)))

    def selected_id(self) -> int | None:
        rows = self.selectionModel().selectedRows()
        return None if not rows else int(self.table_model.records[rows[0].row()].id)

    def select(self, ann_id: int | None) -> None:
        """Select an instance's row without emitting ``instance_selected``."""
        self._quiet = True
        row = None if ann_id is None else self.table_model.row_of(ann_id)
        if row is None:
            self.clearSelection()
        else:
            index = self.table_model.index(row, 0)
            self.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)
            self.scrollTo(index)
        self._quiet = False

    def _on_selection(self, *_args) -> None:
        if not self._quiet:
            sel = self.selected_id()
            self.instance_selected.emit(-1 if sel is None else sel)
