"""Mask overlays: decode COCO RLE masks and paint them into one RGBA image (numpy + OpenCV).

Formats:
- masks: ``[N, H, W]`` bool, image resolution; index order is the drawing order (last = topmost).
- colours: ``[N, 3]`` uint8 RGB (or a sequence of ``(r, g, b)``).
- overlay: ``[H, W, 4]`` uint8 **RGBA**, straight (non-premultiplied) alpha, 0 where no mask.
- RLE: pycocotools compressed RLE dict ``{"size": [H, W], "counts": str}``.

No per-pixel Python loops: fills are boolean-index assignments, outlines a morphological edge
(``mask & ~erode(mask)``), one loop iteration per instance.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from annotator.tools.colors import RGB, category_color

#: Outline colour of the selected instance (RGB).
HIGHLIGHT_COLOR: RGB = (255, 255, 255)


def decode_rle(rle: Mapping, height: int | None = None, width: int | None = None) -> np.ndarray:
    """One compressed (or uncompressed) COCO RLE -> ``[H, W]`` bool mask.

    ``height``/``width`` are only used for an uncompressed RLE (``counts`` a list of ints).
    """
    rle = dict(rle)
    if isinstance(rle.get("counts"), list):
        h, w = rle.get("size") or (height, width)
        rle = mask_utils.frPyObjects(rle, int(h), int(w))
    elif isinstance(rle.get("counts"), str):
        rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():  # pycocotools' Cython array vs numpy 2 "copy" keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def decode_masks(rles: Sequence[Mapping], height: int, width: int) -> np.ndarray:
    """Decode RLEs into ``[N, H, W]`` bool (``[0, H, W]`` when empty).

    A mask whose size differs from ``(height, width)`` is resized (nearest) to fit.
    """
    out = np.zeros((len(rles), height, width), dtype=bool)
    for i, rle in enumerate(rles):
        m = decode_rle(rle, height, width)
        if m.shape != (height, width):
            m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        out[i] = m
    return out


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Inner edge of a ``[H, W]`` bool mask, ``width`` pixels thick: ``mask & ~erode(mask)``.

    The image border counts as outside, so a mask touching the border is outlined there too.
    """
    if width <= 0 or not mask.any():
        return np.zeros_like(mask, dtype=bool)
    m = np.pad(mask.astype(np.uint8), 1)
    kernel = np.ones((3, 3), np.uint8)
    eroded = cv2.erode(m, kernel, iterations=int(width), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m.astype(bool) & ~eroded.astype(bool))[1:-1, 1:-1]


def build_overlay(
    masks: np.ndarray,
    colors: Sequence[RGB] | np.ndarray,
    *,
    fill_alpha: float = 0.4,
    outline_width: int = 2,
    filled: Sequence[bool] | None = None,
    highlight: int | None = None,
) -> np.ndarray:
    """Paint instances into one ``[H, W, 4]`` uint8 RGBA overlay (later instances on top).

    Args:
        masks: ``[N, H, W]`` bool.
        colors: ``N`` RGB colours.
        fill_alpha: opacity of the translucent fill, 0..1; outlines are opaque.
        outline_width: outline thickness in pixels (0: no outline).
        filled: per instance, whether to draw the fill (default all); outlines always drawn.
        highlight: index of the selected instance: drawn last with a thicker white outline.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    n, h, w = masks.shape
    colors = np.asarray(colors, dtype=np.uint8).reshape(n, 3)
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    fill_a = np.uint8(round(255 * float(np.clip(fill_alpha, 0.0, 1.0))))
    fills = [True] * n if filled is None else list(filled)
    order = [i for i in range(n) if i != highlight]
    if highlight is not None and 0 <= highlight < n:
        order.append(highlight)
    rows, cols = masks.any(axis=2), masks.any(axis=1)   # [N, H], [N, W]: one pass for all boxes
    pad = max(1, outline_width) + 2
    for i in order:
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if ys.size == 0:
            continue
        y0, y1 = max(0, ys[0] - pad), min(h, ys[-1] + 1 + pad)
        x0, x1 = max(0, xs[0] - pad), min(w, xs[-1] + 1 + pad)
        # work on the instance's box (padded: outside it is background or the image border,
        # both count as outside for the outline)
        m, out = masks[i, y0:y1, x0:x1], rgba[y0:y1, x0:x1]
        if fills[i]:
            out[m, :3] = colors[i]
            out[m, 3] = fill_a
        if outline_width > 0:
            edge = mask_outline(m, outline_width)
            out[edge, :3] = colors[i]
            out[edge, 3] = 255
        if i == highlight:
            edge = mask_outline(m, max(1, outline_width) + 1)
            out[edge, :3] = HIGHLIGHT_COLOR
            out[edge, 3] = 255
    return rgba


@dataclass
class Label:
    """A text label near an instance: ``x``, ``y`` image pixels (top-left of the text)."""

    ann_id: int
    x: float
    y: float
    text: str
    color: RGB


@dataclass
class InstanceLayer:
    """What the canvas shows for one image: visible instances in drawing order (last = topmost).

    ``ann_ids[i]`` is the annotation id of ``masks[i]``; ``rgba`` the overlay (see module doc).
    """

    ann_ids: list[int]
    masks: np.ndarray
    rgba: np.ndarray
    labels: list[Label] = field(default_factory=list)


def label_text(category_name: str, score: float | None) -> str:
    """``"person 0.87"`` for a scored instance, ``"person"`` otherwise."""
    return category_name if score is None else f"{category_name} {score:.2f}"


def build_layer(
    annotations: Sequence,
    categories: Sequence,
    height: int,
    width: int,
    *,
    selected_id: int | None = None,
    show_rejected: bool = False,
    masks: np.ndarray | None = None,
) -> InstanceLayer:
    """Overlay and labels for one image's annotation records (``annotator.project`` records).

    Rejected instances are hidden unless ``show_rejected`` or they are selected, in which case
    they are drawn as an outline without fill. Scored (model) instances get a
    ``"<category> <score>"`` label at the top-left of their box (``bbox`` XYWH pixels).
    ``masks``: already decoded ``[len(annotations), H, W]`` bool, to skip decoding.
    """
    names = {int(c.id): c.name for c in categories}
    colors_by_cat = {int(c.id): category_color(c.id, getattr(c, "color", None)) for c in categories}
    if masks is None:
        masks = decode_masks([a.rle for a in annotations], height, width)
    keep = [
        i for i, a in enumerate(annotations)
        if a.review_state != "rejected" or show_rejected or a.id == selected_id
    ]
    visible = [annotations[i] for i in keep]
    vmasks = masks[keep] if keep else np.zeros((0, height, width), dtype=bool)
    colors = [colors_by_cat.get(int(a.category_id), category_color(a.category_id)) for a in visible]
    ids = [int(a.id) for a in visible]
    highlight = ids.index(selected_id) if selected_id in ids else None
    filled = [a.review_state != "rejected" for a in visible]
    rgba = build_overlay(vmasks, colors, filled=filled, highlight=highlight)
    labels = []
    for a, color in zip(visible, colors):
        if a.score is None or a.review_state == "rejected":
            continue
        x, y = float(a.bbox[0]), float(a.bbox[1])
        name = names.get(int(a.category_id), str(a.category_id))
        labels.append(Label(int(a.id), x, y, label_text(name, a.score), color))
    return InstanceLayer(ids, vmasks, rgba, labels)


class MaskCache:
    """Decoded masks of one image's annotations, re-decoding only new or changed RLEs.

    Keyed by ``(annotation id, RLE counts)``; entries not asked for in the last call are
    dropped, so memory stays at one image's masks.
    """

    def __init__(self) -> None:
        self._masks: dict[tuple, np.ndarray] = {}
        self.decoded = 0  # RLEs decoded so far (for tests / profiling)

    def masks(self, annotations: Sequence, height: int, width: int) -> np.ndarray:
        """``[len(annotations), H, W]`` bool for records with ``id`` and ``rle``."""
        out = np.zeros((len(annotations), height, width), dtype=bool)
        kept: dict[tuple, np.ndarray] = {}
        for i, a in enumerate(annotations):
            key = (int(a.id), str(a.rle.get("counts")), height, width)
            m = self._masks.get(key)
            if m is None:
                m = decode_masks([a.rle], height, width)[0]
                self.decoded += 1
            kept[key] = out[i] = m
        self._masks = kept
        return out
