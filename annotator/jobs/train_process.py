"""Training in its own process (not a thread of the GUI): start, stream progress, cancel, survive crashes.

:class:`TrainProcess` starts :func:`annotator.jobs.train.run_train_job` in a child process made
with the multiprocessing ``"spawn"`` context (a fresh interpreter: no Qt, no CUDA state or locks
inherited from the parent). The child opens the project with its own SQLite connection (WAL:
the GUI keeps reading and writing meanwhile) and sends plain dicts through a
``multiprocessing.Queue``:

* ``{"type": "log", "message": str}``
* ``{"type": "progress", "iteration", "iterations", "losses": {...}, "lr", "eta_s", "nonfinite",
  "skipped_nonfinite"[, "val": {"iteration", "segm_AP", "bbox_AP", "best_segm_AP",
  "best_iteration"}]}`` (every iteration; the engine's dict plus the validation result)
* ``{"type": "done", "model_version": int, "checkpoint": str, "iterations_done": int,
  "stopped": bool, "early_stopped": bool, "metrics": dict | None, "init_source": str, ...}``
* ``{"type": "error", "message": str, "traceback": str}``

:meth:`TrainProcess.cancel` sets a ``multiprocessing.Event``; the child stops after the current
iteration and registers its best checkpoint (``done`` with ``stopped=True``). A child that dies
without ``done`` or ``error`` (killed, out of memory, segfault) is reported as an ``error``
message made by the parent from its exit code. The project is never left half-written: the
only project write of a run is one transaction (split assignment before, registration after).
A killed run is continued with ``TrainProcess(project, resume=RUN_FOLDER)``.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import signal
import traceback
from pathlib import Path
from typing import Optional

_CTX = mp.get_context("spawn")


def _child_main(project_path: str, kwargs: dict, q, stop_event, num_threads: Optional[int]) -> None:
    """Body of the child process (module level: picklable for ``spawn``)."""
    try:
        import torch

        if num_threads:
            torch.set_num_threads(int(num_threads))
        from annotator.jobs.train import run_train_job
        from annotator.project import Project

        def progress(info: dict) -> None:
            q.put(dict(info, type="progress"))

        def log(message: str) -> None:
            q.put({"type": "log", "message": str(message)})

        project = Project.open(Path(project_path), create_if_folder=False)
        try:
            res = run_train_job(project, progress=progress, should_stop=stop_event.is_set, log=log, **kwargs)
        finally:
            project.close()
        q.put({"type": "done", "model_version": res.model_version, "checkpoint": str(res.checkpoint),
               "iterations_done": res.iterations_done, "stopped": res.stopped, "early_stopped": res.early_stopped,
               "metrics": res.metrics, "init_source": res.init_source, "parent": res.parent,
               "skipped_nonfinite": res.skipped_nonfinite, "final_losses": res.final_losses,
               "notes": list(res.notes), "activated": res.activated, "activation": res.activation,
               "skipped_unreadable": list(res.skipped_unreadable)})
    except BaseException as exc:  # report everything, including AnnotatorError and MemoryError
        q.put({"type": "error", "message": f"{exc.__class__.__name__}: {exc}", "traceback": traceback.format_exc()})
    finally:
        q.close()
        q.join_thread()


class TrainProcess:
    """One training run in a spawned child process.

    Args:
        project_path: the project folder (or its ``annotator.sqlite``); the child opens it.
        num_threads: ``torch.set_num_threads`` in the child (None = torch's default).
        **train_kwargs: keyword arguments of :func:`annotator.jobs.train.run_train_job`
            (``arch``, ``iterations``, ``device``, ``resume`` ...); ``progress``,
            ``should_stop`` and ``log`` are provided by this class.

    Use: ``start()``, then ``poll()`` regularly (e.g. from a Qt timer) for new messages;
    ``state`` is ``"idle" | "running" | "finished" | "cancelled" | "failed"``; ``result``
    (the ``done`` dict) or ``error`` (the message) once over.
    """

    def __init__(self, project_path: Path | str, *, num_threads: Optional[int] = None, **train_kwargs):
        self.project_path = str(project_path)
        self.train_kwargs = train_kwargs
        self.num_threads = num_threads
        self._queue = _CTX.Queue()
        self._stop = _CTX.Event()
        self._proc: Optional[mp.process.BaseProcess] = None
        self.state = "idle"
        self.result: Optional[dict] = None
        self.error: Optional[str] = None
        self.history: list[dict] = []

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child process (returns at once)."""
        if self._proc is not None:
            raise RuntimeError("TrainProcess.start: already started")
        self._proc = _CTX.Process(target=_child_main, name="annotator-train", daemon=True,
                                  args=(self.project_path, self.train_kwargs, self._queue, self._stop,
                                        self.num_threads))
        self._proc.start()
        self.state = "running"

    def cancel(self) -> None:
        """Ask the run to stop after the current iteration; its best checkpoint is registered."""
        self._stop.set()

    def kill(self) -> None:
        """Kill the child at once (SIGKILL; nothing is registered; resume from its run folder)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Messages that arrived since the last call (waits up to ``timeout`` s for the first).

        Updates ``state`` / ``result`` / ``error``; a child gone without a final message
        yields one ``{"type": "error"}`` made here (with its exit code or signal)."""
        out: list[dict] = []
        block = timeout > 0
        while True:
            try:
                msg = self._queue.get(block, timeout) if block else self._queue.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                break
            block = False
            out.append(msg)
            self._handle(msg)
        if self.state == "running" and self._proc is not None and not self._proc.is_alive():
            # drain what the child flushed right before exiting
            while True:
                try:
                    msg = self._queue.get(True, 0.2)
                except (queue_mod.Empty, EOFError, OSError):
                    break
                out.append(msg)
                self._handle(msg)
            if self.state == "running":
                code = self._proc.exitcode
                why = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit code {code}")
                msg = {"type": "error", "message": f"the training process ended unexpectedly ({why}); "
                       "the project and earlier model versions are unchanged; resume from its run folder",
                       "traceback": ""}
                out.append(msg)
                self._handle(msg)
        return out

    def _handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "progress":
            self.history.append(msg)
        elif kind == "done":
            self.result = msg
            self.state = "cancelled" if msg.get("stopped") else "finished"
        elif kind == "error":
            self.error = msg.get("message", "training failed")
            self.state = "failed"

    def running(self) -> bool:
        return self.state == "running"

    def wait(self, timeout: Optional[float] = None, *, poll_interval: float = 0.2) -> str:
        """Poll until the run is over (or ``timeout`` s); returns ``state``."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.state == "running" and (end is None or time.monotonic() < end):
            self.poll(poll_interval)
        if self.state != "running" and self._proc is not None:
            self._proc.join(5)
        return self.state
