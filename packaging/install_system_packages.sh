#!/usr/bin/env bash
# The system packages a Linux desktop needs for the app's window (README "Quick start"), on
# Debian / Ubuntu:
#   1. apt-get installs exactly annotator.desktop.XCB_PACKAGES (Qt's xcb platform plugin and Qt's
#      GUI libraries load them; PySide6's wheel does not carry them);
#   2. ldd shows that every library of Qt's xcb plugin is found (prints each, fails on "not found");
#   3. with --start, starts the app under Xvfb (also installed then, with xdotool) until its main
#      window is mapped, prints the window's title, and closes it.
# Usage: packaging/install_system_packages.sh [--start]      (root or sudo; uses .venv or $PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

PKGS=$("$PYTHON" -c "from annotator.desktop import XCB_PACKAGES; print(' '.join(XCB_PACKAGES))")
[ "${1:-}" = "--start" ] && PKGS="$PKGS xvfb xdotool"
echo "apt-get install $PKGS"
$SUDO apt-get install -y --no-install-recommends $PKGS >/dev/null \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends $PKGS >/dev/null; }

QT=$("$PYTHON" -c "from annotator.desktop import qt_root; print(qt_root())")
PLUGIN="$QT/plugins/platforms/libqxcb.so"
echo "ldd $PLUGIN:"
ldd "$PLUGIN" | sed 's/^/    /'
if ldd "$PLUGIN" | grep -q "not found"; then
    echo "FAILED: libraries of Qt's xcb plugin not found (above)"; exit 1
fi
echo "every library of Qt's xcb plugin is found"

[ "${1:-}" = "--start" ] || exit 0
display=99
while [ -e "/tmp/.X${display}-lock" ] || [ -e "/tmp/.X11-unix/X${display}" ]; do display=$((display + 1)); done
Xvfb ":${display}" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
app_pid=""
trap 'kill $app_pid 2>/dev/null || true; kill "$xvfb_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${display}" ] && break; sleep 0.1; done
export DISPLAY=":${display}"
unset QT_QPA_PLATFORM
"$PYTHON" main.py --sample >/tmp/annotator-start.log 2>&1 &
app_pid=$!
wid=$(timeout 120 xdotool search --sync --onlyvisible --name "^Annotator" | head -n 1) \
    || { echo "FAILED: no Annotator window was mapped; the app said:"; cat /tmp/annotator-start.log; exit 1; }
echo "main window mapped: $(xdotool getwindowname "$wid")"
kill -TERM "$app_pid"
wait "$app_pid" 2>/dev/null || true
app_pid=""
