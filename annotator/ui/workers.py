"""Background work, so the GUI thread never runs inference or scans folders.

- :class:`PrelabelController` owns one long-lived ``QThread`` with a :class:`PrelabelWorker`.
  Each job opens its **own** ``Project`` on the project path (SQLite connections are per
  thread), runs :func:`annotator.jobs.prelabel.prelabel` (the CLI's pipeline: DataLoader
  reader processes, batched writes) and reports through signals; :class:`RecordingProject`
  turns each image's pre-label run into one undo step. The ``Predictor`` is loaded once per
  checkpoint file and reused across images and jobs.
- :func:`run_in_thread` runs a plain function on the global ``QThreadPool`` (folder -> project).
- :class:`FileCheckController` hashes the images registered without a hash and finds files
  changed or gone since, on its own thread with its own connection, a chunk at a time.
- :class:`BoxPrompterCache` loads the box-to-mask model (``segcore.prompt.BoxPrompter``) lazily,
  on whichever pool thread first needs it, and keeps it until the checkpoint changes.

Errors never escape: they are reported as ``failed(message)`` (one line for ``AnnotatorError``
and checkpoint errors; other exceptions are also printed with their traceback to stderr).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from annotator.errors import AnnotatorError


@dataclass(frozen=True)
class PrelabelJob:
    """What to pre-label: ``image_ids`` ``None`` = all (subject to ``only_unreviewed``)."""

    project_path: str
    checkpoint: str
    image_ids: tuple[int, ...] | None = None
    score_threshold: float = 0.05
    only_unreviewed: bool = True
    model_version: int | None = None


def resolve_model(project, choice: int | str | None) -> tuple[str, int | None] | None:
    """``choice`` (a model version id, a checkpoint path or ``None``) -> ``(checkpoint path,
    model_version id | None)``. ``None`` picks the project's active model version (a version
    that did not earn it is only used when chosen), or returns ``None`` if there is none. Raises
    ``AnnotatorError`` for an unknown version or missing file.
    """
    if choice is None:
        choice = project.active_model_version()
        if choice is None:
            return None
    if isinstance(choice, int):
        version = project.model_version(choice)  # AnnotatorError when unknown
        path = Path(str(version.checkpoint))
        if not path.is_absolute():
            path = Path(project.root) / path
        return str(path), int(version.id)
    path = Path(choice)
    if not path.is_file():
        raise AnnotatorError(f"{path}: checkpoint file not found")
    return str(path), None


def prepare_project(path: str) -> tuple[str, list[str]]:
    """Background: make a folder into a project (reads its images' headers), close it again.

    The GUI thread then opens it quickly with its own connection. Returns ``(path, skipped)``:
    ``"<file>: <reason>"`` of the files left out because they could not be read.
    """
    from annotator.project import Project

    project = Project.open(Path(path), create_if_folder=True)
    project.close()
    return path, [s.line() for s in project.scan.skipped]


class FileCheckController(QObject):
    """Hashes a project's unhashed images and detects changed / vanished files in the background.

    :meth:`start` runs on a plain daemon thread (not the 2-4 thread global pool, which the box
    tool and image decoding need) with its own ``Project``: first the images without a hash,
    :data:`CHUNK` at a time (one short write each), then a ``stat`` of every hashed image,
    re-hashing those whose size or mtime changed. ``finished(FileCheck)`` reports what changed;
    :meth:`stop` ends it after the current chunk.
    """

    CHUNK = 256
    finished = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, db_path: str) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(db_path, self._stop), daemon=True,
                                        name="file-check")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, db_path: str, stop: threading.Event) -> None:
        from annotator.project import Project
        from annotator.project._images import FileCheck

        total = FileCheck()
        try:
            with Project.open(Path(db_path), create_if_folder=False) as project:
                last = 0
                while not stop.is_set():
                    ids = project.unhashed_image_ids(limit=self.CHUNK, after=last)
                    if not ids:
                        break
                    last = ids[-1]
                    part = project.hash_images(ids)
                    total.hashed += part.hashed
                    total.unreadable.update(part.unreadable)
                ids = project.image_ids()
                for k in range(0, len(ids), self.CHUNK * 8):
                    if stop.is_set():
                        return
                    part = project.hash_images(ids[k:k + self.CHUNK * 8])
                    total.changed += part.changed
                    total.unreadable.update(part.unreadable)
        except AnnotatorError as exc:  # project gone or locked: nothing to report to the person
            print(f"file check: {exc}", file=sys.stderr)
            return
        if not stop.is_set():
            self.finished.emit(total)


class RecordingProject:
    """Wraps the worker's ``Project`` so each ``replace_predictions`` (one pre-label run of one
    image) reports the image's annotations before and after it through ``record(image_id,
    before, after, done_before, done_after)``; the GUI pushes that as one undoable command.

    The pre-label writer commits several images in one :meth:`transaction`: their records are
    held until that transaction commits (and dropped if it rolls back), so the GUI never gets
    an undo step for rows that are not in the project, and each image stays its own step.
    """

    def __init__(self, project, record: Callable):
        self._project, self._record = project, record
        self._held: list[tuple] | None = None   # records of the open outermost transaction

    def __getattr__(self, name):
        return getattr(self._project, name)

    @contextmanager
    def transaction(self):
        """``Project.transaction`` that reports the records made inside it once it commits."""
        if self._held is not None:              # nested: the outermost one reports
            with self._project.transaction():
                yield self
            return
        self._held = []
        try:
            with self._project.transaction():
                yield self
            held = self._held
        finally:
            self._held = None
        for args in held:
            self._record(*args)

    def replace_predictions(self, image_id, predictions, model_version):
        p = self._project
        with self.transaction():   # snapshot, replace and snapshot atomically
            before, done_b = p.annotations(image_id), p.image(image_id).done
            n = p.replace_predictions(image_id, predictions, model_version)
            after, done_a = p.annotations(image_id), p.image(image_id).done
            self._held.append((int(image_id), before, after, done_b, done_a))
        return n


class BoxPrompterCache:
    """The ``segcore.prompt.BoxPrompter`` of the current box-to-mask model, loaded lazily.

    :meth:`loader` returns a zero-argument callable for
    :class:`annotator.tools.interaction.BoxModel`; calling it (in a job's ``compute``, off the
    GUI thread) loads the checkpoint on first use (``device``, default ``"auto"``) and reuses it
    while the file (resolved path, modification time) is the same; another checkpoint (the
    active version changed) replaces it. A failed load is remembered for that file and raised
    again without re-reading it, so a broken checkpoint costs one attempt. Thread-safe.
    """

    def __init__(self, device: str = "auto"):
        self.device = device
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value = None          # BoxPrompter, or the exception of a failed load
        self.loads = 0              # load attempts (for tests / diagnostics)

    @staticmethod
    def _key_of(checkpoint: str) -> tuple:
        p = Path(checkpoint)
        try:
            return str(p.resolve()), p.stat().st_mtime_ns
        except OSError:
            return str(p), None

    def get(self, checkpoint: str):
        """The prompter for ``checkpoint`` (loading it if needed). Raises the load error
        (``CheckpointError``, ``PromptNotSupported``, ...)."""
        key = self._key_of(checkpoint)
        with self._lock:
            if key != self._key:
                self._key, self._value = key, None
                self.loads += 1
                try:
                    from segcore.prompt import BoxPrompter

                    self._value = BoxPrompter.from_checkpoint(checkpoint, device=self.device)
                except Exception as exc:  # noqa: BLE001 - kept and re-raised for every box
                    self._value = exc
            if isinstance(self._value, BaseException):
                raise self._value
            return self._value

    def loader(self, checkpoint: str) -> Callable[[], object]:
        """A zero-argument callable returning :meth:`get` of ``checkpoint``."""
        return lambda: self.get(checkpoint)

    def clear(self) -> None:
        """Forget the loaded model (the next box loads it again)."""
        with self._lock:
            self._key, self._value = None, None


def device_description() -> str:
    """``"CUDA: <GPU name>"`` when a CUDA device is available (what ``device="auto"`` picks),
    else ``"CPU"``. Imports torch: call it off the GUI thread (:func:`run_in_thread`)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"CUDA: {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a broken torch install still leaves the app usable
        return "CPU (torch unavailable)"
    return "CPU"


def _message(exc: BaseException) -> str:
    if isinstance(exc, (AnnotatorError, ValueError, OSError)):
        return str(exc) or type(exc).__name__
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}"


class PrelabelWorker(QObject):
    """Lives in the controller's thread; runs one job at a time."""

    progress = Signal(int, int)      # done, total
    finished = Signal(object)        # PrelabelSummary
    failed = Signal(str)             # one-line message
    recorded = Signal(object)        # (image_id, before, after, done_before, done_after)
    precision = Signal(str)          # the predictor's precision line, once the model is loaded

    def __init__(self, stop_event: threading.Event):
        super().__init__()
        self._stop = stop_event
        self._predictor = None
        self._predictor_key: tuple | None = None

    def predictor_for(self, checkpoint: str):
        """Load (or reuse) the Predictor for a checkpoint file; device ``auto``."""
        from segcore.predictor import Predictor

        p = Path(checkpoint)
        key = (str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0)
        if self._predictor is None or key != self._predictor_key:
            self._predictor = Predictor.from_checkpoint(str(p), device="auto")
            self._predictor_key = key
        return self._predictor

    @Slot(object)
    def run(self, job: PrelabelJob) -> None:
        from annotator.jobs.prelabel import prelabel, prepare_workers
        from annotator.project import Project

        project = None
        try:
            prepare_workers(None if job.image_ids is None else len(job.image_ids))  # starts while the model loads
            predictor = self.predictor_for(job.checkpoint)
            self.precision.emit(str(getattr(predictor, "precision_reason", "")))
            project = Project.open(Path(job.project_path), create_if_folder=False)
            summary = prelabel(
                RecordingProject(project, lambda *args: self.recorded.emit(args)), predictor,
                None if job.image_ids is None else list(job.image_ids),
                score_threshold=job.score_threshold, only_unreviewed=job.only_unreviewed,
                model_version=job.model_version,
                progress=lambda done, total: self.progress.emit(int(done), int(total)),
                should_stop=self._stop.is_set,
            )
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never crashes it
            self.failed.emit(_message(exc))
        else:
            self.finished.emit(summary)
        finally:
            if project is not None:
                try:
                    project.close()
                except Exception:  # noqa: BLE001
                    pass


class PrelabelController(QObject):
    """Starts / cancels pre-label jobs on a background thread. One job at a time."""

    started = Signal()
    progress = Signal(int, int)
    finished = Signal(object)        # PrelabelSummary; also after a cancel
    failed = Signal(str)
    recorded = Signal(object)        # one image's pre-label change, see RecordingProject
    precision = Signal(str)          # "precision: bf16 (CPU has native bf16; ...)" once per job
    _request = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._stop = threading.Event()
        self._busy = False
        self._thread = QThread()
        self._thread.setObjectName("prelabel")
        self._worker = PrelabelWorker(self._stop)
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.recorded.connect(self.recorded)
        self._worker.precision.connect(self.precision)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:  # never leave a running QThread behind at exit
            app.aboutToQuit.connect(self.shutdown)

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def start(self, job: PrelabelJob) -> bool:
        """Queue ``job`` on the worker thread; ``False`` if one is already running."""
        if self._busy:
            return False
        self._busy = True
        self._stop.clear()
        self.started.emit()
        self._request.emit(job)
        return True

    def cancel(self) -> None:
        """Ask the running job to stop after the current batch (one image on a CPU)."""
        if self._busy:
            self._stop.set()

    def _on_finished(self, summary) -> None:
        self._busy = False
        self.finished.emit(summary)

    def _on_failed(self, message: str) -> None:
        self._busy = False
        self.failed.emit(message)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel, stop the thread and wait for it (call when the window closes)."""
        self._stop.set()
        self._thread.quit()
        self._thread.wait(timeout_ms)


class _TaskSignals(QObject):
    """Lives on the GUI thread: the pool thread emits, the bound slots run on the GUI thread."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, on_done: Callable, on_error: Callable[[str], None]):
        super().__init__()
        self._on_done, self._on_error = on_done, on_error
        self.done.connect(self._deliver_done)
        self.failed.connect(self._deliver_failed)

    @Slot(object)
    def _deliver_done(self, result) -> None:
        _live_tasks.discard(self)
        self._on_done(result)

    @Slot(str)
    def _deliver_failed(self, message: str) -> None:
        _live_tasks.discard(self)
        self._on_error(message)


class _Task(QRunnable):
    def __init__(self, fn: Callable, args: Sequence, signals: _TaskSignals):
        super().__init__()
        self._fn, self._args, self.signals = fn, tuple(args), signals

    def run(self) -> None:
        try:
            result = self._fn(*self._args)
        except Exception as exc:  # noqa: BLE001
            emit, value = self.signals.failed.emit, _message(exc)
        else:
            emit, value = self.signals.done.emit, result
        try:
            emit(value)
        except RuntimeError:  # the app is shutting down and the receiver is gone: nothing to deliver
            pass


_live_tasks: set[_TaskSignals] = set()


def run_in_thread(fn: Callable, *args, on_done: Callable, on_error: Callable[[str], None]) -> _TaskSignals:
    """Run ``fn(*args)`` on the global thread pool; ``on_done(result)`` / ``on_error(message)``
    are called on the GUI thread. Returns the signals object (``done``, ``failed``)."""
    signals = _TaskSignals(on_done, on_error)
    _live_tasks.add(signals)
    QThreadPool.globalInstance().start(_Task(fn, args, signals))
    return signals
