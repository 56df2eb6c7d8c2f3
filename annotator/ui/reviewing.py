"""Review workflow of the main window (a mixin of :class:`~annotator.ui.main_window.MainWindow`):
accept / reject / delete / change class of the selected instance, accept all above the score
threshold, the live score-threshold slider (hides lower-scored predictions), per-image
"done" (remaining predictions rejected or accepted), next unreviewed image, image-list filter.

Every change goes through :mod:`annotator.tools.commands`, so it is undoable and committed to
SQLite before the handler returns.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QSlider

from annotator.errors import Refusal
from annotator.tools import commands, review
from annotator.ui.dialogs import user_action

IMAGE_FILTERS = (("All images", None), ("Unlabeled", "unlabeled"), ("Predicted", "predicted"),
                 ("In progress", "in_progress"), ("Done", "done"), ("Unreadable", "unreadable"))


class ReviewMixin:
    """Needs the window's ``project``, ``current_image_id``, ``selected_id``, ``execute``."""

    def _init_review(self) -> None:
        self.display_threshold = 0.0
        self.threshold_slider = QSlider(Qt.Horizontal, self)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setMaximumWidth(160)
        self.threshold_slider.setToolTip("Score threshold: predictions below it are hidden; "
                                         "'Accept above threshold' (Shift+A) accepts the rest")
        self.threshold_label = QLabel("score >= 0.00", self)
        self.threshold_slider.valueChanged.connect(lambda v: self.set_display_threshold(v / 100.0))
        self.filter_combo = QComboBox(self)
        self.filter_combo.setToolTip("Show only images in this state")
        for text, state in IMAGE_FILTERS:
            self.filter_combo.addItem(text, state)
        self.filter_combo.currentIndexChanged.connect(
            lambda i: self.set_image_filter(self.filter_combo.itemData(i)))
        self.sort_combo = QComboBox(self)
        self.sort_combo.setToolTip("Image order: by name, or most uncertain predictions first "
                                   "(the next images worth correcting)")
        self.sort_combo.addItem("Order: name", "name")
        self.sort_combo.addItem("Order: most uncertain first", "uncertainty")
        self.sort_combo.currentIndexChanged.connect(
            lambda i: self.image_list.set_sort(self.sort_combo.itemData(i)))

    # ---------------------------------------------------------------- threshold / filter
    def set_display_threshold(self, value: float) -> None:
        """Hide ``predicted`` instances scored below ``value`` (0..1) on the canvas, live."""
        self.display_threshold = float(min(1.0, max(0.0, value)))
        if self.threshold_slider.value() != round(self.display_threshold * 100):
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(round(self.display_threshold * 100))
            self.threshold_slider.blockSignals(False)
        self.threshold_label.setText(f"score >= {self.display_threshold:.2f}")
        self._redraw()

    def hidden_by_threshold(self, ann) -> bool:
        return (ann.review_state == "predicted" and ann.score is not None
                and ann.score < self.display_threshold)

    def set_image_filter(self, state: str | None) -> None:
        """Show only images in ``state`` (``IMAGE_STATES``; None = all)."""
        self.image_list.set_filter(state)
        idx = next((i for i, (_, s) in enumerate(IMAGE_FILTERS) if s == state), 0)
        if self.filter_combo.currentIndex() != idx:
            self.filter_combo.blockSignals(True)
            self.filter_combo.setCurrentIndex(idx)
            self.filter_combo.blockSignals(False)

    # ---------------------------------------------------------------- per instance
    def _require_selection(self) -> int:
        if self.project is None or self.selected_id is None:
            raise Refusal("no instance selected: click one on the image or in the list")
        return self.selected_id

    def _advance(self, current: int | None) -> None:
        visible = [a for a in self._annotations if not self.hidden_by_threshold(a)]
        self.select_instance(review.next_pending(visible, current))

    @user_action
    def accept_selected(self) -> None:
        sel = self._require_selection()
        self.execute(commands.accept(self.current_image_id, [sel]))
        self._advance(sel)

    @user_action
    def reject_selected(self) -> None:
        sel = self._require_selection()
        self.execute(commands.reject(self.current_image_id, [sel]))
        self._advance(sel)

    @user_action
    def delete_selected(self) -> None:
        """Del: delete the selected instance (Backspace while drawing a polygon: drop its last vertex)."""
        if self.tool.name == "polygon" and self.tool.points:
            self._tool_key("backspace")
            return
        sel = self._require_selection()
        self.execute(commands.delete(self.current_image_id, [sel]))
        self._advance(sel)

    @user_action
    def set_selected_category(self, category_id: int) -> None:
        """Give the selected instance category ``category_id`` (COCO id); predicted -> edited.
        With nothing selected it becomes the category of new instances."""
        self.current_category_id = int(category_id)
        if self.selected_id is None:
            self.status_label.setText(f"New instances: category {category_id}")
            return
        self.execute(commands.set_category(self.current_image_id, self.selected_id, int(category_id)))

    def set_category_by_key(self, digit: int) -> None:
        """Digit key 1-9: the n-th project category."""
        cat = review.category_for_key(self.project.categories(), digit) if self.project else None
        if cat is not None:
            self.set_selected_category(int(cat.id))

    # ---------------------------------------------------------------- per image
    @user_action
    def accept_all_predicted(self) -> None:
        """Shift+A: accept every prediction of the shown image scored at or above the threshold."""
        if self.current_image_id is None:
            raise Refusal("no image shown")
        self.execute(commands.accept_above(self.current_image_id, self.display_threshold))

    @user_action
    def mark_done(self, remaining: str = "rejected") -> None:
        """Mark the shown image done (remaining predictions become ``remaining``), say so in the
        status bar and go on to the next image that is not done (Ctrl+Z on the done image undoes it)."""
        if self.current_image_id is None:
            raise Refusal("no image shown")
        done_id = self.current_image_id
        pending = sum(1 for a in self._annotations if a.review_state == "predicted")
        name = self.project.image(done_id).file_name.rsplit("/", 1)[-1]
        self.execute(commands.mark_done(done_id, remaining))
        self.image_list.refresh()
        message = f"{name} done" + (f" ({pending} remaining prediction(s) {remaining})" if pending else "")
        self.next_unreviewed_image()
        if self.current_image_id != done_id:
            message += f"; next: {self.project.image(self.current_image_id).file_name.rsplit('/', 1)[-1]}"
        self.status_label.setText(message)

    def mark_done_reject_rest(self) -> None:
        self.mark_done("rejected")

    def mark_done_accept_rest(self) -> None:
        self.mark_done("accepted")

    def next_unreviewed_image(self) -> None:
        """U: the next image (wrapping) that is not done (unlabeled, predicted or in progress)."""
        if self.project is None:
            return
        target = self.project.next_image_id(self.current_image_id, exclude_states=("done", "unreadable"))
        if target is None:
            self.status_label.setText("Every image is done")
            return
        if self.image_list.is_hidden(target):
            self.set_image_filter(None)
        self.show_image(target)
