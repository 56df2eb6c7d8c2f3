"""Colours for categories, review states and image states (RGB uint8 tuples, no Qt).

A category may carry its own colour (``Category.color``: ``"#rrggbb"``, ``"rrggbb"``, an
``(r, g, b)`` sequence or ``None``); without one a stable colour is taken from :data:`PALETTE`
by the COCO category id, so the same category keeps its colour across images and sessions.
"""

from __future__ import annotations

from collections.abc import Sequence

from annotator.palette import PALETTE, RGB, hex_color  # noqa: F401 - re-exported

#: Image review state -> colour used in the image list.
IMAGE_STATE_COLORS: dict[str, RGB] = {
    "unlabeled": (150, 150, 150),
    "predicted": (230, 140, 20),
    "in_progress": (40, 120, 220),
    "done": (40, 170, 70),
    "unreadable": (200, 40, 40),
}

#: Instance review state -> colour used in the instance list.
REVIEW_STATE_COLORS: dict[str, RGB] = {
    "predicted": (230, 140, 20),
    "accepted": (40, 170, 70),
    "edited": (40, 120, 220),
    "rejected": (200, 50, 50),
}


def parse_color(value: str | Sequence[int] | None) -> RGB | None:
    """``"#rrggbb"`` / ``"rrggbb"`` / ``(r, g, b)`` -> RGB tuple; ``None`` or unparsable -> ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            return None
        try:
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
        except ValueError:
            return None
    try:
        r, g, b = (int(v) for v in list(value)[:3])
    except (TypeError, ValueError):
        return None
    return (max(0, min(255, r)), max(0, min(255, g)), max(0, min(255, b)))


def category_color(category_id: int, color: str | Sequence[int] | None = None) -> RGB:
    """Colour of a category: its own ``color`` when valid, else ``PALETTE[category_id % len]``."""
    own = parse_color(color)
    if own is not None:
        return own
    return PALETTE[int(category_id) % len(PALETTE)]


def category_colors(categories: Sequence[object]) -> dict[int, RGB]:
    """``{category id: RGB}`` for objects with ``id`` and optional ``color`` attributes."""
    return {int(c.id): category_color(c.id, getattr(c, "color", None)) for c in categories}


def to_hex(rgb: RGB) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
