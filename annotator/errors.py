"""User-facing errors.

Every error a user can cause (bad file, bad field, missing image, unwritable path) is raised as
:class:`AnnotatorError` with a one-line message that names the file and the field, e.g.
``instances.json: annotations[12].segmentation: polygon has 2 points (needs >= 3)``.
The CLI prints ``error: <message>`` and exits with status 2; the GUI shows a dialog. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AnnotatorError(Exception):
    """A user error: bad input file, bad field, missing image, unwritable path.

    Args:
        message: one line, ``<file>: <field>: <problem>`` where a file and field apply.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class Refusal(AnnotatorError):
    """A routine refusal of a user action (nothing selected, no image shown, a job already
    running): the GUI says it in the status bar, not in a dialog; the CLI treats it as any
    :class:`AnnotatorError`."""


class ProjectLockedError(AnnotatorError):
    """The project is open for writing in another process; this one is read-only."""
