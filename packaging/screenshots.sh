#!/usr/bin/env bash
# Screenshots of the main window with each tool in use -> docs/screenshots/*.png.
# Installs Debian's xvfb (and Qt's xcb client libraries) if missing (apt-get; needs root or sudo), starts Xvfb on a free
# display, runs packaging/screenshots.py there with the repo's .venv (or $PYTHON), stops Xvfb.
# Usage: packaging/screenshots.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/screenshots}"
PYTHON="${PYTHON:-.venv/bin/python}"

# Xvfb, plus the X client libraries Qt's xcb plugin loads (Qt >= 6.5 needs libxcb-cursor0).
PKGS="xvfb libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y $missing || { $SUDO apt-get update && $SUDO apt-get install -y $missing; }
fi

display=99
while [ -e "/tmp/.X${display}-lock" ] || [ -e "/tmp/.X11-unix/X${display}" ]; do
    display=$((display + 1))
done
Xvfb ":${display}" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
trap 'kill "$xvfb_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    [ -e "/tmp/.X11-unix/X${display}" ] && break
    sleep 0.1
done

DISPLAY=":${display}" QT_QPA_PLATFORM=xcb "$PYTHON" packaging/screenshots.py "$OUT"
du -ch "$OUT"/*.png | tail -1
