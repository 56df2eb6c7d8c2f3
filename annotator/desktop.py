"""Can the app open a real window here? Checks Qt's platform plugin without importing Qt.

On Linux, Qt's ``xcb`` plugin (X11, also XWayland) loads system libraries that PySide6's wheel
does not carry (``libxcb-icccm4``, ``libxcb-keysyms1``, ``libxcb-cursor0`` ...); when one is
missing, Qt prints a long message naming only some of them and the app aborts. Here:

- :data:`XCB_PACKAGES` -- the Debian / Ubuntu packages whose libraries Qt's xcb plugin and Qt's
  GUI libraries load (read off ``ldd`` of PySide6's ``libqxcb.so``, ``libQt6XcbQpa``,
  ``libQt6Gui`` on Debian 12; ``packaging/install_system_packages.sh`` installs exactly these);
- :func:`missing_libraries` -- ``ldd`` of the plugin: the libraries not found, and the packages
  that provide them;
- :func:`probe_platform` -- start a child ``QGuiApplication`` with the platform the user would
  get (``QT_QPA_PLATFORM`` as set, else Qt's choice for ``DISPLAY`` / ``WAYLAND_DISPLAY``) and
  report Qt's error in one line if it cannot.

``python -m annotator.desktop`` prints one line and exits 0 when a window can open (or no
display is set: nothing to check), 1 otherwise; ``make run`` calls it first.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Debian / Ubuntu packages for Qt's xcb platform plugin and Qt's GUI libraries.
XCB_PACKAGES = (
    "libegl1", "libgl1", "libfontconfig1", "libfreetype6", "libglib2.0-0", "libdbus-1-3",
    "libx11-6", "libx11-xcb1", "libxkbcommon0", "libxkbcommon-x11-0", "libxcb1", "libxcb-cursor0",
    "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0", "libxcb-render0",
    "libxcb-render-util0", "libxcb-shape0", "libxcb-shm0", "libxcb-sync1", "libxcb-util1",
    "libxcb-xfixes0", "libxcb-xkb1",
)

#: shared library soname -> Debian package (for naming what ``ldd`` does not find).
_PACKAGE_OF = {
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6", "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0", "libdbus-1.so.3": "libdbus-1-3", "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1", "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxcb.so.1": "libxcb1", "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
}

_PROBE = ("import sys\nfrom PySide6.QtGui import QGuiApplication\napp = QGuiApplication(sys.argv[:1])\n"
          "print(app.platformName())\n")


def qt_root() -> Path | None:
    """PySide6's ``Qt`` folder (plugins, libs) from the installed package, without importing it."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "Qt"


def missing_libraries() -> list[tuple[str, str]]:
    """``[(soname, Debian package or "?"), ...]`` that ``ldd`` cannot find for Qt's xcb plugin
    and Qt's xcb / GUI libraries; empty when all are found, when not on Linux or without ``ldd``."""
    root = qt_root()
    if root is None or not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        return []
    files = [root / "plugins" / "platforms" / "libqxcb.so", *sorted((root / "lib").glob("libQt6XcbQpa.so*"))[:1],
             *sorted((root / "lib").glob("libQt6Gui.so*"))[:1]]
    missing: dict[str, str] = {}
    for f in files:
        if not f.is_file():
            continue
        out = subprocess.run(["ldd", str(f)], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if "=> not found" in line:
                name = line.split("=>")[0].strip()
                missing[name] = _PACKAGE_OF.get(name, "?")
    return sorted(missing.items())


def display_set() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def probe_platform(timeout: float = 60.0) -> tuple[bool, str]:
    """Start a ``QGuiApplication`` in a child process with the user's platform.

    Returns:
        ``(True, platform name)`` when it starts; ``(False, one-line reason)`` when Qt cannot
        load a platform plugin (with the missing libraries and their packages when ``ldd`` names
        them).
    """
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if proc.returncode == 0:
        return True, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"
    missing = missing_libraries()
    if missing:
        pkgs = sorted({p for _, p in missing if p != "?"})
        return False, (f"Qt's xcb platform plugin cannot load {', '.join(n for n, _ in missing)}: install "
                       f"them (Debian / Ubuntu: sudo apt-get install {' '.join(pkgs)}; "
                       "or run packaging/install_system_packages.sh)")
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    reason = next((line for line in lines if "could not" in line.lower() or "cannot" in line.lower()),
                  lines[-1] if lines else f"exit status {proc.returncode}")
    return False, f"Qt cannot open a window here (platform {os.environ.get('QT_QPA_PLATFORM', 'default')}): {reason}"


def main() -> int:
    """``python -m annotator.desktop``: one line, exit 0 (a window can open) or 1."""
    if not display_set() and not os.environ.get("QT_QPA_PLATFORM"):
        print("no DISPLAY / WAYLAND_DISPLAY set: no desktop to open a window on (use QT_QPA_PLATFORM=offscreen "
              "for headless runs)")
        return 0
    ok, message = probe_platform()
    print(f"desktop ok: Qt platform {message}" if ok else f"error: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
