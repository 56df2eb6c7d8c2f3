"""The ``.desktop`` entry (freedesktop Desktop Entry keys) and its per-user install script."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "packaging" / "annotator.desktop"


def _entry(path: Path = ENTRY) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


def test_desktop_entry_keys():
    e = _entry()
    assert e["Type"] == "Application" and e["Name"] == "Annotator" and e["Comment"]
    assert e["Exec"].split()[:2] == ["annotator", "gui"]
    assert e["Icon"] == "annotator" and e["Terminal"] == "false"
    assert {"Graphics", "Science"} <= set(filter(None, e["Categories"].split(";")))
    assert e["Categories"].endswith(";") and e["Keywords"].endswith(";")
    icons = REPO / "resources" / "icons"
    assert (icons / "annotator.svg").is_file() and (icons / "annotator-256.png").is_file()


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-validate not installed")
def test_desktop_file_validate():
    res = subprocess.run(["desktop-file-validate", str(ENTRY)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "error" not in res.stdout.lower(), res.stdout


def test_install_script_uses_xdg_paths(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "EXEC": "/opt/annotator/annotator"}
    script = REPO / "packaging" / "install_desktop_entry.sh"
    subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    installed = tmp_path / "applications" / "annotator.desktop"
    e = _entry(installed)
    assert e["Exec"] == "/opt/annotator/annotator gui %f" and e["TryExec"] == "/opt/annotator/annotator"
    for n in (48, 128, 256):
        assert (tmp_path / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "annotator.png").is_file()
    assert (tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "annotator.svg").is_file()
    subprocess.run(["bash", str(script), "--uninstall"], check=True, env=env, capture_output=True)
    assert not installed.exists()
