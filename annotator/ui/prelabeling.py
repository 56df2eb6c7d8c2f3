"""Model choice and background pre-labelling of the main window (a mixin of
:class:`~annotator.ui.main_window.MainWindow`). The model runs in
:class:`~annotator.ui.workers.PrelabelController`'s thread, never on the GUI thread; each
image's pre-label run comes back as a recorded change and is pushed on that image's undo
stack, so a whole run of an image is one undoable step.
"""

from __future__ import annotations

from pathlib import Path

from annotator.errors import AnnotatorError, Refusal
from annotator.tools.commands import Command
from annotator.ui import dialogs
from annotator.ui.dialogs import user_action
from annotator.ui.workers import PrelabelJob, resolve_model


class PrelabelMixin:
    """Needs ``prelabel_jobs``, ``project``, ``history``, ``status_label``, ``report_error``."""

    def _on_prelabel_recorded(self, args) -> None:
        image_id, before, after, done_b, done_a = args
        cmd = Command.recorded(image_id, "Pre-label", before, after, done_b, done_a)
        if self.history.push_applied(cmd) is not None:
            self._update_undo_actions()

    # ---------------------------------------------------------------- model / pre-label
    @user_action
    def set_model(self, choice: int | str) -> None:
        """Use a registered model version (int id) or a segcore checkpoint file (path)."""
        if self.project is not None:
            resolve_model(self.project, choice)  # validates now, raises AnnotatorError
        self.model_choice = choice
        text = f"Model: {choice if isinstance(choice, str) else f'version {choice}'}"
        self.status_label.setText(text)
        self.model_label.setText(text if isinstance(choice, int) else f"Model: {Path(choice).name}")

    def choose_model_dialog(self) -> None:
        versions = self.project.model_versions() if self.project is not None else []
        start = str(self.project.root) if self.project is not None else ""
        choice = dialogs.ask_model(self, versions, start)
        if choice is not None:
            self.set_model(choice)

    @user_action
    def prelabel_current(self) -> bool:
        """Pre-label the shown image (replaces its unreviewed predictions); falsy if not started."""
        if self.current_image_id is None:
            raise Refusal("no image shown: open a folder or project first")
        return self.prelabel([self.current_image_id], only_unreviewed=False)

    def prelabel_unreviewed(self) -> bool:
        """Pre-label every image that is not reviewed."""
        return self.prelabel(None, only_unreviewed=True)

    @user_action
    def prelabel(self, image_ids: list[int] | None, *, only_unreviewed: bool = True) -> bool:
        """Start a background pre-label job; ``False`` if not started (busy, no model, error).

        Without a chosen model: the project's active model version, else ask for a checkpoint.
        """
        if self.project is None:
            raise Refusal("no project open: open a folder or project first")
        if self.prelabel_jobs.busy:
            raise Refusal("a pre-label job is already running (Esc cancels it)")
        if self.project.read_only:
            raise AnnotatorError(f"{self.project.db_path}: project is open read-only: pre-label is disabled")
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
        """Ask the running pre-label job to stop after the current batch (one image on a CPU)."""
        if self.prelabel_jobs.busy:
            self.prelabel_jobs.cancel()
            self.status_label.setText("Cancelling...")

    def _on_prelabel_precision(self, line: str) -> None:
        """The predictor's precision line (e.g. ``precision: bf16 (CPU has native bf16; ...)``),
        shown with the progress and the summary so the user sees what the hardware chose."""
        short = line.split(";")[0]  # the app has no --precision flag: drop the override hint
        self.prelabel_precision = short + ")" if ";" in line else short

    def _precision_suffix(self) -> str:
        line = getattr(self, "prelabel_precision", "")
        return f" - {line}" if line else ""

    def _on_prelabel_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        self.status_label.setText(f"Pre-labelling {done}/{total}{self._precision_suffix()}")

    def _on_prelabel_finished(self, summary) -> None:
        self._set_busy(False)
        n, k = getattr(summary, "images", "?"), getattr(summary, "instances", "?")
        stopped = " (cancelled)" if getattr(summary, "stopped", False) else ""
        bad = tuple(getattr(summary, "unreadable", ()))
        names = ", ".join(line.split(": ")[0] for line in bad[:3]) + ("..." if len(bad) > 3 else "")
        unreadable = f"; {len(bad)} unreadable image(s) skipped, marked in the Images list: {names}" if bad else ""
        self.status_label.setText(f"Pre-labelled {n} image(s), {k} instance(s){stopped}{unreadable}"
                                  f"{self._precision_suffix()}")
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
