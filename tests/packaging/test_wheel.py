"""The wheel: built with ``python -m build``, it carries the package resources, and a clean venv
that installed only that wheel runs ``annotator --version`` and ``annotator --self-check`` from
outside the repository.

How the dependencies are provided (no network, and no second copy of torch, which is GBs):

1. the wheel is built offline: ``python -m build --wheel --no-isolation`` (the ``setuptools``
   already in ``.venv``) from a copy of the source tree in a temporary folder;
2. ``python -m venv --without-pip CLEAN`` (no system site-packages), then
   ``pip --python CLEAN/bin/python install --no-deps --no-index annotator-*.whl``: the clean
   venv gets the wheel and nothing else; this happens *before* step 3 so pip never sees the
   repo's editable install;
3. ``CLEAN/.../site-packages/_annotator_test_deps.pth`` holds one line, the plain path of
   ``.venv``'s site-packages. A plain path line in a ``.pth`` file appends that folder to
   ``sys.path`` *after* the clean venv's own site-packages, but ``.pth`` files inside it are
   not executed, so the repo's editable install (``__editable__.annotator-*.pth`` and its
   import finder) does not load: the test asserts ``annotator`` and ``segcore`` are imported
   from CLEAN, and the resources come from the wheel;
4. the dependencies declared in the wheel's metadata must be satisfied there
   (``importlib.metadata`` + ``packaging`` requirement check, and ``pip check``).

``packaging/wheel_check.sh`` does the fully clean variant (new venv, ``pip install
dist/*.whl`` with its dependencies from the package index); it downloads GBs and is not part
of ``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "annotator", "segcore", "resources")
RESOURCES = {
    "annotator/resources/samples/annotations.json", "annotator/resources/samples/LICENSES.md",
    "annotator/resources/samples/000000261888.jpg", "annotator/resources/samples/000000311303.jpg",
    "annotator/resources/samples/000000349184.jpg", "annotator/resources/samples/000000547336.jpg",
    "annotator/resources/samples/000000555009.jpg", "annotator/resources/icons/annotator.svg",
    "annotator/resources/icons/annotator-48.png", "annotator/resources/icons/annotator-128.png",
    "annotator/resources/icons/annotator-256.png",
}

REQUIREMENTS_CHECK = r"""
import importlib.metadata as md, sys
from packaging.requirements import Requirement
missing = []
for line in md.requires("annotator") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue   # optional extras (dev) are not required
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        missing.append(f"{req}: not installed")
        continue
    if not req.specifier.contains(have, prereleases=True):
        missing.append(f"{req}: have {have}")
print("\n".join(missing) or "requirements satisfied")
sys.exit(1 if missing else 0)
"""

SAMPLE_CHECK = r"""
import sys, annotator
from pathlib import Path
from annotator.samples import ensure_sample_project, samples_dir
from annotator.project import Project
print(annotator.__file__)
print(samples_dir())
p = Project.open(ensure_sample_project(Path(sys.argv[1])), create_if_folder=False)
print(len(p.images()), len(p.annotations()))
p.close()
"""


NO_DEPS_TOOLS = ("ultralytics ",)


def _run(cmd, *, cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``annotator-*.whl`` built offline from a copy of the working tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", src],
         cwd=src, env=dict(os.environ))
    wheels = list((tmp / "dist").glob("annotator-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert RESOURCES <= names, sorted(RESOURCES - names)
    assert "annotator/cli.py" in names and "annotator/selfcheck.py" in names and "segcore/predictor.py" in names
    assert not any(n.startswith(("tests/", "resources/")) for n in names)   # data only inside the package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "annotator = annotator.cli:console_main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_clean_venv_runs_version_and_self_check(wheel, tmp_path):
    clean = tmp_path / "clean"
    _run([sys.executable, "-m", "venv", "--without-pip", clean], cwd=tmp_path, env=dict(os.environ))
    py = clean / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"), QT_QPA_PLATFORM="offscreen",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    # 1. the wheel alone, before the dependency path exists (pip must not see the editable install)
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--no-cache-dir",
          wheel], cwd=tmp_path, env=env)
    # 2. dependencies: a plain path line (appended to sys.path, its .pth files not executed)
    clean_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           cwd=tmp_path, env=env).stdout.strip())
    deps_site = sysconfig.get_path("purelib")
    (clean_site / "_annotator_test_deps.pth").write_text(deps_site + "\n")

    out = _run([py, "-c", "import annotator, segcore, sys; print(annotator.__file__); print(segcore.__file__); "
                          "print(any('editable' in repr(f) for f in sys.meta_path))"], cwd=tmp_path, env=env).stdout
    ann_file, seg_file, editable = out.split()
    assert Path(ann_file).is_relative_to(clean_site) and Path(seg_file).is_relative_to(clean_site), out
    assert editable == "False"

    version = _run([clean / "bin" / "annotator", "--version"], cwd=tmp_path, env=env).stdout.strip()
    import annotator

    assert version == f"annotator {annotator.__version__}"

    check = _run([clean / "bin" / "annotator", "--self-check"], cwd=tmp_path, env=env, timeout=300).stdout
    lines = check.strip().splitlines()
    assert lines[-1].startswith("self-check passed"), check
    assert f"from {clean_site / 'annotator'}" in lines[0], lines[0]

    sample = _run([py, "-c", SAMPLE_CHECK, tmp_path / "sample"], cwd=tmp_path, env=env).stdout.split("\n")
    assert Path(sample[0]).is_relative_to(clean_site) and Path(sample[1]).is_relative_to(clean_site), sample
    assert sample[2] == "5 39"

    assert "requirements satisfied" in _run([py, "-c", REQUIREMENTS_CHECK], cwd=tmp_path, env=env).stdout
    # pip check over everything visible; the one tool the dev environment installs on purpose
    # without its dependencies (ultralytics, see the Makefile) is the only allowed complaint
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "check"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    broken = [ln for ln in res.stdout.splitlines()
              if ln.strip() and not ln.startswith(NO_DEPS_TOOLS) and ln.strip() != "No broken requirements found."]
    assert not broken, res.stdout + res.stderr
