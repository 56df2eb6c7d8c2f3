"""The command layer: every edit of an image's annotations is a :class:`Command` with
``do`` / ``undo``, each of which is **one** store transaction; :class:`History` keeps an
unlimited undo / redo stack per image (kept when the user switches images and back).

A command is built from a function that makes ordinary store calls (``add_annotation``,
``update_mask``, ``set_review_state``, ...). The first ``do`` runs it inside
``project.transaction()`` and records the difference it made to the image: the rows before
and after (whole :class:`~annotator.project.records.AnnotationRecord` snapshots, RLE included)
and the image's done flag. ``undo`` / ``redo`` put those rows back exactly with
``project.restore_annotations`` (byte-identical RLE, polygon, review state, timestamps).

Masks are ``[H, W]`` bool at image resolution, stored as COCO RLE (pycocotools, counts str).
No Qt here: the GUI, the tests and the kill test all drive this module.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from annotator import masks
from annotator.errors import AnnotatorError, Refusal
from annotator.tools import mask_ops


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or dataclasses.replace(a, updated="") == dataclasses.replace(b, updated="")


def _snapshot(project, image_id: int) -> tuple[dict, bool]:
    return {int(a.id): a for a in project.annotations(image_id)}, bool(project.image(image_id).done)


class Command:
    """One undoable edit of one image. ``text`` names it for the Undo / Redo menu items.

    ``apply(project)`` makes the edit with store calls (run once, inside one transaction);
    its return value is kept in :attr:`result` (e.g. the new annotation id).
    """

    def __init__(self, image_id: int, text: str, apply: Callable[[Any], Any] | None = None):
        self.image_id = int(image_id)
        self.text = text
        self._apply = apply
        self.result: Any = None
        self.before: dict[int, Any] = {}     # ann id -> row before (changed or deleted rows)
        self.after: dict[int, Any] = {}      # ann id -> row after (changed or added rows)
        self.done_before: bool | None = None
        self.done_after: bool | None = None
        self.applied = False

    # ---- recording ----------------------------------------------------------------------
    def _record(self, before: dict, after: dict, done_b: bool, done_a: bool) -> None:
        # a row whose only difference is its ``updated`` timestamp (e.g. accepting an accepted
        # instance) is unchanged: whether the clock ticked must not decide what undo does
        changed = {i for i in set(before) | set(after) if not _same(before.get(i), after.get(i))}
        self.before = {i: before[i] for i in changed if i in before}
        self.after = {i: after[i] for i in changed if i in after}
        self.done_before, self.done_after = done_b, done_a

    @classmethod
    def recorded(cls, image_id: int, text: str, before: Sequence, after: Sequence,
                 done_before: bool = False, done_after: bool = False) -> "Command":
        """A command for a change already made elsewhere (e.g. a pre-label run in the worker),
        from full snapshots of the image's annotations before and after it."""
        cmd = cls(image_id, text)
        cmd._record({int(a.id): a for a in before}, {int(a.id): a for a in after}, done_before, done_after)
        cmd.applied = True
        return cmd

    @property
    def changed(self) -> bool:
        """Whether the command changed anything (an empty command is not kept in the history)."""
        return bool(self.before or self.after) or self.done_before != self.done_after

    # ---- do / undo ----------------------------------------------------------------------
    def do(self, project) -> None:
        """Apply (first time: run the edit and record it; later: redo the recorded rows)."""
        if not self.applied:
            with project.transaction():
                before, done_b = _snapshot(project, self.image_id)
                self.result = self._apply(project) if self._apply is not None else None
                after, done_a = _snapshot(project, self.image_id)
            self._record(before, after, done_b, done_a)
            self.applied = True
            return
        self._put(project, self.after, self.before, self.done_after)

    def undo(self, project) -> None:
        """Put the rows back as they were before the command (one transaction)."""
        self._put(project, self.before, self.after, self.done_before)

    def _put(self, project, rows: dict, other: dict, done: bool | None) -> None:
        with project.transaction():
            project.restore_annotations(rows.values(), remove_ids=[i for i in other if i not in rows])
            if done is not None and self.done_before != self.done_after:
                project.set_done([self.image_id], bool(done))

    def __repr__(self) -> str:  # pragma: no cover
        return f"Command({self.image_id}, {self.text!r}, -{len(self.before)} +{len(self.after)})"


class History:
    """Unlimited undo / redo, one stack pair per image id; pure Python, no Qt.

    ``execute`` applies a command and pushes it (an unchanged command is dropped and the redo
    stack kept); a new command clears that image's redo stack. Stacks of other images are
    never touched, so switching images and back keeps everything.
    """

    def __init__(self) -> None:
        self._undo: dict[int, list[Command]] = defaultdict(list)
        self._redo: dict[int, list[Command]] = defaultdict(list)
        self.listeners: list[Callable[[int], None]] = []   # called with the image id after a change

    def _notify(self, image_id: int) -> None:
        for fn in list(self.listeners):
            fn(image_id)

    def execute(self, project, cmd: Command) -> Command | None:
        """Apply ``cmd`` (one transaction) and push it; returns it, or None when it changed nothing."""
        cmd.do(project)
        return self.push_applied(cmd)

    def push_applied(self, cmd: Command) -> Command | None:
        """Push a command whose change is already in the store (see :meth:`Command.recorded`)."""
        if not cmd.changed:
            return None
        self._undo[cmd.image_id].append(cmd)
        self._redo[cmd.image_id].clear()
        self._notify(cmd.image_id)
        return cmd

    def undo(self, project, image_id: int) -> Command | None:
        """Undo the image's last command; None when there is nothing to undo."""
        stack = self._undo.get(int(image_id))
        if not stack:
            return None
        cmd = stack[-1]
        cmd.undo(project)            # raises -> stacks unchanged
        stack.pop()
        self._redo[int(image_id)].append(cmd)
        self._notify(int(image_id))
        return cmd

    def redo(self, project, image_id: int) -> Command | None:
        """Redo the image's last undone command; None when there is nothing to redo."""
        stack = self._redo.get(int(image_id))
        if not stack:
            return None
        cmd = stack[-1]
        cmd.do(project)
        stack.pop()
        self._undo[int(image_id)].append(cmd)
        self._notify(int(image_id))
        return cmd

    def can_undo(self, image_id: int | None) -> bool:
        return image_id is not None and bool(self._undo.get(int(image_id)))

    def can_redo(self, image_id: int | None) -> bool:
        return image_id is not None and bool(self._redo.get(int(image_id)))

    def undo_text(self, image_id: int | None) -> str:
        return self._undo[int(image_id)][-1].text if self.can_undo(image_id) else ""

    def redo_text(self, image_id: int | None) -> str:
        return self._redo[int(image_id)][-1].text if self.can_redo(image_id) else ""

    def depth(self, image_id: int) -> tuple[int, int]:
        """``(undo steps, redo steps)`` of an image."""
        return len(self._undo.get(int(image_id), ())), len(self._redo.get(int(image_id), ()))

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()


# ====================================================================== command builders
def _ids(ann_ids: int | Iterable[int]) -> list[int]:
    return [int(ann_ids)] if isinstance(ann_ids, (int, np.integer)) else [int(a) for a in ann_ids]


def edited_state(record) -> str:
    """Review state after a person changes an instance's mask: a human, accepted instance
    stays accepted; anything else (a prediction, a rejected one) becomes ``edited``."""
    return "accepted" if record.source == "human" and record.review_state == "accepted" else "edited"


def current_mask(project, ann_id: int) -> np.ndarray:
    """The stored mask of an annotation, bool [H, W]."""
    return masks.decode_rle(project.annotation(int(ann_id)).rle)


def _write_mask(project, ann_id: int, mask: np.ndarray, *, polygon: list | None = None) -> int | None:
    rec = project.annotation(int(ann_id))
    if polygon is None and not np.asarray(mask).any():
        project.delete_annotations([int(ann_id)])   # an erased-away instance is deleted
        return None
    project.update_mask(int(ann_id), rle=None if polygon is not None else masks.encode_mask(mask),
                        polygon=polygon, review_state=edited_state(rec))
    return int(ann_id)


def add_mask(image_id: int, category_id: int, mask: np.ndarray | None = None, *, polygon: list | None = None,
             text: str = "Add instance", **kwargs) -> Command:
    """Add a human, accepted instance from a bool mask (stored as RLE) or a COCO polygon."""
    def apply(project):
        if polygon is None and (mask is None or not np.asarray(mask).any()):
            raise Refusal("empty mask: nothing to add")
        rle = None if polygon is not None else masks.encode_mask(mask)
        return project.add_annotation(int(image_id), int(category_id), rle=rle, polygon=polygon, **kwargs)
    return Command(image_id, text, apply)


def set_mask(image_id: int, ann_id: int, mask: np.ndarray, text: str = "Edit mask") -> Command:
    """Replace an instance's mask (an empty result deletes the instance)."""
    return Command(image_id, text, lambda p: _write_mask(p, ann_id, mask))


def edit_mask(image_id: int, ann_id: int, fn: Callable[[np.ndarray], np.ndarray], text: str) -> Command:
    """Replace an instance's mask by ``fn(current mask)`` (read inside the transaction)."""
    return Command(image_id, text, lambda p: _write_mask(p, ann_id, fn(current_mask(p, ann_id))))


def brush_stroke(image_id: int, ann_id: int, points, radius: float, *, erase: bool = False) -> Command:
    """One brush (or eraser) stroke through ``points`` = one command."""
    op = mask_ops.erase if erase else mask_ops.brush
    return edit_mask(image_id, ann_id, lambda m: op(m, points, radius), "Erase" if erase else "Brush")


def polygon_edit(image_id: int, ann_id: int, polygon, *, cut: bool = False) -> Command:
    """Add a polygon's area to an instance, or cut it out (a hole when drawn inside)."""
    op = mask_ops.cut_polygon if cut else mask_ops.add_polygon
    return edit_mask(image_id, ann_id, lambda m: op(m, polygon), "Cut polygon" if cut else "Add polygon")


def set_polygon(image_id: int, ann_id: int, polygon: list, text: str = "Edit vertices") -> Command:
    """Replace a polygon-sourced instance's polygon (the mask is re-rasterised, polygon kept)."""
    return Command(image_id, text, lambda p: _write_mask(p, ann_id, None, polygon=polygon))


def delete(image_id: int, ann_ids) -> Command:
    ids = _ids(ann_ids)
    return Command(image_id, "Delete", lambda p: p.delete_annotations(ids) if ids else None)


def set_review_state(image_id: int, ann_ids, state: str) -> Command:
    ids = _ids(ann_ids)
    return Command(image_id, state.capitalize(), lambda p: p.set_review_state(ids, state) if ids else None)


def accept(image_id: int, ann_ids) -> Command:
    return set_review_state(image_id, ann_ids, "accepted")


def reject(image_id: int, ann_ids) -> Command:
    return set_review_state(image_id, ann_ids, "rejected")


def accept_above(image_id: int, threshold: float) -> Command:
    """Accept every ``predicted`` instance of the image with score >= ``threshold``."""
    def apply(project):
        ids = [a.id for a in project.annotations(image_id, review_states=["predicted"])
               if a.score is not None and a.score >= threshold]
        if ids:
            project.set_review_state(ids, "accepted")
        return ids
    return Command(image_id, f"Accept all >= {threshold:.2f}", apply)


def set_category(image_id: int, ann_id: int, category_id: int) -> Command:
    """Change an instance's category; a ``predicted`` instance becomes ``edited``."""
    def apply(project):
        rec = project.annotation(int(ann_id))
        project.set_category(int(ann_id), int(category_id))
        if rec.review_state == "predicted":
            project.set_review_state([int(ann_id)], "edited")
    return Command(image_id, "Change class", apply)


def mark_done(image_id: int, remaining: str = "rejected", done: bool = True) -> Command:
    """Mark the image done; its remaining ``predicted`` instances become ``remaining``
    (``"rejected"`` or ``"accepted"``)."""
    if remaining not in ("rejected", "accepted"):
        raise AnnotatorError(f"remaining: {remaining!r} is not 'rejected' or 'accepted'")

    def apply(project):
        ids = [a.id for a in project.annotations(image_id, review_states=["predicted"])]
        if ids and done:
            project.set_review_state(ids, remaining)
        project.set_done([int(image_id)], done)
    return Command(image_id, "Done" if done else "Not done", apply)


def merge(image_id: int, keep_id: int, other_id: int) -> Command:
    """Union of two instances into ``keep_id``; ``other_id`` is deleted."""
    def apply(project):
        m = mask_ops.merge(current_mask(project, keep_id), current_mask(project, other_id))
        _write_mask(project, keep_id, m)
        project.delete_annotations([int(other_id)])
    return Command(image_id, "Merge", apply)


def subtract(image_id: int, target_id: int, cutter_id: int) -> Command:
    """Remove ``cutter_id``'s pixels from ``target_id`` (the cutter is kept)."""
    def apply(project):
        m = mask_ops.subtract(current_mask(project, target_id), current_mask(project, cutter_id))
        return _write_mask(project, target_id, m)
    return Command(image_id, "Subtract", apply)


def split(image_id: int, ann_id: int, *, min_area: int = 1) -> Command:
    """Split a multi-part instance: the largest part stays, every other part becomes a new
    instance with the same category. Returns (as ``result``) the ids, original first."""
    def apply(project):
        rec = project.annotation(int(ann_id))
        parts = mask_ops.split_parts(masks.decode_rle(rec.rle), min_area=min_area)
        if len(parts) < 2:
            return [int(ann_id)]
        _write_mask(project, ann_id, parts[0])
        state = edited_state(rec)
        new = [project.add_annotation(rec.image_id, rec.category_id, rle=masks.encode_mask(p), iscrowd=rec.iscrowd,
                                      source=rec.source, model_version=rec.model_version, score=rec.score,
                                      review_state=state) for p in parts[1:]]
        return [int(ann_id), *new]
    return Command(image_id, "Split", apply)


def fill_holes(image_id: int, ann_id: int) -> Command:
    return edit_mask(image_id, ann_id, mask_ops.fill_holes, "Fill holes")


def z_order(image_id: int, ann_id: int, *, front: bool = True) -> Command:
    """Bring an instance to the front (drawn last) or send it to the back."""
    def apply(project):
        lo, hi = project.z_range(image_id)
        project.set_z_order(int(ann_id), hi + 1 if front else lo - 1)
    return Command(image_id, "Bring to front" if front else "Send to back", apply)


def replace_predictions(image_id: int, predictions: list[dict], model_version: int | None) -> Command:
    """A whole pre-label run of one image as one undoable step."""
    return Command(image_id, "Pre-label", lambda p: p.replace_predictions(image_id, predictions, model_version))
