"""Model > Train...: the training dialog and the model manager (issue #7, "Train button").

:class:`TrainingDialog` (non-modal, one per window, opened by :meth:`MainWindow.open_training`)
has two tabs:

* **Train**: architecture, the weights the run will start from (the same order as
  :func:`annotator.jobs.train.prepare_train_job`: the project's active version of the same
  architecture, its official COCO checkpoint when downloaded, ImageNet backbone weights already
  on disk, random init), an
  "Advanced" panel (architecture, input size, iterations, learning rate, batch size, device; 0 /
  "auto" = the job's defaults for small data), Start / Cancel, a progress bar, a log and a live
  :class:`CurveWidget` (training loss and validation segm / bbox AP). The run is an
  :class:`annotator.jobs.train_process.TrainProcess` (a child process); a ``QTimer`` on the GUI
  thread polls its queue without blocking. A child error goes to
  :func:`annotator.ui.dialogs.show_error` and the dialog returns to idle. After a run the new
  version is shown with a "Pre-label unreviewed with vN" button (the window's
  ``prelabel_unreviewed`` with that version as the model).
* **Models**: the project's model versions (architecture, parent, validation AP, iterations,
  checkpoint); set the active version, delete a version (and its checkpoint file when it lies
  in the project folder).
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QMessageBox,
    QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QTabWidget,
    QVBoxLayout, QWidget,
)

from annotator.errors import AnnotatorError
from annotator.ui import dialogs

POLL_MS = 100
#: The Train dialog's default time budget on a machine without a GPU (minutes).
CPU_BUDGET_MIN = 5.0
#: (text, ``augment`` value of the train job, tooltip) of the "Images are" choice.
AUGMENT_CHOICES = (
    ("photos (flips left / right, colour, scale)", "photo",
     "Pictures with an up and a down: mirrored left / right, colour and scale jitter"),
    ("top-down (also rotated, flipped up / down)", "topdown",
     "Microscopy, aerial, documents, parts on a table: no up or down, so flips both ways and 90-degree rotations "
     "too"),
    ("no augmentation", None, "Train on the images as they are"),
)


def machine_device() -> str:
    """``"cuda"`` when a GPU is usable here, else ``"cpu"``."""
    from segcore.device import resolve_device

    return resolve_device("auto").type


def machine_default_architecture() -> str:
    """The architecture the Train dialog proposes without a model version: the train job's default
    for this machine (:func:`annotator.jobs.train.default_architecture`)."""
    from annotator.jobs.train import default_architecture

    return default_architecture(machine_device())


def fill_architectures(combo: QComboBox) -> None:
    """The architectures grouped by family (a disabled header row per family), each with its
    one-line description (``Family.describe``) as tooltip; item data = the architecture name."""
    from segcore.modeling import FAMILIES, family_of_arch, list_architectures

    by_family: dict[str, list[str]] = {}
    for arch in list_architectures():
        by_family.setdefault(family_of_arch(arch).name, []).append(arch)
    for name, archs in by_family.items():
        combo.addItem(f"-- {name} --")
        header = combo.model().item(combo.count() - 1)
        header.setEnabled(False)
        for arch in archs:
            combo.addItem(f"  {arch}", arch)
            combo.setItemData(combo.count() - 1, FAMILIES[name].describe(arch), Qt.ToolTipRole)
LOSS_COLOR, SEGM_COLOR, BBOX_COLOR = QColor(40, 90, 200), QColor(210, 60, 40), QColor(40, 150, 70)


def start_weights_text(project, arch: str) -> str:
    """What a run of ``arch`` on ``project`` starts from, in the order of ``prepare_train_job``
    (no ``--init`` / resume from the GUI). Reads the project only; writes nothing."""
    from annotator.jobs.train import _start_version, find_coco_checkpoint, find_imagenet_backbone

    start = None
    if project is not None:
        try:
            start = _start_version(project, arch, project.active_model_version(), use_newest=True)
        except AnnotatorError:
            start = None
    if start is not None:
        mv = project.model_version(start)
        which = "current model version" if start == project.active_model_version() else "newest model version"
        return f"{which} v{start} ({Path(mv.checkpoint).name})"
    coco = find_coco_checkpoint(arch, verify=False)
    if coco is not None:
        return f"official COCO weights downloaded ({coco.name}); class layers random init"
    backbone = find_imagenet_backbone(arch)
    if backbone is not None:
        return f"ImageNet backbone weights found offline ({backbone.name}); rest random init"
    return "random init (no model version of this architecture, no downloaded COCO or ImageNet weights)"


class CurveWidget(QWidget):
    """Live training curves drawn with ``QPainter``: total loss (left axis, blue) and validation
    segm AP (red) / bbox AP (green) on the right axis (0..max). Feed it the streamed progress
    dicts with :meth:`add_progress`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(320, 160)
        self.loss_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float, float]] = []
        self.iterations = 1

    def clear(self) -> None:
        self.loss_points, self.val_points, self.iterations = [], [], 1
        self.update()

    def add_progress(self, info: dict) -> None:
        it = int(info.get("iteration", 0))
        self.iterations = max(self.iterations, int(info.get("iterations") or 1), it)
        loss = (info.get("losses") or {}).get("total")
        if loss is not None and math.isfinite(float(loss)):
            self.loss_points.append((it, float(loss)))
        val = info.get("val")
        if val:
            self.val_points.append((int(val.get("iteration", it)), float(val.get("segm_AP", 0.0)),
                                    float(val.get("bbox_AP", 0.0))))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), QColor(255, 255, 255))
        left, top, right, bottom = 40, 10, self.width() - 40, self.height() - 20
        if right <= left or bottom <= top:
            return
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(left, top, right - left, bottom - top)
        p.drawText(4, bottom + 15, f"0 .. {self.iterations} iterations")

        def x_of(it: float) -> float:
            return left + (right - left) * it / max(1, self.iterations)

        if self.loss_points:
            hi = max(v for _, v in self.loss_points) or 1.0
            p.setPen(QPen(LOSS_COLOR, 1.5))
            p.drawPolyline(QPolygonF([QPointF(x_of(i), bottom - (bottom - top) * v / hi)
                                      for i, v in self.loss_points]))
            p.drawText(2, top + 10, f"{hi:.2g}")
            p.drawText(left + 4, top + 14, "loss")
        if self.val_points:
            hi = max(max(s, b) for _, s, b in self.val_points) or 1.0
            for k, color, name in ((1, SEGM_COLOR, "segm AP"), (2, BBOX_COLOR, "bbox AP")):
                p.setPen(QPen(color, 2))
                pts = [QPointF(x_of(v[0]), bottom - (bottom - top) * v[k] / hi) for v in self.val_points]
                p.drawPolyline(QPolygonF(pts))
                for pt in pts:
                    p.drawEllipse(pt, 2.5, 2.5)
                p.drawText(right - 60, top + 14 * k, name)
            p.setPen(QPen(QColor(120, 120, 120), 1))
            p.drawText(right + 2, top + 10, f"{hi:.2f}")
        p.end()


class ModelManager(QWidget):
    """The project's model versions: set the active one, delete old ones (and their checkpoint)."""

    COLUMNS = ("version", "arch", "parent", "segm AP", "bbox AP", "iterations", "checkpoint")
    changed = Signal()

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.table = QTableWidget(0, len(self.COLUMNS), self)
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.active_button = QPushButton("Set active", toolTip="New training and pre-label start from this version")
        self.delete_button = QPushButton("Delete...", toolTip="Unregister the version and delete its checkpoint "
                                         "file when it is inside the project folder")
        self.active_button.clicked.connect(self.set_active_selected)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        buttons = QHBoxLayout()
        buttons.addWidget(self.active_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        box = QVBoxLayout(self)
        box.addWidget(self.table)
        box.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        project = self.window.project
        versions = project.model_versions() if project is not None else []
        active = project.active_model_version() if project is not None else None
        self.table.setRowCount(len(versions))
        for row, v in enumerate(versions):
            m = v.metrics or {}
            cells = (f"v{v.id}" + (" (active)" if v.id == active else ""), v.arch,
                     "" if v.parent is None else f"v{v.parent}",
                     _ap(m.get("segm")), _ap(m.get("bbox")), str(m.get("iterations_done", "")),
                     Path(str(v.checkpoint)).name)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, int(v.id))
                if col == len(cells) - 1:
                    item.setToolTip(str(v.checkpoint))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def version_ids(self) -> list[int]:
        return [int(self.table.item(r, 0).data(Qt.UserRole)) for r in range(self.table.rowCount())]

    def selected_version(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return None if not rows else int(self.table.item(rows[0].row(), 0).data(Qt.UserRole))

    def select_version(self, version: int) -> None:
        ids = self.version_ids()
        if version in ids:
            self.table.selectRow(ids.index(version))

    def set_active_selected(self) -> None:
        version = self.selected_version()
        if version is None or self.window.project is None:
            return
        try:
            self.window.project.set_active_model_version(version)
            self.window.set_model(version)
        except AnnotatorError as exc:
            dialogs.show_error(self, str(exc))
        self.refresh()
        self.changed.emit()

    def delete_selected(self, *, confirm: bool = True) -> None:
        version = self.selected_version()
        if version is None or self.window.project is None:
            return
        if confirm and QMessageBox.question(self, "Delete model version",
                                            f"Delete model version v{version} and its checkpoint file?") \
                != QMessageBox.Yes:
            return
        try:
            self.window.project.delete_model_version(version, delete_checkpoint=True)
        except (AnnotatorError, OSError) as exc:
            dialogs.show_error(self, str(exc))
        if self.window.model_choice == version:
            self.window.model_choice = None
            self.window.model_label.setText("Model: active version")
        self.refresh()
        self.changed.emit()


def _ap(entry) -> str:
    return "" if not entry or entry.get("AP") is None else f"{float(entry['AP']):.3f}"


class TrainingDialog(QDialog):
    """Train a model on the window's project in a child process (see the module doc).

    ``state``: ``"idle" | "running"``; ``last_result`` / ``last_error`` of the last run;
    ``progress_count``: progress dicts received in the current run."""

    run_finished = Signal(object)   # the child's "done" dict
    run_failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.setWindowTitle("Train model")
        self.setModal(False)
        self.resize(620, 560)
        self.process = None
        self.run_project: str | None = None
        self.state = "idle"
        self.last_result: dict | None = None
        self.last_error: str | None = None
        self.progress_count = 0
        self.num_threads: int | None = None   # torch threads in the child (None: torch default)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

        self.arch_combo = QComboBox()
        fill_architectures(self.arch_combo)
        self.arch_combo.setCurrentIndex(self.arch_combo.findData(machine_default_architecture()))
        self.arch_help = QLabel()
        self.arch_help.setWordWrap(True)
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.arch_combo.currentIndexChanged.connect(lambda _: self.refresh_plan())
        self.budget = QDoubleSpinBox(minimum=0.0, maximum=10_000.0, decimals=1, singleStep=1.0, suffix=" min",
                                     specialValueText="none: iterations")
        self.budget.setValue(CPU_BUDGET_MIN if machine_device() == "cpu" else 0.0)
        self.budget.setToolTip("Training time: iterations, warmup and learning-rate steps are laid out from the "
                               "speed measured in the first steps (0: a number of iterations instead)")
        self.augment = QComboBox()
        for text, value, tip in AUGMENT_CHOICES:
            self.augment.addItem(text, value)
            self.augment.setItemData(self.augment.count() - 1, tip, Qt.ToolTipRole)

        self.input_size = QSpinBox(minimum=0, maximum=4096, singleStep=32, specialValueText="default")
        self.iterations = QSpinBox(minimum=0, maximum=1_000_000, singleStep=100,
                                   specialValueText="auto: clamp(50 x images, 200, 20000)")
        self.lr = QDoubleSpinBox(minimum=0.0, maximum=1.0, decimals=6, singleStep=1e-4,
                                 specialValueText="auto: official per family x batch")
        self.batch_size = QSpinBox(minimum=0, maximum=1024, specialValueText="auto: 8 CUDA / 4 CPU")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.advanced = QGroupBox("Advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        adv = QFormLayout(self.advanced)
        self.advanced_arch = QLabel()
        adv.addRow("Architecture", self.advanced_arch)
        adv.addRow("Input size", self.input_size)
        adv.addRow("Iterations", self.iterations)
        adv.addRow("Learning rate", self.lr)
        adv.addRow("Batch size", self.batch_size)
        adv.addRow("Device", self.device)
        self.advanced.toggled.connect(self._show_advanced)
        self._show_advanced(False)

        self.start_button = QPushButton("Start", toolTip="Train on accepted + edited annotations")
        self.cancel_button = QPushButton("Cancel", toolTip="Stop after the current iteration and register "
                                         "the best checkpoint")
        self.prelabel_button = QPushButton("Pre-label unreviewed")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.prelabel_button.clicked.connect(self.prelabel_with_new_version)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Idle")
        self.status_label.setWordWrap(True)
        self.curve = CurveWidget()
        self.log_view = QPlainTextEdit(readOnly=True, maximumBlockCount=500)
        self.log_view.setMaximumHeight(110)

        form = QFormLayout()
        form.addRow("Architecture", self.arch_combo)
        form.addRow("", self.arch_help)
        form.addRow("Time budget", self.budget)
        form.addRow("Images are", self.augment)
        form.addRow("Starts from", self.weights_label)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.prelabel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        train_tab = QWidget()
        box = QVBoxLayout(train_tab)
        box.addLayout(form)
        box.addWidget(self.advanced)
        box.addLayout(buttons)
        box.addWidget(self.progress_bar)
        box.addWidget(self.status_label)
        box.addWidget(self.curve, 1)
        box.addWidget(self.log_view)
        self.models = ModelManager(window)
        self.models.changed.connect(self.refresh_plan)
        self.tabs = QTabWidget()
        self.tabs.addTab(train_tab, "Train")
        self.tabs.addTab(self.models, "Models")
        QVBoxLayout(self).addWidget(self.tabs)
        self.refresh()

    # ---------------------------------------------------------------- plan / state
    def refresh(self) -> None:
        """Re-read the project: default architecture (the active version's), plan, versions."""
        project = self.window.project
        active = project.active_model_version() if project is not None else None
        if active is not None and self.state == "idle":
            try:
                arch = project.model_version(active).arch
                if self.arch_combo.findData(arch) >= 0:
                    self.arch_combo.setCurrentIndex(self.arch_combo.findData(arch))
            except AnnotatorError:
                pass
        self.models.refresh()
        self.refresh_plan()

    def refresh_plan(self) -> None:
        arch = self.arch_combo.currentData() or self.arch_combo.currentText()
        self.advanced_arch.setText(arch)
        self.arch_help.setText(self.arch_combo.currentData(Qt.ToolTipRole) or "")
        try:
            text = start_weights_text(self.window.project, arch)
        except AnnotatorError as exc:
            text = str(exc)
        self.weights_label.setText(text)
        self._update_buttons()

    def _show_advanced(self, on: bool) -> None:
        for w in self.advanced.findChildren(QWidget):
            w.setVisible(on)

    def _update_buttons(self) -> None:
        running = self.state == "running"
        self.start_button.setEnabled(not running and self.window.project is not None)
        self.cancel_button.setEnabled(running)
        self.arch_combo.setEnabled(not running)
        self.advanced.setEnabled(not running)
        done = self.last_result is not None and not running
        self.prelabel_button.setVisible(done)
        if done:
            self.prelabel_button.setText(f"Pre-label unreviewed with v{self.last_result['model_version']}")

    def train_kwargs(self) -> dict:
        """Keyword arguments of ``run_train_job`` from the form (0 / auto = default)."""
        kw: dict = {"arch": self.arch_combo.currentData(), "device": self.device.currentText(),
                    "augment": self.augment.currentData()}
        for key, widget in (("input_size", self.input_size), ("iterations", self.iterations),
                            ("batch_size", self.batch_size), ("lr", self.lr), ("max_minutes", self.budget)):
            if widget.value() > 0:
                kw[key] = widget.value()
        if "iterations" in kw:
            kw.pop("max_minutes", None)   # an explicit iteration count wins over the budget
        return kw

    # ---------------------------------------------------------------- run
    def start(self) -> bool:
        """Start a run in a child process; False (with an error dialog) if it cannot start."""
        from annotator.jobs.train_process import TrainProcess

        project = self.window.project
        if self.state == "running":
            return False
        if project is None:
            dialogs.show_error(self, "no project open: open a folder or project first")
            return False
        if project.read_only:
            dialogs.show_error(self, f"{project.db_path}: project is open read-only: training is disabled")
            return False
        self.last_result, self.last_error, self.progress_count = None, None, 0
        self.curve.clear()
        self.log_view.clear()
        self.progress_bar.setRange(0, 0)
        self.run_project = str(project.db_path)
        self.process = TrainProcess(project.db_path, num_threads=self.num_threads, **self.train_kwargs())
        try:
            self.process.start()
        except (OSError, RuntimeError) as exc:
            self.process = None
            self._fail(f"cannot start the training process: {exc}")
            return False
        self.state = "running"
        self.status_label.setText(f"Training {self.arch_combo.currentData()}: starting...")
        self.window.status_label.setText("Training...")
        self._update_buttons()
        self.timer.start()
        return True

    def cancel(self) -> None:
        """Stop after the current iteration; the best checkpoint is registered."""
        if self.process is not None and self.state == "running":
            self.process.cancel()
            self.status_label.setText("Cancelling: finishing the iteration, evaluating, registering...")

    def poll(self) -> None:
        """Timer slot: handle the child's messages (never blocks)."""
        if self.process is None:
            self.timer.stop()
            return
        for msg in self.process.poll(0.0):
            kind = msg.get("type")
            if kind == "progress":
                self._on_progress(msg)
            elif kind == "log":
                self.log_view.appendPlainText(msg.get("message", ""))
            elif kind == "done":
                self._on_done(msg)
            elif kind == "error":
                self._fail(msg.get("message", "training failed"))

    def _on_progress(self, info: dict) -> None:
        self.progress_count += 1
        it, total = int(info.get("iteration", 0)), max(1, int(info.get("iterations") or 1))
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(it, total))
        self.curve.add_progress(info)
        loss = (info.get("losses") or {}).get("total")
        text = f"iteration {it}/{total}"
        if loss is not None:
            text += f", loss {float(loss):.3f}"
        if info.get("eta_s") is not None:
            text += f", ETA {float(info['eta_s']):.0f} s"
        if info.get("val"):
            v = info["val"]
            text += f", val segm AP {v['segm_AP']:.3f} (best {v['best_segm_AP']:.3f})"
            self.log_view.appendPlainText(f"validation at {v['iteration']}: segm AP {v['segm_AP']:.4f}, "
                                          f"bbox AP {v['bbox_AP']:.4f}")
        self.status_label.setText(text)

    def _finish_process(self) -> None:
        self.timer.stop()
        self.state = "idle"
        self.progress_bar.setRange(0, 1)

    def _on_done(self, msg: dict) -> None:
        self._finish_process()
        self.last_result = msg
        version = int(msg["model_version"])
        self.progress_bar.setValue(1)
        how = "cancelled" if msg.get("stopped") else "early stop" if msg.get("early_stopped") else "finished"
        m = msg.get("metrics") or {}
        ap = f", validation segm AP {_ap(m.get('segm'))}, bbox AP {_ap(m.get('bbox'))}" if m else ""
        text = f"Model version v{version} registered ({how} after {msg.get('iterations_done')} iterations{ap})"
        if msg.get("activation"):
            text += f"; {msg['activation']}"
        self.status_label.setText(text)
        self.log_view.appendPlainText(text)
        same = self.window.project is not None and str(self.window.project.db_path) == self.run_project
        if same and msg.get("activated", True):
            self.window.set_model(version)   # (another project opened meanwhile: leave its model alone)
        self.window.status_label.setText(text)
        self.refresh()
        self.models.select_version(version)
        self.run_finished.emit(msg)

    def _fail(self, message: str) -> None:
        self._finish_process()
        self.last_error = message
        self.status_label.setText(f"Error: {message}")
        self.log_view.appendPlainText(f"Error: {message}")
        self.window.last_error = message
        self.window.status_label.setText(f"Training failed: {message}")
        self._update_buttons()
        dialogs.show_error(self, f"Training failed: {message}")
        self.run_failed.emit(message)

    def prelabel_with_new_version(self) -> bool:
        """Pre-label the unreviewed images with the version the last run registered."""
        if self.last_result is None or self.window.project is None \
                or str(self.window.project.db_path) != self.run_project:
            return False
        self.window.set_model(int(self.last_result["model_version"]))
        return bool(self.window.prelabel_unreviewed())

    def shutdown(self) -> None:
        """Stop polling and kill a running child (window closing)."""
        self.timer.stop()
        if self.process is not None and self.state == "running":
            self.process.kill()
        self.state = "idle"

def open_training(window) -> TrainingDialog:
    """Show the window's training dialog (made once, kept in ``window.training_dialog``)."""
    dlg = getattr(window, "training_dialog", None)
    if dlg is None:
        dlg = TrainingDialog(window)
        window.training_dialog = dlg
    elif dlg.state == "idle":
        dlg.refresh()
    dlg.show()
    dlg.raise_()
    return dlg
