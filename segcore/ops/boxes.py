"""Box utilities for anchor-based detectors (SSD / YOLACT box coding, crowd overlap, mask crop).

Symbol legend: P priors, N boxes, M other boxes, H x W mask size.
Formats: "relative XYXY" = (x1, y1, x2, y2) as fractions of the network input side S;
"relative cxcywh" = (cx, cy, w, h) as fractions of S.
Source: YOLACT official repo ``layers/box_utils.py`` (``point_form``, ``center_size``, ``encode``,
``decode``, ``crop``), SSD (Liu et al. 2016) box coding with variances (0.1, 0.2).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "BOX_VARIANCES",
    "point_form",
    "center_form",
    "encode_boxes",
    "decode_boxes",
    "box_ioa",
    "box_crop_mask",
    "crop_masks",
]

#: SSD variances (center, size) used by YOLACT's box coding.
BOX_VARIANCES: tuple[float, float] = (0.1, 0.2)


def point_form(boxes: Tensor) -> Tensor:
    """``[..., 4]`` cxcywh -> ``[..., 4]`` XYXY (same units)."""
    return torch.cat((boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2), dim=-1)


def center_form(boxes: Tensor) -> Tensor:
    """``[..., 4]`` XYXY -> ``[..., 4]`` cxcywh (same units)."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]), dim=-1)


def encode_boxes(matched: Tensor, priors: Tensor, variances: tuple[float, float] = BOX_VARIANCES) -> Tensor:
    """SSD-encode boxes against their priors (regression targets).

    Args:
        matched: ``[P, 4]`` float, relative XYXY boxes (one per prior). Widths/heights are clamped
            to at least 1e-6 so a degenerate box gives a large but finite target.
        priors: ``[P, 4]`` float, relative cxcywh priors.
        variances: (center, size) variances.

    Returns:
        ``[P, 4]`` float ``(dx, dy, dw, dh)`` with ``dx = (cx - pcx) / (v0 * pw)`` and
        ``dw = log(w / pw) / v1``. Inverse of :func:`decode_boxes`.

    Source: official ``layers/box_utils.py`` ``encode`` (non-YOLO branch).
    """
    c = center_form(matched)
    d_xy = (c[:, :2] - priors[:, :2]) / (variances[0] * priors[:, 2:])
    d_wh = torch.log(c[:, 2:].clamp(min=1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat((d_xy, d_wh), dim=1)


def decode_boxes(loc: Tensor, priors: Tensor, variances: tuple[float, float] = BOX_VARIANCES) -> Tensor:
    """Decode SSD box regressions into boxes.

    Args:
        loc: ``[..., P, 4]`` float regressions ``(dx, dy, dw, dh)``.
        priors: ``[P, 4]`` float, relative cxcywh priors.

    Returns:
        ``[..., P, 4]`` relative XYXY boxes (not clipped).

    Source: official ``layers/box_utils.py`` ``decode`` (non-YOLO branch).
    """
    cxcy = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    wh = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return point_form(torch.cat((cxcy, wh), dim=-1))


def box_ioa(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over the area of ``boxes1`` (used for crowd regions).

    Args:
        boxes1: ``[N, 4]`` XYXY.
        boxes2: ``[M, 4]`` XYXY (same units).

    Returns:
        ``[N, M]`` float, ``area(b1 & b2) / area(b1)`` (0 where ``area(b1) == 0``).

    Source: official ``jaccard(..., iscrowd=True)`` in ``layers/box_utils.py`` (torchvision has
    no intersection-over-area op).
    """
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area1 = ((boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1]))[:, None]
    return torch.where(area1 > 0, inter / area1.clamp(min=1e-12), torch.zeros_like(inter))


def _box_rows_cols(boxes: Tensor, height: int, width: int, padding: int) -> tuple[Tensor, Tensor]:
    """``[N, H, 1]`` and ``[N, 1, W]`` bool: the rows and the columns inside each padded box."""
    boxes = boxes.float()
    xs = boxes[:, 0::2] * width
    ys = boxes[:, 1::2] * height
    x1 = (xs.min(dim=1).values - padding).clamp(min=0)
    x2 = (xs.max(dim=1).values + padding).clamp(max=width)
    y1 = (ys.min(dim=1).values - padding).clamp(min=0)
    y2 = (ys.max(dim=1).values + padding).clamp(max=height)
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None, :, None]
    inside_x = (cols >= x1[:, None, None]) & (cols < x2[:, None, None])
    inside_y = (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
    return inside_y, inside_x


def box_crop_mask(boxes: Tensor, height: int, width: int, padding: int = 1) -> Tensor:
    """Boolean masks that are True inside each box (padded by ``padding`` mask pixels).

    Args:
        boxes: ``[N, 4]`` float, relative XYXY (fractions of the mask size); x1 > x2 is tolerated.
        height, width: mask size H x W in pixels.
        padding: pixels added on every side, clipped to the mask.

    Returns:
        ``[N, H, W]`` bool; pixel (i, j) is inside when ``x1 <= j < x2`` and ``y1 <= i < y2``
        with the box scaled to pixels (not rounded).

    Source: official ``layers/box_utils.py`` ``sanitize_coordinates`` + ``crop``.
    """
    inside_y, inside_x = _box_rows_cols(boxes, height, width, padding)
    return inside_x & inside_y


def crop_masks(masks: Tensor, boxes: Tensor, padding: int = 1) -> Tensor:
    """Zero every mask outside its box.

    Args:
        masks: ``[N, H, W]`` float masks.
        boxes: ``[N, 4]`` relative XYXY boxes (see :func:`box_crop_mask`).
        padding: pixels of padding around each box.

    Returns:
        ``[N, H, W]``, same dtype as ``masks``: ``masks`` times :func:`box_crop_mask`, multiplied by
        its row and column factors (one ``[N, H, W]`` result instead of three temporaries).

    Source: official ``layers/box_utils.py`` ``crop`` (layout ``[N, H, W]`` instead of ``[H, W, N]``).
    """
    n, h, w = masks.shape
    inside_y, inside_x = _box_rows_cols(boxes, h, w, padding)
    return (masks * inside_y.to(masks.dtype)).mul_(inside_x.to(masks.dtype))
