"""Canary for the Qt binding's reference counting of ``None``.

PySide6 / shiboken6 6.12.0 on Python 3.11 decrements ``None``'s reference count once on every
void Qt method called from Python; the app then aborts with ``Fatal Python error: none_dealloc``
after a few thousand calls (e.g. opening a 2,000-image folder). pyproject.toml caps the binding
below 6.12 on Python < 3.12; this test makes 100,000 void Qt calls in a child process (an abort
must not take pytest down with it) and fails if ``sys.getrefcount(None)`` fell, so a future
release with the same fault fails CI instead of a user's session. From Python 3.12 on, None is
immortal (PEP 683) and its count is meaningless, so the test does not apply there.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtWidgets import QApplication, QListWidget, QListWidgetItem
app = QApplication([])
widget = QListWidget()
item = QListWidgetItem()
widget.addItem(item)
before = sys.getrefcount(None)
for k in range(25_000):  # 4 void calls each: 100,000 in all
    item.setText("x")
    item.setToolTip("y")
    widget.setUpdatesEnabled(True)
    widget.setCurrentRow(0)
after = sys.getrefcount(None)
print(before, after)
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 (PEP 683)")
def test_void_qt_calls_do_not_drop_references_to_none():
    import PySide6

    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"PySide6 {PySide6.__version__}: the child aborted after void Qt calls "
                                  f"(exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    before, after = map(int, proc.stdout.split())
    assert after >= before, (f"PySide6 {PySide6.__version__}: sys.getrefcount(None) fell from {before} to "
                             f"{after} over 100,000 void Qt calls: this binding release drops references "
                             "to None; exclude it in pyproject.toml")
