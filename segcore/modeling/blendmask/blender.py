"""BlendMask blender (AdelaiDet ``adet/modeling/blendmask/blender.py``; paper Sec. 3.3).

For each instance: RoIAlign (``torchvision.ops.roi_align``, ``aligned=True`` = detectron2
ROIAlignV2, sampling ratio 1, spatial scale 1/4) of the K bases inside its box to R x R; its
attentions ``[K, M, M]`` upsampled to R x R (bilinear, align_corners False; official
``TOP_INTERP``), softmax over K; mask logits = sum over K of bases x attentions.

Symbols: B batch, N instances, K bases (4), M attention size (14), R bottom resolution (56).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = ["pool_bases", "merge_bases", "blend"]


def pool_bases(bases: torch.Tensor, boxes: list[torch.Tensor], resolution: int = 56, *,
               spatial_scale: float = 0.25, sampling_ratio: int = 1) -> torch.Tensor:
    """RoIAlign of ``bases`` ``[B, K, H / 4, W / 4]`` in per-image boxes (B tensors ``[N_b, 4]``
    XYXY input pixels) -> ``[sum N_b, K, R, R]`` (image order)."""
    boxes = [b.to(dtype=bases.dtype) for b in boxes]
    return roi_align(bases, boxes, output_size=(resolution, resolution), spatial_scale=spatial_scale,
                     sampling_ratio=sampling_ratio, aligned=True)


def merge_bases(rois: torch.Tensor, attns: torch.Tensor, *, attn_size: int = 14,
                top_interp: str = "bilinear") -> torch.Tensor:
    """Blend pooled bases ``[N, K, R, R]`` with attentions ``[N, K * M * M]`` -> logits ``[N, R, R]``."""
    n, k, r, _ = rois.shape
    # channels_last: PyTorch's CPU bilinear kernel for many small NCHW planes is ~6x slower
    # (714 x 4 x 14 x 14 -> 56: 91 ms against 16 ms) and gives the same values
    a = attns.reshape(n, k, attn_size, attn_size).contiguous(memory_format=torch.channels_last)
    if top_interp == "bilinear":
        a = F.interpolate(a, size=(r, r), mode="bilinear", align_corners=False)
    else:
        a = F.interpolate(a, size=(r, r), mode=top_interp)
    return (rois * a.softmax(dim=1)).sum(dim=1)


def blend(bases: torch.Tensor, boxes: list[torch.Tensor], attns: torch.Tensor, *, resolution: int = 56,
          attn_size: int = 14, top_interp: str = "bilinear") -> torch.Tensor:
    """Mask logits ``[N, R, R]`` of the instances in ``boxes`` (per image) with ``attns`` ``[N, K*M*M]``."""
    return merge_bases(pool_bases(bases, boxes, resolution), attns, attn_size=attn_size, top_interp=top_interp)
