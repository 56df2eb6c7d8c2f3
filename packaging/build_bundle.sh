#!/usr/bin/env bash
# Build the one-folder desktop bundle dist/annotator/ with PyInstaller (packaging/annotator.spec)
# from the repo's .venv, then run its headless self-check (packaging/bundle_self_check.sh).
# Installs PyInstaller into the venv if missing. What `make package` runs.
# Usage: packaging/build_bundle.sh        Environment: PYTHON (default .venv/bin/python)
# The bundle carries the venv's torch build (with a CUDA torch: several GB, several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

"$PYTHON" -c "import PyInstaller" 2>/dev/null || "$PYTHON" -m pip install pyinstaller
start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/annotator.spec
end=$(date +%s)
echo "built dist/annotator in $((end - start)) s, $(du -sh dist/annotator | cut -f1)"
packaging/bundle_self_check.sh dist/annotator
