"""Mask editing in the main window (a mixin of :class:`~annotator.ui.main_window.MainWindow`):
the active tool, canvas mouse input -> :mod:`annotator.tools.interaction` -> a command of
:mod:`annotator.tools.commands` executed through the window's :class:`History` (one SQLite
transaction each, committed before the handler returns), undo / redo, and the mask operations
(merge, subtract, split, fill holes, z-order).

GrabCut (box-to-mask, refine) and the box-to-mask model run on the thread pool; the command is
executed on the GUI thread when the mask arrives. Box-to-mask uses the project's active model
version when its architecture has a box-conditioned mask head (BlendMask, CenterMask): the
``segcore.prompt.BoxPrompter`` is loaded lazily on a pool thread and cached
(:class:`~annotator.ui.workers.BoxPrompterCache`, replaced when the active version's checkpoint
changes); YOLACT or no model -> GrabCut; a model error is shown and GrabCut used instead.
Widgets stay thin: all decisions are in the pure modules
(:func:`annotator.tools.interaction.box_mask_job`).
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox

from annotator.errors import AnnotatorError, Refusal
from annotator.tools import commands
from annotator.tools.interaction import (TOOLS, BoxModel, Context, Job, NeedsCategory, Tool, command_for,
                                        is_box_model_arch, model_category_for, result_mask)
from annotator.ui.workers import BoxPrompterCache, run_in_thread

BRUSH_MIN, BRUSH_MAX = 1, 200
FIRST_CLASS_PROMPT = "This project has no classes yet. Class of this shape:"


class EditingMixin:
    """Needs: ``project``, ``current_image_id``, ``selected_id``, ``canvas``, ``history``,
    ``report_error``, ``reload_annotations``, ``select_at``, ``actions_by_name``."""

    def _init_editing(self) -> None:
        self.history = commands.History()
        self.tool = Tool("select")
        self.previous_selected_id: int | None = None
        self.current_category_id: int | None = None
        self.wand_tolerance = 20.0
        self.pending_jobs = 0
        self.box_prompters = BoxPrompterCache()
        self._box_notes_shown: set[str] = set()
        c = self.canvas
        c.tool_pressed.connect(self._tool_press)
        c.tool_moved.connect(self._tool_move)
        c.tool_released.connect(self._tool_release)
        c.tool_double_clicked.connect(self._tool_double)
        c.tool_key.connect(self._tool_key)
        self.radius_spin = QSpinBox(self, minimum=BRUSH_MIN, maximum=BRUSH_MAX, value=int(self.tool.radius))
        self.radius_spin.setToolTip("Brush / eraser / refine radius in image pixels (, smaller, . larger)")
        self.radius_spin.valueChanged.connect(self.set_brush_radius)
        self.tolerance_spin = QSpinBox(self, minimum=0, maximum=255, value=int(self.wand_tolerance))
        self.tolerance_spin.setToolTip("Magic wand colour tolerance (0-255 per channel)")
        self.tolerance_spin.valueChanged.connect(lambda v: setattr(self, "wand_tolerance", float(v)))
        self.box_engine = "model"
        self.box_engine_combo = QComboBox(self)
        self.box_engine_combo.addItem("Model", "model")
        self.box_engine_combo.addItem("GrabCut", "grabcut")
        self.box_engine_combo.setToolTip("Box to mask (X) engine: the active model's mask head (a family with "
                                         "box prompts; GrabCut when there is none or its mask is poor), or "
                                         "always OpenCV GrabCut")
        self.box_engine_combo.currentIndexChanged.connect(
            lambda i: self.set_box_engine(self.box_engine_combo.itemData(i)))

    def tool_widgets(self) -> list:
        """Widgets placed on the tool palette after the tools: brush radius, wand tolerance."""
        return [QLabel("Radius", self), self.radius_spin, QLabel("Tolerance", self), self.tolerance_spin,
                QLabel("Box engine", self), self.box_engine_combo]

    def set_box_engine(self, engine: str) -> None:
        """``"model"`` (the active version's box-conditioned mask head, GrabCut when there is
        none or its mask is poor) or ``"grabcut"`` (always GrabCut)."""
        if engine not in ("model", "grabcut"):
            raise ValueError(f"unknown box engine {engine!r}")
        self.box_engine = engine
        index = self.box_engine_combo.findData(engine)
        if index != self.box_engine_combo.currentIndex():
            self.box_engine_combo.setCurrentIndex(index)
        self.status_label.setText(f"Box to mask: {'model, GrabCut as fallback' if engine == 'model' else 'GrabCut'}")

    # ---------------------------------------------------------------- tools
    def set_tool(self, name: str) -> None:
        """Activate a tool (:data:`~annotator.tools.interaction.TOOLS`)."""
        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}")
        radius = self.tool.radius
        self.tool = Tool(name, radius=radius)
        self.canvas.tool_mode = name != "select"
        for t in TOOLS:
            act = self.actions_by_name.get(f"tool_{t}")
            if act is not None:
                act.setChecked(t == name)
        self._sync_vertex_polygon()
        self.canvas.set_preview(None)
        self.status_label.setText(f"Tool: {name}")

    def set_brush_radius(self, radius: float) -> None:
        self.tool.radius = float(min(BRUSH_MAX, max(BRUSH_MIN, radius)))
        spin = getattr(self, "radius_spin", None)
        if spin is not None and spin.value() != int(self.tool.radius):
            spin.blockSignals(True)
            spin.setValue(int(self.tool.radius))
            spin.blockSignals(False)
        self._show_preview()

    def brush_larger(self) -> None:
        self.set_brush_radius(self.tool.radius * 1.25 + 1)

    def brush_smaller(self) -> None:
        self.set_brush_radius(self.tool.radius / 1.25)

    def _sync_vertex_polygon(self) -> None:
        if self.tool.name == "vertex":
            rec = next((a for a in self._annotations if a.id == self.selected_id), None)
            self.tool.polygon = None if rec is None else rec.polygon
            self._show_preview()

    def _show_preview(self) -> None:
        self.canvas.set_preview(self.tool.preview())

    def _context(self) -> Context:
        if self.canvas_image is None and self.project is not None and self.current_image_id is not None:
            from annotator.project.images import load_rgb   # big image still decoding: wait for it
            self.canvas_image = load_rgb(self.project.image_path(self.current_image_id))
        if self.project is None or self.current_image_id is None or self.canvas_image is None:
            raise Refusal("no image shown: open a folder or project first")
        cats = [int(c.id) for c in self.project.categories()]
        cat = self.current_category_id if self.current_category_id in cats else (cats[0] if cats else None)
        rec = next((a for a in self._annotations if a.id == self.selected_id), None)
        return Context(self.current_image_id, self.canvas_image, cat, self.selected_id,
                       None if rec is None else rec.polygon, self.wand_tolerance)

    def box_model(self) -> BoxModel | None:
        """The model box-to-mask uses: the project's active model version when its architecture
        has a box-conditioned mask head (BlendMask, CenterMask), else None (GrabCut). Cheap (two
        SQLite reads): the checkpoint is only loaded when a box job runs, off the GUI thread."""
        project = self.project
        if project is None or self.box_engine == "grabcut":
            return None
        try:
            version = project.active_model_version()
            if version is None:
                return None
            mv = project.model_version(version)
        except AnnotatorError:
            return None
        if not is_box_model_arch(mv.arch):
            return None
        cat = self.current_category_id
        names = {int(c.id): c.name for c in project.categories()}
        if cat not in names:
            cat = next(iter(names), None)
        return BoxModel(self.box_prompters.loader(str(mv.checkpoint)), version=int(mv.id),
                        category_id=model_category_for(names.get(cat), mv.categories or []),
                        name=f"model v{int(mv.id)}")

    def _handle(self, edit) -> None:
        self._show_preview()
        if edit is None:
            return
        try:
            if edit.kind == "select":
                self.select_at(*edit.points[0])
                return
            ctx = self._context()
            if edit.kind == "box":
                ctx.box_model = self.box_model()
            try:
                result = command_for(edit, ctx, self.project)
            except NeedsCategory:   # the first shape of a project without classes: name it, keep it
                ctx.category_id = self._first_category()
                result = command_for(edit, ctx, self.project)
            if isinstance(result, Job):
                self._start_job(result)
            elif result is not None:
                self.execute(result)
        except AnnotatorError as exc:
            self.report_error(exc)

    def _first_category(self) -> int:
        """Ask for the name of the project's first class (in place, as labelme does) and add it.
        Cancelling or an empty name still keeps the shape, under the class "object"."""
        from annotator.ui import dialogs

        name = (dialogs.ask_class_name(self, FIRST_CLASS_PROMPT, "object") or "").strip()
        kept = not name
        cat = self.add_category(name or "object")
        if cat is None:  # a name the store refused: fall back so the shape is not lost
            cat = self.add_category("object") if self.project.categories() == [] else self.project.categories()[0]
        self.current_category_id = int(cat.id)
        self.status_label.setText(f"Class {cat.name!r} added" + (" (no name given: the shape is kept as 'object'; "
                                                                 "rename it in the class manager)" if kept else ""))
        return int(cat.id)

    def add_class_dialog(self) -> None:
        """Class > Add class... (Ctrl+Shift+K): a new class, which new instances then get."""
        from annotator.ui import dialogs

        if self.project is None:
            self.report_error(Refusal("no project open"))
            return
        name = (dialogs.ask_class_name(self, "Name of the new class:", "") or "").strip()
        if name:
            cat = self.add_category(name)
            if cat is not None:
                self.current_category_id = int(cat.id)
                self._sync_category_combo()
                self.status_label.setText(f"Class {cat.name!r} added; new instances get it")

    def _tool_press(self, x, y, button, mods) -> None:
        self._handle(self.tool.press(x, y, button, mods))

    def _tool_move(self, x, y) -> None:
        self.tool.move(x, y)
        self._show_preview()

    def _tool_release(self, x, y, button) -> None:
        self._handle(self.tool.release(x, y, button))

    def _tool_double(self, x, y) -> None:
        self._handle(self.tool.double_click(x, y))

    def _tool_key(self, key: str) -> None:
        self._handle(self.tool.key(key))

    def finish_gesture(self) -> None:
        """Enter: close the polygon / apply the refine strokes."""
        self._tool_key("enter")

    def cancel_gesture(self) -> bool:
        """Escape: drop the gesture in progress; True if there was one."""
        busy = self.tool.busy
        self.tool.key("escape")
        self._show_preview()
        return busy

    def _start_job(self, job: Job) -> None:
        self.pending_jobs += 1
        self.status_label.setText(f"{job.text}...")
        image_id = self.current_image_id

        def done(result) -> None:
            self.pending_jobs -= 1
            if self.project is None:
                return
            note = getattr(result, "note", None)
            if note:   # the model was not used: say why (a failure: a dialog the first time, then the status bar)
                if note in self._box_notes_shown or getattr(result, "routine", False):
                    self.status_label.setText(note)
                else:
                    self._box_notes_shown.add(note)
                    self.report_error(note)
            text = getattr(result, "text", None) or job.text   # e.g. GrabCut after a model fallback
            try:
                if not result_mask(result).any():
                    raise Refusal(f"{text}: no foreground found; try a tighter box or more strokes")
                self.execute(job.finish(result), image_id=image_id)
                if not note:
                    self.status_label.setText(f"{text}: done")
            except AnnotatorError as exc:
                self.report_error(exc)

        def failed(message: str) -> None:
            self.pending_jobs -= 1
            self.report_error(f"{job.text}: {message}")

        run_in_thread(job.compute, on_done=done, on_error=failed)

    # ---------------------------------------------------------------- commands / history
    def execute(self, cmd: commands.Command, *, image_id: int | None = None):
        """Run a command (one transaction, committed on return) and push it on the image's
        undo stack; refreshes the view when it is the shown image. Returns ``cmd.result``."""
        if self.project is None:
            raise Refusal("no project open")
        self.history.execute(self.project, cmd)
        self._after_edit(cmd.image_id if image_id is None else image_id)
        if isinstance(cmd.result, int) and cmd.image_id == self.current_image_id \
                and any(a.id == cmd.result for a in self._annotations):
            self.select_instance(cmd.result)
        return cmd.result

    def _after_edit(self, image_id: int) -> None:
        if image_id == self.current_image_id:
            self.reload_annotations()
        else:
            self.image_list.update_state(image_id)
        self._sync_vertex_polygon()
        self._update_undo_actions()
        self.annotations_changed.emit(image_id)

    def _update_undo_actions(self) -> None:
        img = self.current_image_id
        for name, can, text in (("undo", self.history.can_undo(img), self.history.undo_text(img)),
                                ("redo", self.history.can_redo(img), self.history.redo_text(img))):
            act = self.actions_by_name.get(name)
            if act is not None:
                act.setEnabled(can)
                act.setText(f"{name.capitalize()} {text}".strip())

    def undo(self) -> None:
        """Ctrl+Z: undo the shown image's last edit (unlimited, per image)."""
        self._history_step(self.history.undo)

    def redo(self) -> None:
        """Ctrl+Shift+Z / Ctrl+Y: redo the shown image's last undone edit."""
        self._history_step(self.history.redo)

    def _history_step(self, fn) -> None:
        if self.project is None or self.current_image_id is None:
            return
        try:
            cmd = fn(self.project, self.current_image_id)
        except AnnotatorError as exc:
            self.report_error(exc)
            return
        if cmd is not None:
            self.status_label.setText(cmd.text)
            self._after_edit(self.current_image_id)

    # ---------------------------------------------------------------- mask operations
    def _pair(self, what: str) -> tuple[int, int]:
        sel = self._require_selection()
        other = self.previous_selected_id
        if other is None or other == sel or other not in {a.id for a in self._annotations}:
            raise Refusal(f"{what}: select the other instance first, then this one")
        return other, sel

    def _run(self, build) -> None:
        try:
            self.execute(build())
        except AnnotatorError as exc:
            self.report_error(exc)

    def merge_instances(self) -> None:
        """M: merge the previously selected instance into the selected one."""
        self._run(lambda: commands.merge(self.current_image_id, *reversed(self._pair("merge"))))

    def subtract_instances(self) -> None:
        """Shift+M: subtract the previously selected instance from the selected one."""
        self._run(lambda: commands.subtract(self.current_image_id, *reversed(self._pair("subtract"))))

    def split_instance(self) -> None:
        """Y: split the selected multi-part instance into one instance per part."""
        self._run(lambda: commands.split(self.current_image_id, self._require_selection()))

    def fill_instance_holes(self) -> None:
        """O: fill the holes of the selected instance."""
        self._run(lambda: commands.fill_holes(self.current_image_id, self._require_selection()))

    def bring_to_front(self) -> None:
        self._run(lambda: commands.z_order(self.current_image_id, self._require_selection(), front=True))

    def send_to_back(self) -> None:
        self._run(lambda: commands.z_order(self.current_image_id, self._require_selection(), front=False))
