"""annotator.desktop: the system packages a Linux desktop needs, named in one line when missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from annotator import desktop

REPO = Path(__file__).resolve().parents[2]


def test_readme_lists_exactly_the_packages_the_script_installs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("sudo apt-get install libegl1"):]
    block = block[:block.index("```")]
    listed = re.findall(r"lib[\w.+-]+", block.replace("\\\n", " "))
    assert sorted(listed) == sorted(desktop.XCB_PACKAGES)
    script = (REPO / "packaging" / "install_system_packages.sh").read_text()
    assert "XCB_PACKAGES" in script and "ldd" in script and "xdotool search --sync" in script


def test_missing_libraries_are_named_with_their_packages(monkeypatch):
    out = ("\tlibxcb-icccm.so.4 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x0)\n"
           "\tlibxcb-keysyms.so.1 => not found\n\tlibmystery.so.9 => not found\n")

    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(desktop.subprocess, "run", fake_run)
    monkeypatch.setattr(desktop.shutil, "which", lambda name: "/usr/bin/ldd")
    assert desktop.missing_libraries() == [("libmystery.so.9", "?"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
                                           ("libxcb-keysyms.so.1", "libxcb-keysyms1")]


def test_probe_reports_a_window_or_one_line_why_not(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert desktop.probe_platform() == (True, "offscreen")
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    monkeypatch.setattr(desktop, "missing_libraries", lambda: [])
    ok, message = desktop.probe_platform()
    assert not ok and "\n" not in message and "no-such-platform" in message
    proc = subprocess.run([sys.executable, "-m", "annotator.desktop"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "no-such-platform",
                               "HOME": str(REPO)}, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
