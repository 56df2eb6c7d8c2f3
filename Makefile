# Two commands: `make run` (desktop app on the bundled sample project) and `make test` (ruff, then the
# whole suite, including the wheel test tests/packaging/test_wheel.py). `make package` builds the PyInstaller
# one-folder bundle dist/annotator/ and runs its self-check (large and slow: not part of `make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench package bundle-check wheel clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	# test-only: Ultralytics' own YOLO dataset checker (tests/annotator/test_formats_loaders.py);
	# --no-deps because its requirements pull the GUI opencv-python over opencv-python-headless
	$(PY) -m pip install --no-deps "ultralytics>=8.3"
	touch $(STAMP)

# annotator.desktop: one line naming the missing system libraries / Debian packages when Qt
# cannot open a window on this desktop (README "Quick start"), instead of Qt's abort.
run: $(STAMP)
	$(PY) -m annotator.desktop
	$(PY) main.py --sample

# ruff first (pyproject [tool.ruff]: line length 120, pycodestyle + pyflakes), then the suite
test: $(STAMP)
	$(PY) -m ruff check annotator segcore tests packaging main.py setup.py
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/annotator bench

# Wheel only: dist/annotator-X.Y.Z-py3-none-any.whl, built offline with the venv's setuptools (no sdist).
wheel: $(STAMP)
	$(PY) -m build --wheel --no-isolation --outdir dist .

# Desktop bundle: installs PyInstaller into the venv if missing, builds dist/annotator/ from
# packaging/annotator.spec, then runs packaging/bundle_self_check.sh on it.
package: $(STAMP)
	PYTHON=$(PY) packaging/build_bundle.sh

bundle-check:
	packaging/bundle_self_check.sh dist/annotator

clean-venv:
	rm -rf $(VENV)
