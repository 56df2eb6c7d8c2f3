"""Review navigation: the pure logic behind the review keys of the app (next pending instance,
class by digit key, next / previous / next unreviewed image), no Qt.

The store-changing review actions (accept, reject, delete, change class) are undoable
commands (:mod:`annotator.tools.commands`); review states are defined once, in
:mod:`annotator.project.records` (``REVIEW_STATES``, ``IMAGE_STATES``).
"""

from __future__ import annotations

from collections.abc import Sequence


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
