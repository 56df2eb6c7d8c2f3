"""CenterMask training losses (paper section 2 and 3; centermask2 ``GeneralizedRCNN.forward`` in
training: ``proposal_generator`` losses + ``roi_heads`` losses). No trainable parameters: the
mask branch ran inside ``model(images, targets)`` (:mod:`.model`) and its outputs carry what the
losses need.

``centermask_loss(outputs, targets)`` returns

* ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``: FCOS on P3-P7
  (:func:`segcore.modeling.fcos.fcos_assign` + :func:`~segcore.modeling.fcos.fcos_losses`; focal
  alpha 0.25 gamma 2, GIoU, centerness BCE; sizes of interest 64/128/256/512, centre sampling 1.5);
* ``loss_mask`` (SAG-Mask, Mask R-CNN BCE on the gt-class 28 x 28 mask of each positive RoI) and
  ``loss_maskiou`` (MaskIoU L2, weight 1), from ``outputs["roi"]``
  (:func:`.roi_heads.roi_losses`).

RoIs (chosen in the forward): the FCOS detections of the same forward, detached, with the
**training** threshold 0.03 on the class probability (paper section 3: "positive score threshold
0.03 instead of 0.05 since FCOS does not generate positive RoI samples well in initial training
time"), pre-NMS top 1000 per level, NMS 0.6, top 100 after NMS (centermask2
``POST_NMS_TOPK_TRAIN``), clipped to the resized image; the gt boxes are appended
(``PROPOSAL_APPEND_GT``) and RoIs with IoU >= 0.5 to a gt are the positives (at most 128 per image).
A random-init FCOS gives no detections above 0.03 at first, so early mask training runs on the
gt boxes alone.

Targets: B dicts with ``gt_boxes`` ``[G, 4]`` float32 XYXY pixels of the network input,
``gt_classes`` ``[G]`` int64 0..K-1, ``gt_masks`` ``[G, h, w]`` uint8 {0, 1} (h, w = the resized
image before padding, or the padded input) and optionally ``input_hw`` ``(h, w)`` (the
``"short_side"`` dataset sets it; default: the padded input size). Images without gt give finite
losses (FCOS loc / ctr, mask and maskiou exactly 0, connected to the graph).
"""

from __future__ import annotations

import torch

from ..fcos import fcos_assign, fcos_losses
from .roi_heads import roi_losses

__all__ = ["centermask_loss"]


def centermask_loss(outputs: dict, targets: list[dict], *, sizes_of_interest=(64, 128, 256, 512),
                    center_sample_radius: float | None = 1.5, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                    maskiou_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """All CenterMask losses (float32 scalars); see the module docstring.

    Args:
        outputs: the training outputs of ``model(images, targets)`` (``model.py``; ``roi``
            included), possibly bf16 (computed in float32).
        targets: see the module docstring.
        sizes_of_interest, center_sample_radius, focal_alpha, focal_gamma: FCOS (official values).
        maskiou_weight: ``MASKIOU_LOSS_WEIGHT`` (1.0).

    Returns ``{"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"}``
    (no ``loss_maskiou`` when the RoI heads have no MaskIoU head).

    Raises:
        ValueError: ``outputs`` has no ``roi`` (the model ran without targets or in eval mode).
    """
    if "roi" not in outputs:
        raise ValueError("centermask_loss needs the training outputs of model(images, targets) (no 'roi')")
    a = fcos_assign(outputs, targets, sizes_of_interest=sizes_of_interest, center_sample_radius=center_sample_radius)
    losses = fcos_losses(outputs, a, focal_alpha=focal_alpha, focal_gamma=focal_gamma)
    losses.update(roi_losses(outputs["roi"], maskiou_weight=maskiou_weight))
    return losses
