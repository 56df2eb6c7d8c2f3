"""App sessions on a project folder: one writer at a time, and unclean-shutdown detection.

The desktop app holds ``<project>/annotator.session`` open with an exclusive, non-blocking OS
lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) for as long as the project is
open, and deletes the file on a clean close. So, on open:

- the lock is held by someone else -> another app instance has the project: open it read-only
  and tell the user (never two writers);
- the file is there but nobody holds its lock -> the last session did not close cleanly
  (crash, kill -9, power loss): tell the user; every committed edit is in SQLite anyway.

The OS drops the lock when a process dies, so a killed instance never blocks the next one.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_FILE = "annotator.session"


@dataclass(frozen=True)
class SessionStatus:
    """Result of :meth:`SessionLock.acquire`: ``locked`` (another instance holds the project),
    ``unclean`` (the previous session ended without a clean close), ``info`` (what the
    session file says: pid, host, start time; may be empty)."""

    locked: bool
    unclean: bool
    info: dict


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {"raw": "unreadable"}


class SessionLock:
    """The session of one app instance on the project folder ``root``."""

    def __init__(self, root: Path):
        self.path = Path(root) / SESSION_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> SessionStatus:
        """Take the project (non-blocking). On ``locked`` nothing is held; otherwise the session
        file now names this process. Raises ``OSError`` when the folder is not writable."""
        for _ in range(3):   # the file may be deleted by a closing instance between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                info = _read(fd)
                os.close(fd)
                return SessionStatus(True, False, info)
            try:
                same = os.path.exists(self.path) and os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = _read(fd)
            unclean = bool(info)
            mine = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(mine).encode("utf-8"))
            os.fsync(fd)
            self._fd = fd
            return SessionStatus(False, unclean, info)
        return SessionStatus(True, False, {})  # pragma: no cover - lost the race three times

    def release(self) -> None:
        """Clean close: delete the session file, then drop the lock. Idempotent."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)   # closing the descriptor releases the lock
            self._fd = None


def describe(info: dict) -> str:
    """``"pid 123 on host since 2026-01-01 10:00:00"`` from a session file's contents."""
    if not info or "pid" not in info:
        return "another instance"
    return f"pid {info.get('pid')} on {info.get('host', '?')} since {info.get('started', '?')}"
