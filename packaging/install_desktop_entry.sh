#!/usr/bin/env bash
# Install the desktop entry and icons for the current user (XDG paths):
#   $XDG_DATA_HOME/applications/annotator.desktop            (default ~/.local/share/applications)
#   $XDG_DATA_HOME/icons/hicolor/{48x48,128x128,256x256}/apps/annotator.png, scalable/apps/annotator.svg
# The entry runs `annotator gui`: the console script must be on PATH (pip-installed wheel, or the
# bundle's dist/annotator folder added to PATH). Pass EXEC=/path/to/annotator to write that path
# into the entry instead. Usage: packaging/install_desktop_entry.sh [--uninstall]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor"
SRC=resources/icons

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$APPS/annotator.desktop" "$ICONS/scalable/apps/annotator.svg"
    for n in 48 128 256; do rm -f "$ICONS/${n}x${n}/apps/annotator.png"; done
    echo "removed annotator.desktop and icons from $DATA"
    exit 0
fi

mkdir -p "$APPS" "$ICONS/scalable/apps"
if [ -n "${EXEC:-}" ]; then
    sed -e "s|^Exec=annotator |Exec=$EXEC |" -e "s|^TryExec=annotator$|TryExec=$EXEC|" \
        packaging/annotator.desktop > "$APPS/annotator.desktop"
else
    install -m 644 packaging/annotator.desktop "$APPS/annotator.desktop"
fi
install -m 644 "$SRC/annotator.svg" "$ICONS/scalable/apps/annotator.svg"
for n in 48 128 256; do
    mkdir -p "$ICONS/${n}x${n}/apps"
    install -m 644 "$SRC/annotator-$n.png" "$ICONS/${n}x${n}/apps/annotator.png"
done
# Refresh the menu / icon caches where the tools exist (optional).
command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$ICONS" || true
echo "installed $APPS/annotator.desktop and icons under $ICONS"
