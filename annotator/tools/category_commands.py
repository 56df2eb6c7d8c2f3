"""Undoable class-manager edits: add, rename, recolour and merge categories.

Category changes are project-wide (a merge moves the instances of every image), so they live
on their own :class:`~annotator.tools.commands.History` stack under the key
:data:`PROJECT_SCOPE` instead of on the per-image stacks; the class manager's Undo / Redo
buttons (Ctrl+Z / Ctrl+Shift+Z while it is open) walk that stack. Each ``do`` / ``undo`` is one
store transaction.

A :class:`CategoryCommand` records, around its first run, the whole categories table (small)
and the annotation rows of the categories it names in ``touches`` (for a merge: the source and
target categories), before and after; ``undo`` / ``redo`` put them back with
``Project.restore_categories`` and ``Project.restore_annotations`` (byte-identical rows, COCO
ids kept). An undo that the store refuses (e.g. removing an added class that has since been
used) raises :class:`~annotator.errors.AnnotatorError` and leaves store and stacks unchanged.

Per-image undo of an edit made before a merge may name a category that the merge removed; the
store then refuses it with a one-line error (nothing changes); undo the merge first.

No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

PROJECT_SCOPE = -1
"""The :class:`~annotator.tools.commands.History` key of project-wide commands."""


class CategoryCommand:
    """One undoable category change; same interface as :class:`annotator.tools.commands.Command`
    (``do``, ``undo``, ``changed``, ``text``, ``image_id``, ``result``)."""

    image_id = PROJECT_SCOPE

    def __init__(self, text: str, apply: Callable[[Any], Any], touches: Iterable[int] = ()):
        self.text = text
        self._apply = apply
        self._touches = [int(i) for i in touches]
        self.result: Any = None
        self.applied = False
        self.cats_before: dict[int, Any] = {}
        self.cats_after: dict[int, Any] = {}
        self.anns_before: dict[int, Any] = {}
        self.anns_after: dict[int, Any] = {}

    def _snapshot(self, project) -> tuple[dict, dict]:
        cats = {int(c.id): c for c in project.categories()}
        anns = {int(a.id): a for a in project.annotations_of_categories(self._touches)}
        return cats, anns

    @property
    def changed(self) -> bool:
        return self.cats_before != self.cats_after or self.anns_before != self.anns_after

    def do(self, project) -> None:
        """Apply (first time: run the edit and record it; later: redo the recorded rows)."""
        if not self.applied:
            with project.transaction():
                self.cats_before, self.anns_before = self._snapshot(project)
                self.result = self._apply(project)
                self.cats_after, self.anns_after = self._snapshot(project)
            self.applied = True
            return
        self._put(project, self.cats_after, self.cats_before, self.anns_after, self.anns_before)

    def undo(self, project) -> None:
        """Put categories and the touched annotation rows back as before (one transaction)."""
        self._put(project, self.cats_before, self.cats_after, self.anns_before, self.anns_after)

    @staticmethod
    def _put(project, cats: dict, other_cats: dict, anns: dict, other_anns: dict) -> None:
        with project.transaction():
            # categories first (a restored annotation may need its category back), then the
            # annotations, then drop categories that must go (they are unused by then)
            project.restore_categories([c for i, c in cats.items() if other_cats.get(i) != c])
            project.restore_annotations([a for i, a in anns.items() if other_anns.get(i) != a])
            project.restore_categories([], remove_ids=[i for i in other_cats if i not in cats])


def add_category(name: str, color: str | None = None) -> CategoryCommand:
    """Add a category (next free COCO id); ``result`` is the new :class:`Category`."""
    return CategoryCommand(f"Add class {name!r}", lambda p: p.add_category(name, color=color))


def rename_category(category_id: int, name: str) -> CategoryCommand:
    """Rename a category (COCO id kept); ``result`` is the renamed :class:`Category`."""
    return CategoryCommand(f"Rename class to {name!r}", lambda p: p.rename_category(int(category_id), name))


def recolor_category(category_id: int, color: str) -> CategoryCommand:
    """Set a category's ``#rrggbb`` colour; ``result`` is the :class:`Category`."""
    return CategoryCommand("Recolour class", lambda p: p.set_category_color(int(category_id), color))


def merge_categories(source_id: int, into_id: int) -> CategoryCommand:
    """Move every instance of ``source_id`` to ``into_id`` and delete ``source_id``; ``result``
    is the number of instances moved."""
    return CategoryCommand(f"Merge class {source_id} into {into_id}",
                           lambda p: p.merge_categories(int(source_id), int(into_id)),
                           touches=(int(source_id), int(into_id)))
