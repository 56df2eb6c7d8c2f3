"""Main window: image list (left), canvas (centre), instance list (right), actions, status bar.

Keyboard shortcuts: :data:`annotator.ui.actions.ACTIONS` (A accept, R reject, Del delete,
1-9 category, PgDown/D next image, PgUp/Shift+D previous, Ctrl+L pre-label, Esc cancel).
Rejected instances are hidden on the canvas (outline only when selected or with H).
User errors (:class:`AnnotatorError`) go to :func:`annotator.ui.dialogs.show_error` and
:attr:`MainWindow.last_error`; they never raise out of an action.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QDockWidget, QLabel, QMainWindow, QProgressBar, QPushButton

from annotator.errors import AnnotatorError
from annotator.tools import review
from annotator.tools.overlay import InstanceLayer, MaskCache, build_layer
from annotator.tools.selection import hit_test_id, step_selection
from annotator.ui import dialogs
from annotator.ui.actions import build_actions
from annotator.ui.canvas import Canvas
from annotator.ui.image_list import ImageList
from annotator.ui.instance_panel import InstancePanel
from annotator.ui.workers import PrelabelController, PrelabelJob, prepare_project, resolve_model, run_in_thread


def _user_action(method):
    """Run a window method, turning ``AnnotatorError`` into an error dialog (returns None)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except AnnotatorError as exc:
            self.report_error(str(exc))
            return None
    return wrapper


class MainWindow(QMainWindow):
    """The annotation window. ``project``: an open ``annotator.project.Project`` or ``None``."""

    project_opened = Signal(str)        # project root
    image_changed = Signal(int)         # image id
    selection_changed = Signal(int)     # annotation id, -1 = none
    annotations_changed = Signal(int)   # image id whose annotations changed
    prelabel_finished = Signal(object)  # PrelabelSummary
    prelabel_failed = Signal(str)

    def __init__(self, project=None, *, score_threshold: float = 0.05, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Annotator")
        self.resize(1280, 800)
        self.project = None
        self.last_error: str | None = None
        self.score_threshold = float(score_threshold)
        self.model_choice: int | str | None = None
        self.show_rejected = False
        self.current_image_id: int | None = None
        self.selected_id: int | None = None
        self._annotations: list = []
        self._masks = np.zeros((0, 1, 1), dtype=bool)
        self._mask_cache = MaskCache()
        self._layer: InstanceLayer | None = None

        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.image_list = ImageList(None, self)
        self.instance_panel = InstancePanel(self)
        for title, widget, area in (("Images", self.image_list, Qt.LeftDockWidgetArea),
                                    ("Instances", self.instance_panel, Qt.RightDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        self.category_combo = QComboBox(self)
        self.category_combo.setToolTip("Change class of the selected instance (1-9)")
        self.category_combo.activated.connect(lambda i: self.set_selected_category(self.category_combo.itemData(i)))
        self._build_status_bar()
        self.prelabel_jobs = PrelabelController(self)
        self.prelabel_jobs.progress.connect(self._on_prelabel_progress)
        self.prelabel_jobs.finished.connect(self._on_prelabel_finished)
        self.prelabel_jobs.failed.connect(self._on_prelabel_failed)
        self.class_menu = None
        self.actions_by_name: dict[str, QAction] = build_actions(self, self.category_combo)
        self.canvas.clicked.connect(self._on_canvas_click)
        self.image_list.image_selected.connect(self.show_image)
        self.instance_panel.instance_selected.connect(lambda i: self.select_instance(None if i < 0 else i))
        if project is not None:
            self.set_project(project)

    def _build_status_bar(self) -> None:
        self.status_label, self.progress_bar = QLabel(""), QProgressBar(maximumWidth=240)
        self.cancel_button = QPushButton("Cancel", toolTip="Cancel pre-label (Esc)")
        self.cancel_button.clicked.connect(self.cancel_prelabel)
        self.statusBar().addWidget(self.status_label, 1)
        for widget in (self.progress_bar, self.cancel_button):
            self.statusBar().addPermanentWidget(widget)
        self._set_busy(False)

    # ---------------------------------------------------------------- errors / status
    def report_error(self, message: str) -> None:
        """Show a user error (dialog via ``dialogs.show_error``) and keep it in ``last_error``."""
        self.last_error = message
        self.status_label.setText(f"Error: {message}")
        dialogs.show_error(self, message)

    def _set_busy(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)

    # ---------------------------------------------------------------- project / images
    def set_project(self, project) -> None:
        """Show ``project`` (the window owns it from now on and closes the previous one)."""
        if self.project is not None and self.project is not project:
            self.project.close()
        self.project = project
        self.current_image_id = None
        self.setWindowTitle(f"Annotator - {project.root}")
        self.image_list.set_project(project)
        self._refresh_categories()
        ids = self.image_list.image_ids()
        if ids:
            self.show_image(ids[0])
        else:
            self.canvas.set_image(None)
            self.instance_panel.set_instances([], [])
        self.project_opened.emit(str(project.root))

    def open_project(self, path: str | Path) -> None:
        """Open a project folder / ``.sqlite`` or make a folder into a project, in the background
        (folder scan off the GUI thread); emits ``project_opened`` when shown."""
        from annotator.project import Project

        def done(p: str) -> None:
            try:
                self.set_project(Project.open(Path(p), create_if_folder=False))
            except AnnotatorError as exc:
                self.report_error(str(exc))

        self.status_label.setText(f"Opening {path}...")
        run_in_thread(prepare_project, str(path), on_done=done, on_error=self.report_error)

    def _refresh_categories(self) -> None:
        cats = self.project.categories() if self.project is not None else []
        self.category_combo.clear()
        self.class_menu.clear()
        for i, c in enumerate(cats):
            self.category_combo.addItem(f"{i + 1}: {c.name}" if i < 9 else c.name, int(c.id))
            if i < 9:
                self.class_menu.addAction(self.actions_by_name[f"class_{i + 1}"])
                self.actions_by_name[f"class_{i + 1}"].setText(f"{c.name}")

    @_user_action
    def show_image(self, image_id: int) -> None:
        """Show an image with its instances (image loaded as RGB uint8; masks from RLE)."""
        from annotator.project.images import load_rgb

        if self.project is None:
            return
        changed = image_id != self.current_image_id
        if changed:
            self.canvas.set_image(load_rgb(self.project.image_path(image_id)))  # AnnotatorError
        self.current_image_id = int(image_id)
        self.image_list.set_current(int(image_id))
        self.reload_annotations(keep_selection=not changed)
        if changed:
            self.image_changed.emit(int(image_id))

    def reload_annotations(self, *, keep_selection: bool = True) -> None:
        """Re-read the current image's annotations from the store and redraw."""
        if self.project is None or self.current_image_id is None:
            return
        rec = self.project.image(self.current_image_id)
        self._annotations = self.project.annotations(self.current_image_id)
        self._masks = self._mask_cache.masks(self._annotations, rec.height, rec.width)
        self.instance_panel.set_instances(self._annotations, self.project.categories())
        ids = {int(x.id) for x in self._annotations}
        self.select_instance(self.selected_id if keep_selection and self.selected_id in ids else None)
        self.image_list.update_state(self.current_image_id)

    def annotations(self) -> list:
        """The current image's annotation records (as last loaded)."""
        return list(self._annotations)

    def _redraw(self) -> None:
        if self.project is None or self.current_image_id is None:
            return
        rec = self.project.image(self.current_image_id)
        self._layer = build_layer(self._annotations, self.project.categories(), rec.height, rec.width,
                                  selected_id=self.selected_id, show_rejected=self.show_rejected,
                                  masks=self._masks)
        self.canvas.set_overlay(self._layer.rgba, self._layer.labels)

    def layer(self) -> InstanceLayer | None:
        """What the canvas shows now (ids, masks, RGBA overlay, labels)."""
        return self._layer

    def next_image(self) -> None:
        self._step_image(1)

    def previous_image(self) -> None:
        self._step_image(-1)

    def _step_image(self, step: int) -> None:
        target = review.step_image(self.image_list.image_ids(), self.current_image_id, step)
        if target is not None and target != self.current_image_id:
            self.show_image(target)

    def toggle_rejected(self) -> None:
        """Show / hide rejected instances (outline only) on the canvas."""
        self.show_rejected = self.actions_by_name["show_rejected"].isChecked()
        self._redraw()

    # ---------------------------------------------------------------- selection / review
    def select_instance(self, ann_id: int | None) -> None:
        """Select an instance (``None`` clears); syncs the list and the canvas highlight."""
        self.selected_id = None if ann_id is None else int(ann_id)
        self.instance_panel.select(self.selected_id)
        self._redraw()
        self.selection_changed.emit(-1 if self.selected_id is None else self.selected_id)

    def select_at(self, x: float, y: float) -> int | None:
        """Select the topmost visible instance under image pixel ``(x, y)``; returns its id."""
        layer = self._layer
        hit = None if layer is None else hit_test_id(layer.masks, layer.ann_ids, x, y)
        self.select_instance(hit)
        return hit

    def _on_canvas_click(self, x: float, y: float) -> None:
        self.select_at(x, y)

    def next_instance(self) -> None:
        self.select_instance(step_selection([int(a.id) for a in self._annotations], self.selected_id, 1))

    def previous_instance(self) -> None:
        self.select_instance(step_selection([int(a.id) for a in self._annotations], self.selected_id, -1))

    def _after_review(self, advance: bool) -> None:
        current = self.selected_id
        self.reload_annotations()
        if advance:
            self.select_instance(review.next_pending(self._annotations, current))
        self.annotations_changed.emit(self.current_image_id)

    def _require_selection(self) -> int:
        if self.project is None or self.selected_id is None:
            raise AnnotatorError("no instance selected: click one on the image or in the list")
        return self.selected_id

    @_user_action
    def accept_selected(self) -> None:
        review.accept(self.project, self._require_selection())
        self._after_review(advance=True)

    @_user_action
    def reject_selected(self) -> None:
        review.reject(self.project, self._require_selection())
        self._after_review(advance=True)

    @_user_action
    def accept_all_predicted(self) -> None:
        """Accept every ``predicted`` instance of the shown image (one transaction)."""
        review.accept(self.project, [a.id for a in self._annotations if a.review_state == "predicted"])
        self._after_review(advance=False)

    @_user_action
    def delete_selected(self) -> None:
        review.delete(self.project, self._require_selection())
        self.selected_id = None
        self._after_review(advance=True)

    @_user_action
    def set_selected_category(self, category_id: int) -> None:
        """Give the selected instance category ``category_id`` (COCO id); predicted -> edited."""
        ann_id = self._require_selection()
        state = next((a.review_state for a in self._annotations if a.id == ann_id), None)
        review.change_category(self.project, ann_id, int(category_id), review_state=state)
        self._after_review(advance=False)

    def set_category_by_key(self, digit: int) -> None:
        """Digit key 1-9: the n-th project category."""
        cat = review.category_for_key(self.project.categories(), digit) if self.project else None
        if cat is not None:
            self.set_selected_category(int(cat.id))

    # ---------------------------------------------------------------- model / pre-label
    @_user_action
    def set_model(self, choice: int | str) -> None:
        """Use a registered model version (int id) or a segcore checkpoint file (path)."""
        if self.project is not None:
            resolve_model(self.project, choice)  # validates now, raises AnnotatorError
        self.model_choice = choice
        self.status_label.setText(f"Model: {choice if isinstance(choice, str) else f'version {choice}'}")

    def choose_model_dialog(self) -> None:
        versions = self.project.model_versions() if self.project is not None else []
        start = str(self.project.root) if self.project is not None else ""
        choice = dialogs.ask_model(self, versions, start)
        if choice is not None:
            self.set_model(choice)

    @_user_action
    def prelabel_current(self) -> bool:
        """Pre-label the shown image (replaces its unreviewed predictions); falsy if not started."""
        if self.current_image_id is None:
            raise AnnotatorError("no image shown: open a folder or project first")
        return self.prelabel([self.current_image_id], only_unreviewed=False)

    def prelabel_unreviewed(self) -> bool:
        """Pre-label every image that is not reviewed."""
        return self.prelabel(None, only_unreviewed=True)

    @_user_action
    def prelabel(self, image_ids: list[int] | None, *, only_unreviewed: bool = True) -> bool:
        """Start a background pre-label job; ``False`` if not started (busy, no model, error).

        Without a chosen model: the project's latest model version, else ask for a checkpoint.
        """
        if self.project is None:
            raise AnnotatorError("no project open: open a folder or project first")
        if self.prelabel_jobs.busy:
            raise AnnotatorError("a pre-label job is already running (Esc cancels it)")
        resolved = resolve_model(self.project, self.model_choice)
        if resolved is None:
            path = dialogs.ask_checkpoint(self, str(self.project.root))
            if path is None:
                return False
            self.model_choice = path
            resolved = resolve_model(self.project, path)
        checkpoint, version = resolved
        job = PrelabelJob(str(self.project.db_path), checkpoint,
                          None if image_ids is None else tuple(int(i) for i in image_ids),
                          self.score_threshold, only_unreviewed, version)
        self._set_busy(True)
        self.status_label.setText("Pre-labelling: loading model...")
        return self.prelabel_jobs.start(job)

    def cancel_prelabel(self) -> None:
        """Ask the running pre-label job to stop after the current image."""
        if self.prelabel_jobs.busy:
            self.prelabel_jobs.cancel()
            self.status_label.setText("Cancelling...")

    def _on_prelabel_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        self.status_label.setText(f"Pre-labelling {done}/{total}")

    def _on_prelabel_finished(self, summary) -> None:
        self._set_busy(False)
        n, k = getattr(summary, "images", "?"), getattr(summary, "instances", "?")
        stopped = " (cancelled)" if getattr(summary, "stopped", False) else ""
        self.status_label.setText(f"Pre-labelled {n} image(s), {k} instance(s){stopped}")
        self._after_prelabel()
        self.prelabel_finished.emit(summary)

    def _on_prelabel_failed(self, message: str) -> None:
        self._set_busy(False)
        self._after_prelabel()
        self.report_error(message)
        self.prelabel_failed.emit(message)

    def _after_prelabel(self) -> None:
        if self.project is None:
            return
        self._refresh_categories()
        self.image_list.refresh()
        self.reload_annotations(keep_selection=False)

    # ---------------------------------------------------------------- export / open dialogs
    @_user_action
    def export_coco(self, path: str | Path, include: str = "accepted") -> dict:
        """Write a COCO instances JSON (``include``: accepted | human | all); returns counts."""
        from annotator.io.coco import export_coco

        if self.project is None:
            raise AnnotatorError("no project open: nothing to export")
        counts = export_coco(self.project, Path(path), include=include)
        self.status_label.setText(f"Exported {path}: {counts}")
        return counts

    def export_coco_dialog(self) -> None:
        start = "" if self.project is None else str(Path(self.project.root) / "instances.json")
        answer = dialogs.ask_export(self, start)
        if answer is not None:
            self.export_coco(*answer)

    def open_folder_dialog(self) -> None:
        path = dialogs.ask_folder(self, str(self.project.root) if self.project is not None else "")
        if path:
            self.open_project(path)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.prelabel_jobs.shutdown()
        if self.project is not None:
            self.project.close()
            self.project = None
        super().closeEvent(event)
