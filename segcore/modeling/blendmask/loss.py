"""BlendMask training losses (AdelaiDet ``blender.py`` + ``fcos_outputs.py`` + ``basis_module.py``;
paper Sec. 3.4).

``blendmask_loss(outputs, targets)`` returns ``loss_fcos_cls``, ``loss_fcos_loc``,
``loss_fcos_ctr`` (:func:`segcore.modeling.fcos.fcos_losses`), ``loss_mask`` and, when the
outputs carry ``seg_logits`` and the targets ``gt_semantic``, ``loss_semantic``.

``loss_mask``: for every FCOS positive location, the bases are RoIAligned in the **gt box** it
is assigned to (pooled once per gt, then indexed), blended with that location's attentions, and
compared with the gt mask cropped and resized to R x R (RoIAlign aligned, threshold 0.5:
detectron2 ``BitMasks.crop_and_resize``) by BCE-with-logits averaged per instance, weighted by
the centerness target, summed / ``loss_denorm`` (sum of centerness targets), x ``mask_weight``
(official ``INSTANCE_LOSS_WEIGHT`` 1). No positives: exactly 0, connected to the graph.

``loss_semantic`` (optional, official ``BASIS_MODULE.LOSS_ON``, weight 0.3): cross-entropy of
``seg_logits`` vs ``gt_semantic`` ``[H, W]`` int64 (0 = background, class + 1), nearest-sampled
to the P3 grid. Off (absent) when the targets have no ``gt_semantic``.

Targets: B dicts with ``gt_boxes`` ``[N, 4]`` float32 XYXY pixels of the network input,
``gt_classes`` ``[N]`` int64, ``gt_masks`` ``[N, h, w]`` uint8 (h, w = the image before padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..fcos import fcos_assign, fcos_losses
from .blender import merge_bases, pool_bases

__all__ = ["blendmask_loss", "mask_targets"]


def mask_targets(gt_masks: torch.Tensor, boxes: torch.Tensor, resolution: int) -> torch.Tensor:
    """``[N, h, w]`` {0,1} masks cropped to their ``[N, 4]`` boxes and resized to R x R -> float {0,1}."""
    if gt_masks.shape[0] == 0:
        return gt_masks.new_zeros((0, resolution, resolution), dtype=torch.float32)
    m = gt_masks[:, None].float()
    idx = torch.arange(m.shape[0], device=m.device, dtype=torch.float32)[:, None]
    rois = torch.cat([idx, boxes.float()], dim=1)
    out = roi_align(m, rois, output_size=(resolution, resolution), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return (out[:, 0] >= 0.5).float()


def blendmask_loss(outputs: dict, targets: list[dict], *, sizes_of_interest=(64, 128, 256, 512),
                   center_sample_radius: float | None = 1.5, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                   mask_weight: float = 1.0, semantic_weight: float = 0.3, top_interp: str = "bilinear",
                   bottom_resolution: int = 56) -> dict[str, torch.Tensor]:
    """All BlendMask losses (scalars, float32); see the module docstring.

    Keyword extras with official defaults: ``sizes_of_interest`` (per model: R_50 [64, 128, 256,
    512], 550 [64, 128, 256], RT [64, 128]), ``center_sample_radius`` 1.5, ``focal_alpha`` 0.25,
    ``focal_gamma`` 2, ``mask_weight`` 1, ``semantic_weight`` 0.3, ``top_interp`` bilinear, ``bottom_resolution`` R 56.
    """
    a = fcos_assign(outputs, targets, sizes_of_interest=sizes_of_interest, center_sample_radius=center_sample_radius)
    losses = fcos_losses(outputs, a, focal_alpha=focal_alpha, focal_gamma=focal_gamma)
    bases = outputs["bases"].float()
    top = outputs["top_feats"].float()
    k = bases.shape[1]
    m = int(round((top.shape[-1] / k) ** 0.5))
    pos = a.pos_inds
    if len(pos) == 0:
        losses["loss_mask"] = top.sum() * 0.0 + bases.sum() * 0.0
    else:
        r = int(bottom_resolution)
        boxes = [t["gt_boxes"].to(bases.device, torch.float32) for t in targets]
        rois = pool_bases(bases, boxes, r)[a.gt_inds[pos]]
        attns = top.reshape(-1, top.shape[-1])[pos]
        logits = merge_bases(rois, attns, attn_size=m, top_interp=top_interp)
        gt = torch.cat([mask_targets(t["gt_masks"].to(bases.device), b, r) for t, b in zip(targets, boxes)])[a.gt_inds[pos]]
        per = F.binary_cross_entropy_with_logits(logits, gt, reduction="none").mean(dim=(1, 2))
        losses["loss_mask"] = (per * a.ctr_targets).sum() / a.loss_denorm * mask_weight
    if "seg_logits" in outputs and all("gt_semantic" in t for t in targets):
        seg = outputs["seg_logits"].float()
        h, w = seg.shape[2:]
        sem = torch.full((len(targets), h, w), -1, dtype=torch.int64, device=seg.device)
        for i, t in enumerate(targets):
            g = t["gt_semantic"].to(seg.device)[4::8, 4::8]  # nearest sample at the P3 location centres
            sem[i, :g.shape[0], :g.shape[1]] = g[:h, :w]
        losses["loss_semantic"] = F.cross_entropy(seg, sem, ignore_index=-1) * semantic_weight
    return losses
