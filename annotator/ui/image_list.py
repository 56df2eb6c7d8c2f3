"""Left dock: the project's images with their state (file name, coloured dot, state in words).

Model / view for real-size projects: :class:`ImageListModel` (a ``QAbstractListModel``) holds
only the ordered image ids of the current filter (one SQL query, ~30 ms for 100,000 images) and
fetches names and states from the store a page of :data:`PAGE` rows at a time, when the view
asks for them. :class:`ImageList` shows it in a one-column ``QTableView`` with fixed row heights:
Qt then touches only the rows it draws. (A ``QListView``, even with uniform item sizes, lays out
every row again after each ``dataChanged``: two Python ``rowCount`` calls per row, 140 ms per
step at 100,000 images, measured.) A changed image updates its own row
(:meth:`ImageList.update_state`).

States: ``unlabeled`` (grey), ``predicted`` (orange: predictions to review), ``in_progress``
(blue: worked on, not done), ``done`` (green), ``unreadable`` (red: the file could not be read
the last time; the reason is in the tooltip). The row shows the file name and the state in words. Filter: one
state or all (the current image stays listed). Order: ``"name"`` (project order) or
``"uncertainty"`` (images whose predictions are least certain first, then those without
predictions, then the images a person worked on, :func:`annotator.tools.ranking.rank_project_images`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from annotator.tools.colors import IMAGE_STATE_COLORS

ID_ROLE = Qt.UserRole
STATE_ROLE = Qt.UserRole + 1
PAGE = 256  # rows fetched from the store at once


def _dot_icon(rgb: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(Qt.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    p.setBrush(QBrush(QColor(*rgb)))
    p.setPen(Qt.NoPen)
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    return QIcon(pix)


class ImageListModel(QAbstractListModel):
    """Rows = image ids in list order; names and states read from the project page by page."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project = None
        self.ids: list[int] = []
        self._row: dict[int, int] = {}
        self._rows: dict[int, tuple[str, str, str | None]] = {}  # id -> (file_name, state, error)
        self._icons = {state: _dot_icon(rgb) for state, rgb in IMAGE_STATE_COLORS.items()}
        self._brushes = {state: QBrush(QColor(*rgb)) for state, rgb in IMAGE_STATE_COLORS.items()}

    def set_ids(self, project, ids: list[int]) -> None:
        self.beginResetModel()
        self.project, self.ids = project, list(ids)
        self._row = {image_id: row for row, image_id in enumerate(self.ids)}
        self._rows.clear()
        self.endResetModel()

    def row_of(self, image_id: int) -> int | None:
        return self._row.get(int(image_id))

    def invalidate(self, image_id: int) -> None:
        """Forget one image's cached row and tell the view to redraw it."""
        self._rows.pop(int(image_id), None)
        row = self._row.get(int(image_id))
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def record(self, row: int) -> tuple[str, str, str | None]:
        image_id = self.ids[row]
        if image_id not in self._rows:
            start = row - row % PAGE
            page = [i for i in self.ids[start:start + PAGE] if i not in self._rows]
            for i, rec in self.project.images_by_id(page).items():
                self._rows[i] = (rec.file_name, rec.state, rec.error)
        return self._rows.get(image_id, ("?", "unreadable", "not in the project any more"))

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.ids)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == ID_ROLE:
            return self.ids[row]
        if role not in (Qt.DisplayRole, Qt.DecorationRole, Qt.ForegroundRole, Qt.ToolTipRole, STATE_ROLE):
            return None
        name, state, error = self.record(row)
        if role == Qt.DisplayRole:
            return f"{PurePosixPath(name).name}  [{state.replace('_', ' ')}]"
        if role == STATE_ROLE:
            return state
        if role == Qt.DecorationRole:
            return self._icons.get(state)
        if role == Qt.ForegroundRole:
            return self._brushes.get(state)
        return f"{name}: {state}" + (f" ({error})" if error else "")


class ImageList(QTableView):
    """Lists the project's images; emits ``image_selected(image_id)`` when the user picks one."""

    image_selected = Signal(int)

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        self._project = project
        self._filter: str | None = None
        self._sort = "name"
        self.list_model = ImageListModel(self)
        self.setModel(self.list_model)
        self.horizontalHeader().hide()
        self.horizontalHeader().setStretchLastSection(True)
        rows = self.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.Fixed)  # uniform rows: no per-row size queries
        rows.setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self._quiet = False
        self.selectionModel().currentChanged.connect(self._on_current)
        self.refresh()

    def set_project(self, project) -> None:
        self._project = project
        self.refresh()

    def refresh(self) -> None:
        """Reload the listed ids and states from the project (keeps the current image)."""
        current = self.current_image_id()
        ids: list[int] = []
        if self._project is not None:
            ids = self._project.image_ids(self._filter)
            if current is not None and self._filter is not None and current not in set(ids):
                ids = sorted(ids + [current])  # the current image stays listed
            if self._sort == "uncertainty":
                from annotator.tools.ranking import rank_project_images

                # images without predictions (never pre-labelled, or nothing found) after the
                # uncertain ones: the list cannot tell the two apart
                order = rank_project_images(self._project, empty="last")
                rank = {image_id: i for i, (image_id, _) in enumerate(order)}
                ids.sort(key=lambda i: rank.get(i, len(rank)))  # stable
        self._quiet = True
        self.list_model.set_ids(self._project, ids)
        self._quiet = False
        if current is not None:
            self.set_current(current)

    def set_sort(self, mode: str) -> None:
        """List order: ``"name"`` or ``"uncertainty"`` (see the module doc)."""
        if mode not in ("name", "uncertainty"):
            raise ValueError(f"unknown image order {mode!r}")
        self._sort = mode
        self.refresh()

    def set_filter(self, state: str | None) -> None:
        """Show only images in ``state`` (``None``: all). The current image stays listed."""
        self._filter = state
        self.refresh()

    def is_hidden(self, image_id: int) -> bool:
        return self.list_model.row_of(image_id) is None

    def update_state(self, image_id: int, state: str | None = None) -> None:
        """Redraw one image's row with its state as stored now (``state`` is ignored: the
        store is the one truth; kept for callers that pass it)."""
        self.list_model.invalidate(image_id)

    def image_ids(self) -> list[int]:
        """Ids of the listed images (those the filter shows), in list order."""
        return list(self.list_model.ids)

    def count(self) -> int:
        """Number of listed images."""
        return len(self.list_model.ids)

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        """The listed image ``step`` rows after (negative: before) ``image_id``, clamped to the
        list; the first listed image when ``image_id`` is not listed; None for an empty list."""
        ids = self.list_model.ids
        if not ids:
            return None
        row = self.list_model.row_of(image_id) if image_id is not None else None
        if row is None:
            return ids[0]
        return ids[max(0, min(len(ids) - 1, row + step))]

    def state_of(self, image_id: int) -> str | None:
        """The state shown for an image (``None`` if not listed)."""
        row = self.list_model.row_of(image_id)
        return None if row is None else self.list_model.record(row)[1]

    def current_image_id(self) -> int | None:
        index = self.currentIndex()
        return None if not index.isValid() else int(self.list_model.ids[index.row()])

    def set_current(self, image_id: int) -> None:
        """Select an image without emitting ``image_selected``."""
        row = self.list_model.row_of(image_id)
        if row is not None:
            index = self.list_model.index(row)
            self._quiet = True
            self.setCurrentIndex(index)
            self._quiet = False
            self.scrollTo(index)

    def _on_current(self, current, _previous) -> None:
        if current.isValid() and not self._quiet:
            self.image_selected.emit(int(self.list_model.ids[current.row()]))
