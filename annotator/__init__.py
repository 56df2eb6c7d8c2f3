"""annotator: the desktop annotation assistant (project store, formats, tools, jobs, UI).

Only :mod:`annotator.ui` imports PySide6; everything else is plain Python that tests drive
without a display.
"""

__version__ = "0.1.0"
