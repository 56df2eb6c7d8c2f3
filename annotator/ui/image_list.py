"""Left dock: the project's images with their review state (text + coloured dot).

States: ``unlabeled`` (grey), ``predicted`` (orange), ``reviewed`` (green).
Order: ``"name"`` (project order) or ``"uncertainty"`` (most informative unreviewed images first,
:func:`annotator.tools.ranking.rank_project_images`; then the rest in project order).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from annotator.tools.colors import IMAGE_STATE_COLORS

ID_ROLE = Qt.UserRole
STATE_ROLE = Qt.UserRole + 1


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


class ImageList(QListWidget):
    """Lists ``project.images()``; emits ``image_selected(image_id)`` when the user picks one."""

    image_selected = Signal(int)

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        self._project = project
        self._filter: str | None = None
        self._sort = "name"
        self._icons = {state: _dot_icon(rgb) for state, rgb in IMAGE_STATE_COLORS.items()}
        self.currentItemChanged.connect(self._on_current)
        self.refresh()

    def set_project(self, project) -> None:
        self._project = project
        self.refresh()

    def refresh(self) -> None:
        """Reload all images and states from the project (keeps the current image)."""
        current = self.current_image_id()
        self.blockSignals(True)
        self.clear()
        if self._project is not None:
            images = self._project.images()
            if self._sort == "uncertainty":
                from annotator.tools.ranking import rank_project_images

                rank = {image_id: i for i, (image_id, _) in enumerate(rank_project_images(self._project))}
                images = sorted(images, key=lambda im: rank.get(int(im.id), len(rank)))  # stable
            for im in images:
                item = QListWidgetItem()
                item.setData(ID_ROLE, int(im.id))
                item.setData(Qt.UserRole + 2, str(im.file_name))
                self.addItem(item)
                self._apply_state(item, str(im.state))
        self.blockSignals(False)
        self._apply_filter()
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
        self._apply_filter()

    def _apply_filter(self) -> None:
        current = self.current_image_id()
        for row in range(self.count()):
            item = self.item(row)
            hide = self._filter is not None and item.data(STATE_ROLE) != self._filter \
                and item.data(ID_ROLE) != current
            item.setHidden(hide)

    def is_hidden(self, image_id: int) -> bool:
        item = self._item(image_id)
        return item is None or item.isHidden()

    def _apply_state(self, item: QListWidgetItem, state: str) -> None:
        item.setData(STATE_ROLE, state)
        item.setText(f"{item.data(Qt.UserRole + 2)}  [{state}]")
        item.setIcon(self._icons.get(state, QIcon()))
        item.setForeground(QBrush(QColor(*IMAGE_STATE_COLORS.get(state, (0, 0, 0)))))
        item.setToolTip(f"{item.data(Qt.UserRole + 2)}: {state}")

    def _item(self, image_id: int) -> QListWidgetItem | None:
        for row in range(self.count()):
            if self.item(row).data(ID_ROLE) == image_id:
                return self.item(row)
        return None

    def update_state(self, image_id: int, state: str | None = None) -> None:
        """Refresh one image's state (asks the project when ``state`` is ``None``)."""
        item = self._item(image_id)
        if item is None:
            return
        if state is None and self._project is not None:
            state = self._project.image_state(image_id)
        self._apply_state(item, str(state))

    def image_ids(self) -> list[int]:
        """Ids of the listed images (those the filter shows), in list order."""
        return [self.item(r).data(ID_ROLE) for r in range(self.count()) if not self.item(r).isHidden()]

    def state_of(self, image_id: int) -> str | None:
        """The state shown for an image (``None`` if not listed)."""
        item = self._item(image_id)
        return None if item is None else item.data(STATE_ROLE)

    def current_image_id(self) -> int | None:
        item = self.currentItem()
        return None if item is None else int(item.data(ID_ROLE))

    def set_current(self, image_id: int) -> None:
        """Select an image without emitting ``image_selected``."""
        item = self._item(image_id)
        if item is not None:
            self.blockSignals(True)
            self.setCurrentItem(item)
            self.blockSignals(False)
            self.scrollToItem(item)

    def _on_current(self, current, _previous) -> None:
        if current is not None:
            self.image_selected.emit(int(current.data(ID_ROLE)))
