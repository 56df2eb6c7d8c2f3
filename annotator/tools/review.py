"""Review actions and navigation: the logic behind Accept / Reject / Delete / Change class /
Next / Previous, as plain functions on an ``annotator.project.Project`` (no Qt).

Each store-changing function makes one store call, i.e. one transaction. Review states:
``predicted`` (model output, not yet reviewed), ``accepted``, ``rejected``, ``edited``
(a human changed a model instance: here, its category).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext

from annotator.errors import AnnotatorError

REVIEW_STATES = ("predicted", "accepted", "rejected", "edited")
IMAGE_STATES = ("unlabeled", "predicted", "reviewed")


def _ids(ann_ids: int | Iterable[int]) -> list[int]:
    return [int(ann_ids)] if isinstance(ann_ids, int) else [int(a) for a in ann_ids]


def accept(project, ann_ids: int | Iterable[int]) -> list[int]:
    """Mark instances ``accepted`` (one transaction). Returns the ids changed."""
    ids = _ids(ann_ids)
    if ids:
        project.set_review_state(ids, "accepted")
    return ids


def reject(project, ann_ids: int | Iterable[int]) -> list[int]:
    """Mark instances ``rejected`` (kept in the store, hidden on the canvas, never exported as
    accepted). Returns the ids changed."""
    ids = _ids(ann_ids)
    if ids:
        project.set_review_state(ids, "rejected")
    return ids


def delete(project, ann_ids: int | Iterable[int]) -> list[int]:
    """Delete instances from the store (one transaction). Returns the ids deleted."""
    ids = _ids(ann_ids)
    if ids:
        project.delete_annotations(ids)
    return ids


def change_category(project, ann_id: int, category_id: int, *, review_state: str | None = None) -> None:
    """Give an instance another category (COCO id); raises ``AnnotatorError`` if unknown.

    When ``review_state`` (the instance's current state) is ``predicted`` the instance also
    becomes ``edited``; both changes are one transaction (``project.transaction()``).
    """
    known = {int(c.id) for c in project.categories()}
    if int(category_id) not in known:
        raise AnnotatorError(f"category id {category_id}: not in this project's categories")
    tx = getattr(project, "transaction", None)
    with tx() if tx is not None else nullcontext():
        project.set_category(int(ann_id), int(category_id))
        if review_state is not None and needs_edit_mark(review_state):
            project.set_review_state([int(ann_id)], "edited")


def needs_edit_mark(review_state: str) -> bool:
    """A ``predicted`` instance whose category a human changed becomes ``edited``."""
    return review_state == "predicted"


def category_for_key(categories: Sequence, digit: int):
    """Category picked by digit key ``1..9`` (1 = first in ``categories`` order), or ``None``."""
    if 1 <= int(digit) <= min(9, len(categories)):
        return categories[int(digit) - 1]
    return None


def step_image(image_ids: Sequence[int], current: int | None, step: int, *, wrap: bool = False) -> int | None:
    """Image id ``step`` places from ``current`` in ``image_ids`` (clamped, or wrapped).

    ``current`` unknown or ``None``: the first image (``step >= 0``) or the last.
    """
    ids = list(image_ids)
    if not ids:
        return None
    if current not in ids:
        return ids[0] if step >= 0 else ids[-1]
    i = ids.index(current) + step
    return ids[i % len(ids)] if wrap else ids[max(0, min(len(ids) - 1, i))]


def next_pending(annotations: Sequence, after_id: int | None) -> int | None:
    """Id of the next ``predicted`` instance after ``after_id`` (wrapping), or ``None``.

    Used to move the selection on after Accept / Reject, so review is one key per instance.
    """
    ids = [int(a.id) for a in annotations]
    pending = {int(a.id) for a in annotations if a.review_state == "predicted"}
    if not pending:
        return None
    start = ids.index(after_id) + 1 if after_id in ids else 0
    for k in range(len(ids)):
        cand = ids[(start + k) % len(ids)]
        if cand in pending:
            return cand
    return None


def unreviewed_image_ids(images: Sequence) -> list[int]:
    """Ids of images not yet ``reviewed`` (``unlabeled`` or ``predicted``), in list order."""
    return [int(im.id) for im in images if getattr(im, "state", None) != "reviewed"]


def review_counts(annotations: Sequence) -> dict[str, int]:
    """``{review_state: count}`` over all four states (zeros included)."""
    counts = dict.fromkeys(REVIEW_STATES, 0)
    for a in annotations:
        counts[a.review_state] = counts.get(a.review_state, 0) + 1
    return counts
