"""CenterMask training losses (paper section 2 and 3; centermask2 ``GeneralizedRCNN.forward`` in
training: ``proposal_generator`` losses + ``roi_heads`` losses).

``centermask_loss(outputs, targets, roi_heads=...)`` returns

* ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``: FCOS on P3-P7
  (:func:`segcore.modeling.fcos.fcos_assign` + :func:`~segcore.modeling.fcos.fcos_losses`; focal
  alpha 0.25 gamma 2, GIoU, centerness BCE; sizes of interest 64/128/256/512, centre sampling 1.5);
* ``loss_mask`` (SAG-Mask, Mask R-CNN BCE on the gt-class 28 x 28 mask of each positive RoI) and
  ``loss_maskiou`` (MaskIoU L2, weight 1), from
  :meth:`.roi_heads.CenterMaskRoIHeads.losses`.

RoIs: the FCOS detections of the current outputs, computed without gradient (detached) with the
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

from ..fcos import fcos_assign, fcos_detect, fcos_losses

__all__ = ["centermask_loss", "centermask_proposals"]


def _input_sizes(outputs: dict, targets: list[dict]) -> list[tuple[int, int]]:
    p3 = outputs["features"][0]
    padded = (int(p3.shape[2]) * 8, int(p3.shape[3]) * 8)
    return [tuple(int(v) for v in t["input_hw"]) if "input_hw" in t else padded for t in targets]


@torch.no_grad()
def centermask_proposals(outputs: dict, image_sizes: list[tuple[int, int]], *, pre_nms_thresh: float = 0.03,
                         pre_nms_topk: int = 1000, nms_thresh: float = 0.6, post_nms_topk: int = 100
                         ) -> list[torch.Tensor]:
    """Detached FCOS detections per image, ``[P_i, 4]`` float32 XYXY clipped to ``image_sizes[i]``
    (``(h, w)``); ``THRESH_WITH_CTR`` False (centermask2 default)."""
    dets = fcos_detect({k: (v.detach() if torch.is_tensor(v) else v) for k, v in outputs.items()},
                       pre_nms_thresh=pre_nms_thresh, pre_nms_topk=pre_nms_topk, nms_thresh=nms_thresh,
                       post_nms_topk=post_nms_topk, thresh_with_ctr=False)
    boxes = []
    for d, (h, w) in zip(dets, image_sizes):
        b = d["boxes"].clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        boxes.append(b[keep])
    return boxes


def centermask_loss(outputs: dict, targets: list[dict], *, roi_heads, sizes_of_interest=(64, 128, 256, 512),
                    center_sample_radius: float | None = 1.5, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                    pre_nms_thresh_train: float = 0.03, pre_nms_topk_train: int = 1000, nms_thresh: float = 0.6,
                    post_nms_topk_train: int = 100, generator: torch.Generator | None = None
                    ) -> dict[str, torch.Tensor]:
    """All CenterMask losses (float32 scalars); see the module docstring.

    Args:
        outputs: the model's raw outputs (``model.py``), possibly bf16 (computed in float32).
        targets: see the module docstring.
        roi_heads: the model's :class:`.roi_heads.CenterMaskRoIHeads` (``model.roi_heads``).
        sizes_of_interest, center_sample_radius, focal_alpha, focal_gamma: FCOS (official values).
        pre_nms_thresh_train, pre_nms_topk_train, nms_thresh, post_nms_topk_train: RoI proposals
            (0.03, 1000, 0.6, 100).
        generator: for the random choice of positives when an image has more than 128.

    Returns ``{"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"}``
    (no ``loss_maskiou`` when the RoI heads have no MaskIoU head).
    """
    a = fcos_assign(outputs, targets, sizes_of_interest=sizes_of_interest, center_sample_radius=center_sample_radius)
    losses = fcos_losses(outputs, a, focal_alpha=focal_alpha, focal_gamma=focal_gamma)
    sizes = _input_sizes(outputs, targets)
    proposals = centermask_proposals(outputs, sizes, pre_nms_thresh=pre_nms_thresh_train,
                                     pre_nms_topk=pre_nms_topk_train, nms_thresh=nms_thresh,
                                     post_nms_topk=post_nms_topk_train)
    feats = [f.float() for f in outputs["features"]]
    dev = feats[0].device
    tgts = [{"gt_boxes": t["gt_boxes"].to(dev, torch.float32), "gt_classes": t["gt_classes"].to(dev),
             "gt_masks": t["gt_masks"].to(dev)} for t in targets]
    losses.update(roi_heads.losses(feats, proposals, tgts, sizes, generator=generator))
    return losses
