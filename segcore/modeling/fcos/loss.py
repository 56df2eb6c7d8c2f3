"""FCOS losses (AdelaiDet ``adet/modeling/fcos/fcos_outputs.py`` ``FCOSOutputs.losses`` /
``fcos_losses``; FCOS paper Sec. 3.1, 3.3).

* ``loss_fcos_cls``: sigmoid focal loss (alpha 0.25, gamma 2; ``torchvision.ops.sigmoid_focal_loss``)
  over every location and class, summed, / max(#positives, 1).
* ``loss_fcos_loc``: GIoU loss (``torchvision.ops.generalized_box_iou_loss``) of the positives'
  ltrb boxes (in units of their stride, ``NORM_REG_TARGETS``), weighted by the centerness
  targets, / sum of the centerness targets (``loss_denorm``). Differences from AdelaiDet's
  ``IOULoss``: torchvision's eps 1e-7 instead of the ``(I + 1) / (U + 1)`` smoothing.
* ``loss_fcos_ctr``: BCE-with-logits of the centerness prediction vs its target, summed,
  / max(#positives, 1).

With no positive location (an image without annotations) ``loss_fcos_loc`` and
``loss_fcos_ctr`` are exactly 0 (connected to the graph, finite gradients) and
``loss_fcos_cls`` is the focal loss of the all-background targets.

Symbols: B batch, L locations (all levels), K classes, P positives in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from .targets import centerness_targets, fcos_targets

__all__ = ["FCOSAssignment", "fcos_assign", "fcos_losses", "ltrb_to_boxes"]


@dataclass
class FCOSAssignment:
    """Targets of a batch, flattened over images (image-major) and locations.

    Attributes:
        labels: ``[B * L]`` int64 class index, K = background.
        reg_targets: ``[B * L, 4]`` float32 ltrb in units of the location's stride.
        gt_inds: ``[B * L]`` int64 index of the assigned gt in the batch (boxes of all images
            concatenated in order), -1 for background.
        pos_inds: ``[P]`` int64 flat indices of the positives.
        ctr_targets: ``[P]`` float32 centerness targets of the positives.
        num_pos: ``max(P, 1)`` as float; loss_denorm: ``max(sum(ctr_targets), 1e-6)``.
    """

    labels: torch.Tensor
    reg_targets: torch.Tensor
    gt_inds: torch.Tensor
    pos_inds: torch.Tensor
    ctr_targets: torch.Tensor
    num_pos: float
    loss_denorm: float


def ltrb_to_boxes(ltrb: torch.Tensor) -> torch.Tensor:
    """``[P, 4]`` (l, t, r, b) distances from a location -> XYXY boxes relative to it."""
    return torch.stack((-ltrb[:, 0], -ltrb[:, 1], ltrb[:, 2], ltrb[:, 3]), dim=1)


def fcos_assign(outputs: dict, targets: list[dict], *, sizes_of_interest=(64, 128, 256, 512),
                center_sample_radius: float | None = 1.5) -> FCOSAssignment:
    """Assign every location of every image (:func:`.targets.fcos_targets`).

    Args:
        outputs: FCOS raw outputs with ``logits`` ``[B, L, K]``, ``locations`` ``[L, 2]``,
            ``loc_strides`` ``[L]`` and ``level_sizes`` (list of ``(H_l, W_l)``).
        targets: B dicts with ``gt_boxes`` ``[N, 4]`` XYXY pixels of the network input and
            ``gt_classes`` ``[N]``.
    """
    logits = outputs["logits"]
    k = logits.shape[-1]
    locations, strides = _split_levels(outputs)
    labels, regs, inds = [], [], []
    offset = 0
    loc_strides = outputs["loc_strides"].float()
    for t in targets:
        res = fcos_targets(locations, strides, t["gt_boxes"], t["gt_classes"], k,
                           sizes_of_interest=sizes_of_interest, center_sample_radius=center_sample_radius)
        labels.append(res["labels"])
        regs.append(res["reg_targets"] / loc_strides[:, None])
        inds.append(torch.where(res["gt_inds"] >= 0, res["gt_inds"] + offset, res["gt_inds"]))
        offset += int(t["gt_boxes"].shape[0])
    labels_t = torch.cat(labels)
    reg_t = torch.cat(regs)
    pos = torch.nonzero(labels_t != k).squeeze(1)
    ctr = centerness_targets(reg_t[pos]) if len(pos) else reg_t.new_zeros((0,))
    return FCOSAssignment(labels=labels_t, reg_targets=reg_t, gt_inds=torch.cat(inds), pos_inds=pos,
                          ctr_targets=ctr, num_pos=max(float(len(pos)), 1.0),
                          loss_denorm=max(float(ctr.sum()), 1e-6))


def _split_levels(outputs: dict) -> tuple[list[torch.Tensor], list[int]]:
    locs = outputs["locations"]
    strides = [int(s) for s in outputs["strides"]]
    sizes = [h * w for h, w in outputs["level_sizes"]]
    return list(torch.split(locs, sizes)), strides


def fcos_losses(outputs: dict, assignment: FCOSAssignment, *, focal_alpha: float = 0.25,
                focal_gamma: float = 2.0) -> dict[str, torch.Tensor]:
    """``{"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}`` (scalars, float32).

    Args:
        outputs: ``logits`` ``[B, L, K]``, ``bbox_reg`` ``[B, L, 4]``, ``ctrness`` ``[B, L]``.
        assignment: from :func:`fcos_assign`.
    """
    logits = outputs["logits"].float()
    k = logits.shape[-1]
    logits = logits.reshape(-1, k)
    reg = outputs["bbox_reg"].float().reshape(-1, 4)
    ctr = outputs["ctrness"].float().reshape(-1)
    a = assignment
    onehot = torch.zeros_like(logits)
    pos = a.pos_inds
    onehot[pos, a.labels[pos]] = 1.0
    loss_cls = sigmoid_focal_loss(logits, onehot, alpha=focal_alpha, gamma=focal_gamma, reduction="sum") / a.num_pos
    if len(pos) == 0:
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": reg.sum() * 0.0, "loss_fcos_ctr": ctr.sum() * 0.0}
    pred_boxes = ltrb_to_boxes(reg[pos])
    tgt_boxes = ltrb_to_boxes(a.reg_targets[pos])
    giou = generalized_box_iou_loss(pred_boxes, tgt_boxes, reduction="none")
    loss_loc = (giou * a.ctr_targets).sum() / a.loss_denorm
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], a.ctr_targets, reduction="sum") / a.num_pos
    return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}
