"""Per-user settings of the app (``QSettings`` in an INI file): where each project was left.

The file is ``$XDG_CONFIG_HOME/annotator/annotator.ini`` (default ``~/.config/annotator``), read
when asked, so tests and several users on one machine each get their own. Per project (keyed by
the sha1 of its absolute root): the image shown last and the canvas view (fitted, or scale and
centre), so the app reopens where the person stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from PySide6.QtCore import QSettings


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/annotator`` (default ``~/.config/annotator``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "annotator"


def _settings() -> QSettings:
    return QSettings(str(config_dir() / "annotator.ini"), QSettings.IniFormat)


def _key(root) -> str:
    return "projects/" + hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()


def save_view(root, image_id: int, view: dict) -> None:
    """Remember the image and canvas view (:meth:`Canvas.view_state`) of project ``root``."""
    s = _settings()
    s.setValue(_key(root), json.dumps({"image_id": int(image_id), "view": view, "root": str(root)}))
    s.sync()


def load_view(root) -> dict | None:
    """``{"image_id", "view"}`` saved for project ``root``, or None (never saved, unreadable)."""
    raw = _settings().value(_key(root))
    try:
        state = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return state if isinstance(state, dict) and "image_id" in state else None
