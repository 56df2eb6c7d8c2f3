"""YOLACT priors (anchors).

Symbol legend: P priors, S network input side, A priors per cell.
Source: YOLACT paper section 4 ("Backbone Detector": aspect ratios [1, 1/2, 2], one scale per
level 24/48/96/192/384 px at S = 550); official ``yolact.py`` ``PredictionModule.make_priors`` with
``use_pixel_scales=True``, ``preapply_sqrt=False`` and ``use_square_anchors=True`` (the official
"backward compatibility" quirk: h is set equal to w, so every v1 prior is a square of side
``scale * sqrt(ratio)`` pixels).

Scales are in pixels of the network input. For an input side other than 550 the official
configs scale them proportionally and truncate (``int(s / 550 * S)``, see ``yolact_im700_config``
in ``data/config.py``); :func:`scaled_pred_scales` does that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["YOLACT_PRED_SCALES_550", "YOLACT_ASPECT_RATIOS", "scaled_pred_scales", "make_priors", "PriorCache"]

#: Official v1 prior scales (pixels at S = 550), one per level P3..P7.
YOLACT_PRED_SCALES_550: tuple[int, ...] = (24, 48, 96, 192, 384)
#: Official v1 aspect ratios (w/h before the square quirk).
YOLACT_ASPECT_RATIOS: tuple[float, ...] = (1.0, 0.5, 2.0)


def scaled_pred_scales(
    input_size: int, base: Sequence[float] = YOLACT_PRED_SCALES_550, base_size: int = 550
) -> list[int]:
    """Prior scales in pixels for an input side ``input_size``: ``int(s / base_size * input_size)``.

    ``scaled_pred_scales(550) == [24, 48, 96, 192, 384]``; ``scaled_pred_scales(700)`` gives the
    official im700 scales ``[30, 61, 122, 244, 488]``.
    """
    return [int(s / base_size * input_size) for s in base]


def make_priors(
    feature_sizes: Sequence[tuple[int, int]],
    pred_scales: Sequence[float | Sequence[float]],
    aspect_ratios: Sequence[float],
    input_size: int,
    *,
    square_anchors: bool = True,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Priors for every level, concatenated in head-output order.

    Order: level by level; within a level cells row-major (y then x); within a cell for each
    scale, for each aspect ratio. Centre of cell (i, j) of an h x w map is
    ``((j + 0.5) / w, (i + 0.5) / h)``; size ``w = s * sqrt(r) / S``, ``h = s / sqrt(r) / S``
    (``h = w`` when ``square_anchors``).

    Args:
        feature_sizes: ``(h, w)`` of each prediction level (P3..P7).
        pred_scales: per level, one scale or a list of scales, in pixels of the S x S input.
        aspect_ratios: ratios r (w/h) used at every level.
        input_size: S.
        square_anchors: the official v1 quirk (True for YOLACT v1 weights).

    Returns:
        ``[P, 4]`` float32 relative cxcywh, ``P = sum(h * w) * A`` with
        ``A = len(scales) * len(aspect_ratios)`` (19,248 at S = 550 with the defaults).

    Raises:
        ValueError: if the number of levels and scales differ.
    """
    if len(feature_sizes) != len(pred_scales):
        raise ValueError(f"make_priors: {len(feature_sizes)} levels but {len(pred_scales)} scale entries")
    out = []
    for (h, w), scales in zip(feature_sizes, pred_scales):
        scales = [scales] if isinstance(scales, (int, float)) else list(scales)
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((cx.reshape(-1), cy.reshape(-1)), dim=1)  # [h*w, 2]
        sizes = []
        for s in scales:
            for r in aspect_ratios:
                pw = s * math.sqrt(r) / input_size
                ph = pw if square_anchors else s / math.sqrt(r) / input_size
                sizes.append((pw, ph))
        wh = torch.tensor(sizes, dtype=torch.float32)  # [A, 2]
        a = wh.shape[0]
        level = torch.cat((centres[:, None, :].expand(-1, a, 2), wh[None].expand(h * w, a, 2)), dim=2)
        out.append(level.reshape(-1, 4))
    return torch.cat(out, dim=0).to(device)


class PriorCache:
    """Computes priors once per (feature sizes, device) and returns the cached tensor afterwards.

    Args: as :func:`make_priors` (without ``feature_sizes`` / ``device``).
    """

    def __init__(
        self,
        pred_scales: Sequence[float | Sequence[float]],
        aspect_ratios: Sequence[float],
        input_size: int,
        *,
        square_anchors: bool = True,
    ):
        self.pred_scales = [list(s) if isinstance(s, (list, tuple)) else s for s in pred_scales]
        self.aspect_ratios = list(aspect_ratios)
        self.input_size = int(input_size)
        self.square_anchors = bool(square_anchors)
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_per_cell(self) -> int:
        """A, priors per feature-map cell."""
        n_scales = len(self.pred_scales[0]) if isinstance(self.pred_scales[0], list) else 1
        return n_scales * len(self.aspect_ratios)

    def __call__(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device | str) -> Tensor:
        """``[P, 4]`` float32 relative cxcywh priors on ``device`` (see :func:`make_priors`)."""
        key = (tuple((int(h), int(w)) for h, w in feature_sizes), str(torch.device(device)))
        priors = self._cache.get(key)
        if priors is None:
            priors = make_priors(
                key[0], self.pred_scales, self.aspect_ratios, self.input_size,
                square_anchors=self.square_anchors, device=device,
            )
            self._cache[key] = priors
        return priors
