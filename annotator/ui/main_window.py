"""Main window: image list (left), canvas (centre), instance list (right), actions, status bar.

Keyboard shortcuts: :data:`annotator.ui.actions.ACTIONS` (shown in every tooltip). Editing
tools and undo live in :mod:`annotator.ui.editing`, the review workflow in
:mod:`annotator.ui.reviewing`, pre-labelling in :mod:`annotator.ui.prelabeling`, the class
manager in :mod:`annotator.ui.class_manager`, File > Import annotations / Export of the
interchange formats in :mod:`annotator.ui.formats`, Help > About in :mod:`annotator.ui.about`.
Rejected instances are hidden on the canvas (outline only when selected or with H).
On open the window takes the project's session lock (:mod:`annotator.tools.session`): a
project held by another instance is opened read-only with a notice, and an unclean shutdown
of the previous session is reported.
User errors (:class:`AnnotatorError`) go to :func:`annotator.ui.dialogs.show_error` and
:attr:`MainWindow.last_error`; they never raise out of an action.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox, QDockWidget, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from annotator.errors import AnnotatorError, Refusal
from annotator.tools import tiles
from annotator.tools.overlay import InstanceLayer, MaskCache, build_layer
from annotator.tools.selection import step_selection
from annotator.ui import dialogs, settings
from annotator.tools.session import SessionLock, describe
from annotator.ui.actions import build_actions
from annotator.ui.canvas import Canvas
from annotator.ui.class_manager import ClassManagerMixin
from annotator.ui.editing import EditingMixin
from annotator.ui.formats import FormatsMixin
from annotator.ui.image_list import ImageList
from annotator.ui.instance_panel import InstancePanel
from annotator.ui.prelabeling import PrelabelMixin
from annotator.ui.reviewing import ReviewMixin
from annotator.ui.workers import (
    FileCheckController, PrelabelController, device_description, prepare_project, run_in_thread,
)
from annotator.ui.dialogs import user_action


def _decode_pyramid(path) -> tuple:
    """``(rgb, pyramid levels)`` of an image file (runs on the thread pool)."""
    from annotator.project.images import load_rgb

    rgb = load_rgb(path)
    return rgb, tiles.build_pyramid(rgb)




#: How often the window looks for changes written by other processes (``PRAGMA data_version``).
EXTERNAL_POLL_MS = 1000


class MainWindow(EditingMixin, ReviewMixin, PrelabelMixin, ClassManagerMixin, FormatsMixin, QMainWindow):
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
        from annotator.ui.about import app_icon

        self.setWindowIcon(app_icon())
        self.about_dialog = None
        self.project = None
        self.last_error: str | None = None
        self.last_refusal: str | None = None
        self.score_threshold = float(score_threshold)
        self.model_choice: int | str | None = None
        self.show_rejected = False
        self.current_image_id: int | None = None
        self.selected_id: int | None = None
        self._annotations: list = []
        self._masks = np.zeros((0, 1, 1), dtype=bool)
        self._mask_cache = MaskCache()
        self._layer: InstanceLayer | None = None
        self.canvas_image: np.ndarray | None = None
        self.session: SessionLock | None = None
        self.notices: list[str] = []

        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.image_list = ImageList(None, self)
        self.instance_panel = InstancePanel(self)
        self._init_review()
        images_box = QWidget(self)
        box = QVBoxLayout(images_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.filter_combo)
        box.addWidget(self.sort_combo)
        box.addWidget(self.image_list)
        instances_box = QWidget(self)
        box = QVBoxLayout(instances_box)
        box.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show predictions", self))
        row.addWidget(self.threshold_slider, 1)
        row.addWidget(self.threshold_label)
        box.addLayout(row)
        box.addWidget(self.instance_panel)
        for title, widget, area in (("Images", images_box, Qt.LeftDockWidgetArea),
                                    ("Instances", instances_box, Qt.RightDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        self.category_combo = QComboBox(self)
        self.category_combo.setToolTip("Class of the selected instance, or of the next one you draw (1-9)")
        self.category_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.category_combo.setMinimumContentsLength(14)
        self.category_label = QLabel(" Class: ", self)
        self.category_label.setBuddy(self.category_combo)
        self.category_combo.activated.connect(lambda i: self.set_selected_category(self.category_combo.itemData(i)))
        self._build_status_bar()
        self.prelabel_jobs = PrelabelController(self)
        self.prelabel_jobs.progress.connect(self._on_prelabel_progress)
        self.prelabel_jobs.finished.connect(self._on_prelabel_finished)
        self.prelabel_jobs.failed.connect(self._on_prelabel_failed)
        self.prelabel_jobs.recorded.connect(self._on_prelabel_recorded)
        self.prelabel_jobs.precision.connect(self._on_prelabel_precision)
        self.file_check = FileCheckController(self)
        self.file_check.finished.connect(self._on_file_check)
        self._data_version: int | None = None
        self.external_timer = QTimer(self)   # others' writes (CLI, training process) appear within ~1 s
        self.external_timer.setInterval(EXTERNAL_POLL_MS)
        self.external_timer.timeout.connect(self.check_external_changes)
        self.class_menu = None
        self.actions_by_name: dict[str, QAction] = {}
        self._init_editing()
        self.actions_by_name.update(build_actions(self, (self.category_label, self.category_combo)))
        self.set_tool("select")
        self._update_undo_actions()
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
        self.model_label, self.device_label = QLabel("Model: active version"), QLabel("Device: ...")
        self.device_label.setToolTip("Device the model runs on (pre-label uses device=auto)")

        def show_device(text: str) -> None:
            try:
                self.device_label.setText(f"Device: {text}")
            except RuntimeError:  # window already gone
                pass
        # The probe imports torch (~1 s of CPU): start it after the first image is on screen so it
        # does not compete with opening the project for the GIL.
        QTimer.singleShot(3000, lambda: run_in_thread(device_description, on_done=show_device, on_error=show_device))
        for widget in (self.model_label, self.device_label, self.progress_bar, self.cancel_button):
            self.statusBar().addPermanentWidget(widget)
        self._set_busy(False)

    # ---------------------------------------------------------------- errors / status
    def report_error(self, error: str | AnnotatorError) -> None:
        """Show a user error (dialog via ``dialogs.show_error``) and keep it in ``last_error``;
        a routine :class:`~annotator.errors.Refusal` (nothing selected, no image shown, a job
        already running) goes to the status bar only and to ``last_refusal``."""
        message = str(error)
        if isinstance(error, Refusal):
            self.last_refusal = message
            self.status_label.setText(message)
            return
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
        """Show ``project`` (the window owns it from now on and closes the previous one), on the
        image and view where it was left last time (:mod:`annotator.ui.settings`), else its first image."""
        self.save_view()
        if self.project is not None and self.project is not project:
            self.project.close()
        self._release_session()
        project = self._take_session(project)
        self.project = project
        self.history.clear()
        self.current_image_id = None
        self.setWindowTitle(f"Annotator - {project.root}")
        self._data_version = project.data_version()
        self.external_timer.start()
        self.image_list.set_project(project)
        if not project.read_only:  # hash new images, find changed / vanished files, off the GUI thread
            self.file_check.start(str(project.db_path))
        self._refresh_categories()
        ids = self.image_list.image_ids()
        last = settings.load_view(project.root)
        if last is not None and not self.image_list.is_hidden(int(last["image_id"])):
            self.show_image(int(last["image_id"]))
            self.canvas.restore_view(last.get("view") or {})
            # again once the window is laid out (the view's size decides where its centre is)
            QTimer.singleShot(0, functools.partial(self._restore_view, int(last["image_id"]), last.get("view") or {}))
        elif ids:
            self.show_image(ids[0])
        else:
            self.canvas.set_image(None)
            self.instance_panel.set_instances([], [])
        self.project_opened.emit(str(project.root))

    def check_external_changes(self) -> bool:
        """Show what another process wrote to the project since the last look (the timer calls
        this every :data:`EXTERNAL_POLL_MS`): image states, the shown image's instances (the
        selection and the undo history are kept), classes. True when something changed."""
        if self.project is None:
            return False
        version = self.project.data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        self.image_list.refresh()
        self._refresh_categories()
        if self.current_image_id is not None and self.project.annotations(self.current_image_id) != self._annotations:
            self.reload_annotations(keep_selection=True)
        return True

    def _on_file_check(self, check) -> None:
        """Background file check done: say what changed on disk and show the marked images."""
        if self.project is None or not (check.changed or check.unreadable):
            return
        parts = []
        if check.changed:
            parts.append(f"{len(check.changed)} image file(s) changed on disk since they were added")
        if check.unreadable:
            parts.append(f"{len(check.unreadable)} cannot be read (filter 'Unreadable' in the Images list)")
        self.status_label.setText("; ".join(parts))
        self.image_list.refresh()

    def notify(self, message: str) -> None:
        """An information notice (dialog via ``dialogs.show_info``), kept in ``notices``."""
        self.notices.append(message)
        self.status_label.setText(message.splitlines()[0] if message else "")
        dialogs.show_info(self, message)

    def _take_session(self, project):
        """Take the project's session lock; another instance holding it -> reopen read-only."""
        from annotator.project import Project

        if project.read_only:
            return project
        lock = SessionLock(project.root)
        try:
            status = lock.acquire()
        except OSError as exc:
            self.notify(f"{project.root}: cannot create the session file ({exc}); "
                        "a second instance would not be detected")
            return project
        if status.locked:
            path = project.db_path
            project.close()
            project = Project.open(path, read_only=True)
            self.notify(f"{path}: this project is open in another annotator ({describe(status.info)}); "
                        "it is shown read-only here, edits are disabled")
            return project
        self.session = lock
        if status.unclean:
            self.notify(f"{project.root}: the previous session ({describe(status.info)}) did not close "
                        "cleanly; every edit committed before it stopped is in the project")
        return project

    def _release_session(self) -> None:
        if self.session is not None:
            self.session.release()
            self.session = None

    def open_project(self, path: str | Path) -> None:
        """Open a project folder / ``.sqlite`` or make a folder into a project, in the background
        (folder scan off the GUI thread); emits ``project_opened`` when shown."""
        from annotator.project import Project

        def done(result: tuple[str, list[str]]) -> None:
            p, skipped = result
            try:
                self.set_project(Project.open(Path(p), create_if_folder=False))
            except AnnotatorError as exc:
                self.report_error(exc)
                return
            self.status_label.setText(f"Opened {p}: {self.image_list.count()} images")
            if skipped:
                shown = "\n".join(skipped[:20]) + (f"\n... and {len(skipped) - 20} more" if len(skipped) > 20 else "")
                self.notify(f"{len(skipped)} file(s) in {p} could not be read and were left out:\n{shown}")

        self.status_label.setText(f"Opening {path}...")
        run_in_thread(prepare_project, str(path), on_done=done, on_error=self.report_error)

    def _refresh_categories(self) -> None:
        """Class picker and Class menu from the project's categories: a colour swatch and the
        name (digit key 1-9 for the first nine), then "Add class..." and "Class manager..."."""
        from annotator.tools.colors import category_color
        from annotator.ui.image_list import _dot_icon

        cats = self.project.categories() if self.project is not None else []
        self.category_combo.blockSignals(True)
        self.category_combo.clear()
        self.class_menu.clear()
        for i, c in enumerate(cats):
            icon = _dot_icon(category_color(c.id, c.color))
            self.category_combo.addItem(icon, f"{i + 1}: {c.name}" if i < 9 else c.name, int(c.id))
            act = self.actions_by_name[f"class_{i + 1}"] if i < 9 else QAction(self)
            act.setText(c.name)
            act.setIcon(icon)
            if i >= 9:
                act.triggered.connect(functools.partial(self.set_selected_category, int(c.id)))
            self.class_menu.addAction(act)
        if not cats:
            self.category_combo.addItem("(no classes yet)", None)
        self.category_combo.blockSignals(False)
        self.class_menu.addSeparator()
        self.class_menu.addAction(self.actions_by_name["add_class"])
        self.class_menu.addAction(self.actions_by_name["classes"])
        self._sync_category_combo()

    def _sync_category_combo(self) -> None:
        """The class picker shows the selected instance's class, else the class new instances get."""
        rec = next((a for a in self._annotations if a.id == self.selected_id), None)
        cat = rec.category_id if rec is not None else self.current_category_id
        index = self.category_combo.findData(int(cat)) if cat is not None else -1
        if index >= 0 and index != self.category_combo.currentIndex():
            self.category_combo.blockSignals(True)
            self.category_combo.setCurrentIndex(index)
            self.category_combo.blockSignals(False)

    @user_action
    def show_image(self, image_id: int) -> None:
        """Show an image with its instances (image loaded as RGB uint8; masks from RLE)."""
        from annotator.project.images import load_rgb

        if self.project is None:
            return
        changed = image_id != self.current_image_id
        if changed:
            rec = self.project.image(image_id)
            try:
                preview = tiles.load_preview(self.project.image_path(image_id), rec.height, rec.width) \
                    if rec.height * rec.width > tiles.BIG_IMAGE_PIXELS else None
                rgb = load_rgb(self.project.image_path(image_id)) if preview is None else None
                if (rgb is not None and rgb.shape[:2] != (rec.height, rec.width)):
                    raise AnnotatorError(f"{rec.file_name}: cannot read image: changed on disk: now {rgb.shape[1]} "
                                         f"x {rgb.shape[0]} px, its annotations are {rec.width} x {rec.height}")
            except AnnotatorError as exc:  # a bad file is a state of the image, not an error dialog
                reason = str(exc).split(": cannot read image: ", 1)[-1]
                if not self.project.read_only:
                    self.project.mark_unreadable(image_id, reason)
                self.image_list.update_state(image_id)
                preview, rgb = None, None
                self.status_label.setText(f"{rec.file_name}: cannot read image: {reason}")
            else:
                if rec.error is not None and not self.project.read_only:
                    self.project.mark_readable(image_id)
                    self.image_list.update_state(image_id)
            self.cancel_gesture()
            self.canvas.set_image(rgb if preview is None else preview[0], factor=1 if preview is None else preview[1])
            self.canvas_image = rgb
            if preview is not None:   # big image: full decode + pyramid on the thread pool
                run_in_thread(_decode_pyramid, self.project.image_path(image_id), on_error=self.report_error,
                              on_done=functools.partial(self._full_image_loaded, int(image_id)))
        self.current_image_id = int(image_id)
        self.image_list.set_current(int(image_id))
        self.reload_annotations(keep_selection=not changed)
        self._update_undo_actions()
        if changed:
            self.image_changed.emit(int(image_id))

    def _full_image_loaded(self, image_id: int, result) -> None:
        if image_id == self.current_image_id:
            self.canvas.set_pyramid(result[1])
            if self.canvas_image is None:
                self.canvas_image = result[0]

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
        keep = [i for i, a in enumerate(self._annotations)
                if not self.hidden_by_threshold(a) or a.id == self.selected_id]
        self._layer = build_layer([self._annotations[i] for i in keep], self.project.categories(), rec.height,
                                  rec.width, selected_id=self.selected_id, show_rejected=self.show_rejected,
                                  masks=self._masks[keep] if keep else np.zeros((0, rec.height, rec.width), bool))
        self.canvas.set_instances(self._layer.sprites, self._layer.labels)

    def layer(self) -> InstanceLayer | None:
        """What the canvas shows now (ids, masks as boxes, per-instance sprites, labels)."""
        return self._layer

    def next_image(self) -> None:
        self._step_image(1)

    def previous_image(self) -> None:
        self._step_image(-1)

    def _step_image(self, step: int) -> None:
        target = self.image_list.neighbour(self.current_image_id, step)
        if target is not None and target != self.current_image_id:
            self.show_image(target)

    def toggle_rejected(self) -> None:
        """Show / hide rejected instances (outline only) on the canvas."""
        self.show_rejected = self.actions_by_name["show_rejected"].isChecked()
        self._redraw()

    # ---------------------------------------------------------------- selection / review
    def select_instance(self, ann_id: int | None) -> None:
        """Select an instance (``None`` clears); syncs the list and the canvas highlight."""
        new = None if ann_id is None else int(ann_id)
        if new is not None and new != self.selected_id and self.selected_id is not None:
            self.previous_selected_id = self.selected_id
        self.selected_id = new
        self._sync_vertex_polygon()
        self.instance_panel.select(self.selected_id)
        self._sync_category_combo()
        self._redraw()
        self.selection_changed.emit(-1 if self.selected_id is None else self.selected_id)

    def select_at(self, x: float, y: float) -> int | None:
        """Select the topmost visible instance under image pixel ``(x, y)``; returns its id."""
        layer = self._layer
        hit = None if layer is None else layer.hit(x, y)
        self.select_instance(hit)
        return hit

    def _on_canvas_click(self, x: float, y: float) -> None:
        self.select_at(x, y)

    def next_instance(self) -> None:
        self.select_instance(step_selection([int(a.id) for a in self._annotations], self.selected_id, 1))

    def previous_instance(self) -> None:
        self.select_instance(step_selection([int(a.id) for a in self._annotations], self.selected_id, -1))

    # ---------------------------------------------------------------- export / open dialogs
    @user_action
    def export_coco(self, path: str | Path, include: str = "accepted") -> dict:
        """Write a COCO instances JSON (``include``: accepted | human | all); returns counts."""
        from annotator.io.coco import export_coco

        if self.project is None:
            raise AnnotatorError("no project open: nothing to export")
        counts = export_coco(self.project, Path(path), include=include)
        skipped = f"; {len(counts['skipped'])} unreadable image(s) left out" if counts["skipped"] else ""
        self.status_label.setText(f"Exported {counts['images']} images, {counts['annotations']} instances, "
                                  f"{counts['categories']} classes to {path}{skipped}")
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

    def show_about(self):
        """Help > About: version, licences, torch / CUDA build (:mod:`annotator.ui.about`).
        Opens non-modally and returns the dialog."""
        from annotator.ui.about import AboutDialog

        if self.about_dialog is None:
            self.about_dialog = AboutDialog(self)
        self.about_dialog.show()
        self.about_dialog.raise_()
        return self.about_dialog

    def open_training(self) -> None:
        """Model > Train... (Ctrl+T): the training dialog and model manager (:mod:`annotator.ui.training`)."""
        from annotator.ui.training import open_training

        open_training(self)

    def cancel(self) -> None:
        """Esc: drop the gesture in progress, else cancel a running pre-label job, else clear
        the selection (so the next brush stroke / wand click makes a new instance)."""
        if self.cancel_gesture():
            return
        if self.prelabel_jobs.busy:
            self.cancel_prelabel()
        else:
            self.select_instance(None)

    def _restore_view(self, image_id: int, view: dict) -> None:
        if self.current_image_id == image_id:
            self.canvas.restore_view(view)

    def save_view(self) -> None:
        """Remember the shown image and the canvas view of the open project (for the next start)."""
        if self.project is not None and self.current_image_id is not None:
            settings.save_view(self.project.root, self.current_image_id, self.canvas.view_state())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.external_timer.stop()
        self.save_view()
        self.file_check.stop()
        self.prelabel_jobs.shutdown()
        if getattr(self, "training_dialog", None) is not None:
            self.training_dialog.shutdown()
        if self.project is not None:
            self.project.close()
            self.project = None
        self._release_session()
        super().closeEvent(event)
