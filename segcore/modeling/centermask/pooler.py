"""Scale-adaptive RoI assignment and multi-level RoIAlign for CenterMask's mask branch.

Symbol legend: R RoIs (all images together), N images, C channels, L pyramid levels, S pooled side.
Boxes are XYXY in absolute pixels of the network input (the resized image, before padding).

Source: CenterMask paper (Lee and Park, CVPR 2020) section 2.2 "Adaptive RoI Assignment
Function", Eq. 2, and centermask2 ``centermask/modeling/centermask/pooler.py``
(``assign_boxes_to_levels_by_ratio``, ``ROIPooler`` with ``ASSIGN_CRITERION "ratio"``,
``POOLER_TYPE "ROIAlignV2"``, resolution 14, sampling ratio 0). The paper's ablation sets
k_max = P5 and k_min = P3; the official pooler uses its last level (P5) as k_max.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["assign_boxes_to_levels_by_ratio", "assign_boxes_to_levels_fpn", "MultiLevelRoIAlign"]


def _box_areas(boxes: Tensor) -> Tensor:
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def assign_boxes_to_levels_by_ratio(boxes: Tensor, image_areas: Tensor | float, *, min_level: int = 3,
                                    max_level: int = 5) -> Tensor:
    """Paper Eq. 2: ``k = ceil(k_max - log2(A_input / A_RoI))``, clamped to ``[min_level, max_level]``.

    Args:
        boxes: ``[R, 4]`` float, XYXY absolute pixels of the network input.
        image_areas: input image area(s) in pixels, ``H * W`` of the resized image each box belongs
            to: a number or a ``[R]`` tensor.
        min_level, max_level: k_min, k_max (3, 5 in centermask2: P3..P5).

    Returns:
        ``[R]`` int64 absolute pyramid levels (3 = P3 ...), on ``boxes.device``. A box of more than
        half the image area goes to ``max_level``; empty or inverted boxes (area 0) to ``min_level``.
        E.g. the paper's 224 x 224 RoI in a 1024 x 1024 input: ceil(5 - log2(20.9)) = 1 -> P3.
    Raises ``ValueError`` if ``boxes`` is not ``[R, 4]``.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected [R, 4], got {tuple(boxes.shape)}")
    areas = _box_areas(boxes.float())
    image_areas = torch.as_tensor(image_areas, dtype=torch.float32, device=boxes.device).expand_as(areas)
    # official: + float epsilon inside the log; area 0 -> log2(inf) -> level -inf -> min_level
    levels = torch.ceil(max_level - torch.log2(image_areas / areas + sys.float_info.epsilon))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64)


def assign_boxes_to_levels_fpn(boxes: Tensor, *, min_level: int = 3, max_level: int = 5,
                               canonical_size: float = 224.0, canonical_level: int = 4) -> Tensor:
    """FPN Eq. 1 (the paper's baseline, detectron2 ``assign_boxes_to_levels``):
    ``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped; ``[R, 4]`` XYXY -> ``[R]`` int64 levels."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected [R, 4], got {tuple(boxes.shape)}")
    sizes = torch.sqrt(_box_areas(boxes.float()))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + sys.float_info.epsilon))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64)


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign from the pyramid level each box is assigned to (centermask2 ``ROIPooler``).

    Args:
        output_size: S (14 for the SAG-Mask head).
        strides: strides of the given feature maps, consecutive powers of 2 (``(8, 16, 32)`` =
            P3..P5); level = log2(stride).
        sampling_ratio: ``torchvision.ops.roi_align`` sampling ratio (0 = adaptive, detectron2 default).
        aligned: half-pixel correction (``True`` = detectron2 ROIAlignV2).
        assign: ``"ratio"`` (paper Eq. 2, CenterMask) or ``"fpn"`` (Eq. 1, Mask R-CNN).

    ``forward(features, boxes, image_sizes)``:
        features: list of L tensors ``[N, C, H_l, W_l]`` (same C, dtype) matching ``strides``.
        boxes: list of N tensors ``[R_i, 4]`` XYXY pixels of the network input.
        image_sizes: list of N ``(h, w)`` of the resized images (for A_input of Eq. 2).
    Returns ``[R, C, S, S]`` in ``features``' dtype, rows in the order of the concatenated boxes.
    Raises ``ValueError`` on mismatched lengths.
    """

    def __init__(self, output_size: int = 14, strides: Sequence[int] = (8, 16, 32), sampling_ratio: int = 0,
                 aligned: bool = True, assign: str = "ratio"):
        super().__init__()
        levels = [math.log2(s) for s in strides]
        if any(not float(v).is_integer() for v in levels) or levels != list(range(int(levels[0]), int(levels[-1]) + 1)):
            raise ValueError(f"strides: expected consecutive powers of 2, got {tuple(strides)}")
        if assign not in ("ratio", "fpn"):
            raise ValueError(f"assign: expected 'ratio' or 'fpn', got {assign!r}")
        self.output_size = int(output_size)
        self.strides = tuple(int(s) for s in strides)
        self.min_level, self.max_level = int(levels[0]), int(levels[-1])
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.assign = assign

    def forward(self, features: list[Tensor], boxes: list[Tensor], image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        if len(features) != len(self.strides):
            raise ValueError(f"features: expected {len(self.strides)} levels, got {len(features)}")
        if len(boxes) != features[0].shape[0] or len(image_sizes) != len(boxes):
            raise ValueError(f"boxes / image_sizes: expected {features[0].shape[0]} images, "
                             f"got {len(boxes)} / {len(image_sizes)}")
        ref = features[0]
        rois = torch.cat([torch.cat([torch.full((len(b), 1), i, dtype=ref.dtype, device=ref.device),
                                     b.to(device=ref.device, dtype=ref.dtype)], dim=1)
                          for i, b in enumerate(boxes)], dim=0) if boxes else ref.new_zeros(0, 5)
        out = ref.new_zeros(rois.shape[0], ref.shape[1], self.output_size, self.output_size)
        if rois.shape[0] == 0:
            return out
        all_boxes = torch.cat([b.to(ref.device) for b in boxes], dim=0).float()
        if self.assign == "ratio":
            areas = torch.cat([torch.full((len(b),), float(h * w), device=ref.device)
                               for b, (h, w) in zip(boxes, image_sizes)])
            levels = assign_boxes_to_levels_by_ratio(all_boxes, areas, min_level=self.min_level,
                                                     max_level=self.max_level)
        else:
            levels = assign_boxes_to_levels_fpn(all_boxes, min_level=self.min_level, max_level=self.max_level)
        for feat, stride, level in zip(features, self.strides, range(self.min_level, self.max_level + 1)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel():
                pooled = roi_align(feat, rois[idx].to(feat.dtype), self.output_size, spatial_scale=1.0 / stride,
                                   sampling_ratio=self.sampling_ratio, aligned=self.aligned)
                out[idx] = pooled.to(out.dtype)
        return out
