#!/usr/bin/env bash
# Fully clean wheel check (downloads the dependencies, torch included: several GB; not part of
# `make test`, whose tests/packaging/test_wheel.py reuses .venv's dependencies instead):
#   1. python -m build --wheel  -> dist/annotator-X.Y.Z-py3-none-any.whl (isolated build env)
#   2. a new venv in a temporary folder; pip install dist/annotator-*.whl with its dependencies
#      from the configured package index
#   3. from outside the repository: annotator --version, annotator --self-check, pip check
# Usage: packaging/wheel_check.sh [WORK_DIR]   (default: a new temporary folder, removed at the end)
# Environment: PYTHON (default python3; >= 3.10), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL as usual
# (e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for the small CPU-only torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -n "${1:-}" ]; then
    WORK="$1"; mkdir -p "$WORK"
else
    WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
fi

"$PYTHON" -m pip install --quiet build
rm -f dist/annotator-*.whl
"$PYTHON" -m build --wheel --outdir dist .
WHEEL="$(ls dist/annotator-*.whl)"
echo "built $WHEEL"

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --upgrade pip
"$WORK/venv/bin/python" -m pip install "$WHEEL"

cd "$WORK"   # outside the repository: only the installed wheel can be imported
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
"$WORK/venv/bin/annotator" --version
"$WORK/venv/bin/annotator" --self-check
"$WORK/venv/bin/python" -m pip check
echo "wheel check passed: $WHEEL"
