"""Hit-testing and selection stepping on decoded masks (pure functions, no Qt).

Masks are ``[N, H, W]`` bool in drawing order: index ``N-1`` is drawn last, i.e. topmost.
Coordinates ``x``, ``y`` are image pixels (floats allowed; floored to the pixel they fall in).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hit_test(masks: np.ndarray, x: float, y: float) -> int | None:
    """Index of the topmost mask covering pixel ``(x, y)``, or ``None`` (also when outside)."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] == 0:
        return None
    xi, yi = int(np.floor(x)), int(np.floor(y))
    _, h, w = masks.shape
    if not (0 <= xi < w and 0 <= yi < h):
        return None
    hits = np.flatnonzero(masks[:, yi, xi])
    return int(hits[-1]) if hits.size else None


def hit_test_id(masks: np.ndarray, ann_ids: Sequence[int], x: float, y: float) -> int | None:
    """Annotation id (``ann_ids[i]`` for ``masks[i]``) of the topmost hit, or ``None``."""
    idx = hit_test(masks, x, y)
    return None if idx is None else int(ann_ids[idx])


def step_selection(ann_ids: Sequence[int], current: int | None, step: int) -> int | None:
    """The id ``step`` places after ``current`` in ``ann_ids`` (wrapping); first/last if none."""
    if not ann_ids:
        return None
    ids = list(ann_ids)
    if current not in ids:
        return ids[0] if step >= 0 else ids[-1]
    return ids[(ids.index(current) + step) % len(ids)]
