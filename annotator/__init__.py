"""annotator: the desktop annotation assistant (project store, formats, tools, jobs, UI).

Only :mod:`annotator.ui` imports PySide6; everything else is plain Python that tests drive
without a display. Bundled data (sample project, icons) lives in the top-level ``resources/``
folder, installed as the package ``annotator.resources``, and is read with :func:`resources`
(``importlib.resources``), the same from a source checkout, an editable install, an installed
wheel or the PyInstaller bundle.
"""

from __future__ import annotations

__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version (``importlib.metadata``), else ``__version__``
    (a source tree that was never installed, or a bundle without metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("annotator")
    except PackageNotFoundError:
        return __version__


def resources():
    """The bundled data folder (``samples/``, ``icons/``) as an ``importlib.resources`` Traversable.

    The data live in the top-level ``resources/`` folder of the repository, which setuptools
    installs as ``annotator/resources`` (``pyproject.toml`` ``[tool.setuptools.package-dir]``
    maps the data package ``annotator.resources`` to it; ``setup.py`` lists it) and the
    PyInstaller spec collects to the same place. Found, in this order:

    * a source checkout (``PYTHONPATH=repo``) or an editable install: ``resources/`` beside this
      ``annotator`` package (a ``pathlib.Path``, which is a Traversable). An editable install
      maps only code, so this is also what it reads;
    * an installed wheel or the desktop bundle: ``importlib.resources.files("annotator") /
      "resources"``.

    The folder has no ``__init__.py`` and is never imported (``annotator.resources`` stays this
    function). Use ``importlib.resources.as_file`` where a real file path is needed.
    """
    from importlib.resources import files
    from pathlib import Path

    checkout = Path(__file__).resolve().parent.parent / "resources"
    if (checkout / "samples" / "annotations.json").is_file():
        return checkout
    return files("annotator") / "resources"
