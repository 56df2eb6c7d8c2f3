"""annotator: the desktop annotation assistant (project store, formats, tools, jobs, UI).

Only :mod:`annotator.ui` imports PySide6; everything else is plain Python that tests drive
without a display. Bundled data (sample project, icons) lives in ``annotator/resources`` and
is read with :func:`resources` (``importlib.resources``), so it works the same from a source
checkout, an installed wheel or the PyInstaller bundle.
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
    """The package's ``resources`` folder as an ``importlib.resources`` Traversable
    (``samples/``, ``icons/``). Use ``importlib.resources.as_file`` where a real file path is needed."""
    from importlib.resources import files

    return files("annotator") / "resources"
