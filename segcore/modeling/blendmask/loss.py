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

``loss_semantic`` (optional, official ``BASIS_MODULE.LOSS_ON``, weight 0.3; computed when the
model produces ``seg_logits``): cross-entropy of ``seg_logits`` ``[B, K_cls + 1, H/8, W/8]`` vs
the "thing" semantic map ``[H, W]`` int64 (0 = background, class + 1), nearest-sampled at
every 8th pixel from the top-left (official ``F.interpolate(gt_sem, scale_factor=1/8)`` in
``adet/modeling/blendmask/basis_module.py``), padding = background (official
``ImageList.from_tensors(basis_sem, size_divisibility, 0)``). A target's ``gt_semantic`` is used
when present; otherwise it is made from the instance masks by :func:`thing_semantic_map`, as
AdelaiDet's ``datasets/prepare_thing_sem_from_instance.py`` makes its ``thing_train2017/*.npz``.

Targets: B dicts with ``gt_boxes`` ``[N, 4]`` float32 XYXY pixels of the network input,
``gt_classes`` ``[N]`` int64, ``gt_masks`` ``[N, h, w]`` uint8 (h, w = the image before padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..fcos import fcos_assign, fcos_losses
from .blender import merge_bases, pool_bases

__all__ = ["blendmask_loss", "mask_targets", "thing_semantic_map"]


def thing_semantic_map(gt_masks: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """The "thing" semantic map of one image from its instances.

    Args:
        gt_masks: ``[N, H, W]`` {0, 1} (any integer / bool / float dtype).
        gt_classes: ``[N]`` int64 contiguous class indices 0..K_cls-1.

    Returns:
        ``[H, W]`` int64: 0 = background, ``class + 1`` where an instance covers the pixel; where
        instances overlap the later one wins (AdelaiDet ``prepare_thing_sem_from_instance.py``
        paints the annotations in order).
    """
    n, h, w = gt_masks.shape
    if n == 0:
        return torch.zeros((h, w), dtype=torch.int64, device=gt_masks.device)
    order = torch.arange(1, n + 1, device=gt_masks.device, dtype=torch.int64)[:, None, None]
    last = ((gt_masks > 0).to(torch.int64) * order).amax(dim=0)          # 0 = none, i + 1 = instance i
    lut = torch.cat([gt_classes.new_zeros(1), gt_classes.to(torch.int64) + 1])
    return lut[last]


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
    top = outputs["top_feats"]
    top = (top if torch.is_tensor(top) else top.dense()).float()  # eval outputs hold model.Attentions
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
        gt = torch.cat([mask_targets(t["gt_masks"].to(bases.device), b, r)
                        for t, b in zip(targets, boxes)])[a.gt_inds[pos]]
        per = F.binary_cross_entropy_with_logits(logits, gt, reduction="none").mean(dim=(1, 2))
        losses["loss_mask"] = (per * a.ctr_targets).sum() / a.loss_denorm * mask_weight
    if "seg_logits" in outputs:
        seg = outputs["seg_logits"].float()
        h, w = seg.shape[2:]
        sem = torch.zeros((len(targets), h, w), dtype=torch.int64, device=seg.device)
        for i, t in enumerate(targets):
            g = t.get("gt_semantic")
            if g is None:
                g = thing_semantic_map(t["gt_masks"], t["gt_classes"])
            g = g.to(seg.device)[::8, ::8]                   # nearest, as F.interpolate(scale_factor=1/8)
            sem[i, :g.shape[0], :g.shape[1]] = g[:h, :w]
        losses["loss_semantic"] = F.cross_entropy(seg, sem, ignore_index=-1) * semantic_weight
    return losses
