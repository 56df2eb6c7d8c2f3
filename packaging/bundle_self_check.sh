#!/usr/bin/env bash
# Headless check of the PyInstaller bundle (README "Packaging"): the bundle starts, prints its
# version, and `annotator --self-check` passes (imports the models, one tiny CPU forward, creates
# the sample project from the bundled resources, opens and closes the main window offscreen).
# Runs from a temporary folder with a scrubbed environment, so nothing from the repository or
# the venv can be imported by accident.
# Usage: packaging/bundle_self_check.sh [BUNDLE_DIR]   (default dist/annotator)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$(cd "${1:-dist/annotator}" && pwd)"
for exe in annotator annotator-gui; do
    [ -x "$BUNDLE/$exe" ] || { echo "FAILED bundle: $BUNDLE/$exe missing (build with 'make package')"; exit 1; }
done
ls "$BUNDLE"/_internal/PySide6/Qt/plugins/platforms/libqoffscreen.so >/dev/null 2>&1 \
    || { echo "FAILED bundle: Qt offscreen platform plugin missing"; exit 1; }
ls "$BUNDLE"/_internal/annotator/resources/samples/annotations.json >/dev/null 2>&1 \
    || { echo "FAILED bundle: annotator/resources missing"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
run() {
    env -i PATH=/usr/bin:/bin HOME="$work" XDG_DATA_HOME="$work/data" LANG=C.UTF-8 \
        QT_QPA_PLATFORM=offscreen "$@"
}
run "$BUNDLE/annotator" --version
run "$BUNDLE/annotator-gui" --version
start=$(date +%s)
run "$BUNDLE/annotator" --self-check
echo "bundle self-check passed in $(( $(date +%s) - start )) s ($(du -sh "$BUNDLE" | cut -f1) in $BUNDLE)"
