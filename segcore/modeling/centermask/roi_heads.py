"""CenterMask RoI heads: positive-proposal sampling, RoIAlign pooler, SAG-Mask, MaskIoU.

Symbol legend: N images, R RoIs, K classes, G gt instances of an image, M = 28, S = 14,
H x W network input. Boxes are XYXY absolute pixels of the network input.

Source: centermask2 ``centermask/modeling/centermask/center_heads.py`` (``CenterROIHeads``:
proposals = FCOS detections + gt boxes (``PROPOSAL_APPEND_GT``), matched at IoU 0.5,
``BATCH_SIZE_PER_IMAGE`` 512 x ``POSITIVE_FRACTION`` 0.25, only foreground RoIs reach the mask
head; ``_forward_mask``, ``_forward_maskiou``); paper section 2.3. Module names ``mask_head`` and
``maskiou_head`` give the official keys ``roi_heads.mask_head.*`` / ``roi_heads.maskiou_head.*``
when this module is the model's ``roi_heads``.

Precision: the pooler, SAG-Mask and MaskIoU run in float32 even under a bf16 / fp16 autocast
(:func:`segcore.ops.precision.fp32_call` in :meth:`CenterMaskRoIHeads.forward_train` and
:meth:`CenterMaskRoIHeads.predict_with_classes`): the features are cast to float32 before the
RoIAlign, so the 28 x 28 mask logits (thresholded at 0.5 after pasting) and the predicted mask
IoU (a factor of the score) come out as in fp32 up to the backbone's rounding. They work on at
most ``max_detections`` 14 x 14 RoIs, a small share of the time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from ...ops.precision import fp32_call
from .mask_head import SAGMaskHead, mask_rcnn_loss, mask_rcnn_targets, select_class_masks
from .maskiou_head import MaskIoUHead, mask_scores, maskiou_loss, maskiou_targets
from .pooler import MultiLevelRoIAlign

__all__ = ["CenterMaskRoIHeads", "select_positive_proposals", "roi_losses"]


def select_positive_proposals(proposals: Tensor, gt_boxes: Tensor, *, iou_threshold: float = 0.5,
                              max_positives: int = 128, append_gt: bool = True,
                              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Foreground RoIs of one image for mask training.

    Args:
        proposals: ``[P, 4]`` detected boxes (FCOS outputs, detached).
        gt_boxes: ``[G, 4]``.
        iou_threshold: a proposal is positive when its best IoU with a gt is >= this (0.5).
        max_positives: keep at most this many, chosen at random (512 x 0.25 = 128).
        append_gt: add the gt boxes to the proposals first (detectron2 ``PROPOSAL_APPEND_GT``).

    Returns ``(boxes [R, 4], gt_index [R] int64)``; R = 0 when G = 0.
    """
    device = gt_boxes.device
    if gt_boxes.shape[0] == 0:
        return gt_boxes.new_zeros(0, 4), torch.zeros(0, dtype=torch.int64, device=device)
    boxes = proposals.detach().to(device=device, dtype=gt_boxes.dtype)
    if append_gt:
        boxes = torch.cat([boxes, gt_boxes], dim=0)
    best_iou, gt_index = box_iou(boxes, gt_boxes).max(dim=1)
    keep = torch.nonzero(best_iou >= iou_threshold).squeeze(1)
    if keep.numel() > max_positives:
        perm = torch.randperm(keep.numel(), generator=generator, device="cpu")[:max_positives]
        keep = keep[perm.to(keep.device)]
    return boxes[keep], gt_index[keep]


class CenterMaskRoIHeads(nn.Module):
    """Mask branch of CenterMask on top of FCOS boxes and FPN P3..P5.

    Args:
        num_classes: K.
        in_channels: FPN channels (256; Lite 128).
        conv_dims, num_convs: SAG-Mask and MaskIoU conv width / depth (256, 4; Lite 128, 2).
        strides: strides of the feature maps given to the pooler (``(8, 16, 32)`` = P3..P5).
        pooler_resolution: S (14); masks are 2S = 28.
        maskiou: build and train the MaskIoU head (``MASKIOU_ON`` True).
        class_agnostic: one mask for all classes.
        iou_threshold, max_positives: see :func:`select_positive_proposals`.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 256, conv_dims: int = 256, num_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32), pooler_resolution: int = 14, maskiou: bool = True,
                 class_agnostic: bool = False, iou_threshold: float = 0.5,
                 max_positives: int = 128):
        super().__init__()
        self.pooler = MultiLevelRoIAlign(pooler_resolution, strides, sampling_ratio=0, aligned=True, assign="ratio")
        self.mask_head = SAGMaskHead(in_channels, conv_dims, num_convs, num_classes, class_agnostic)
        self.maskiou_head = (MaskIoUHead(in_channels, conv_dims, num_convs, num_classes, pooler_resolution)
                             if maskiou else None)
        self.iou_threshold = float(iou_threshold)
        self.max_positives = int(max_positives)

    def forward_train(self, features: list[Tensor], proposals: list[Tensor], targets: list[dict],
                      image_sizes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        """The training pass of the mask branch (called by the model's ``forward``): sample the
        positive RoIs, pool, SAG-Mask, MaskIoU; returns what :func:`roi_losses` needs.

        Args:
            features: ``[P3, P4, P5]``, each ``[N, C, H_l, W_l]``.
            proposals: N tensors ``[P_i, 4]`` (detached FCOS detections; may be empty).
            targets: N dicts with ``gt_boxes [G, 4]`` float32, ``gt_classes [G]`` int64,
                ``gt_masks [G, H, W]`` uint8 {0, 1} (the target format of docs/INTERFACES.md).
            image_sizes: N ``(h, w)`` of the resized images (A_input of Eq. 2).

        Returns:
            ``mask_logits`` ``[R, K, M, M]``, ``gt_classes`` ``[R]`` int64, ``mask_targets``
            ``[R, M, M]`` float32 {0, 1}, and with the MaskIoU head ``maskiou`` ``[R, K]`` (its
            prediction on the gt-class mask, not detached, as centermask2) and ``maskiou_targets``
            ``[R]`` (detached). R = 0 keeps every module in the graph (empty tensors).
        """
        return fp32_call(self._forward_train, features, proposals, targets, image_sizes)

    def _forward_train(self, features: list[Tensor], proposals: list[Tensor], targets: list[dict],
                       image_sizes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        boxes, classes, mtargets, ratios = [], [], [], []
        for props, tgt in zip(proposals, targets):
            gt_boxes = tgt["gt_boxes"].to(features[0].device, torch.float32)
            b, gi = select_positive_proposals(props, gt_boxes, iou_threshold=self.iou_threshold,
                                              max_positives=self.max_positives)
            t, r = mask_rcnn_targets(tgt["gt_masks"], b, gi, 2 * self.pooler.output_size)
            boxes.append(b)
            classes.append(tgt["gt_classes"].to(b.device)[gi])
            mtargets.append(t)
            ratios.append(r)
        pooled = self.pooler(features, boxes, image_sizes)
        logits = self.mask_head(pooled)
        out = {"mask_logits": logits, "gt_classes": torch.cat(classes).long(),
               "mask_targets": torch.cat(mtargets).to(logits.device)}
        if self.maskiou_head is not None:
            selected = select_class_masks(logits, out["gt_classes"])
            out["maskiou"] = self.maskiou_head(pooled, selected.sigmoid()[:, None])  # not detached, as centermask2
            out["maskiou_targets"] = maskiou_targets(selected, out["mask_targets"], torch.cat(ratios).to(logits.device))
        return out

    def predict(self, features: list[Tensor], boxes: list[Tensor], classes: list[Tensor], scores: list[Tensor],
                image_sizes: Sequence[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor]]:
        """Masks for given boxes (detections, or a user's box prompt with a chosen class).

        Args: ``features`` as in :meth:`losses`; per image ``boxes [R_i, 4]``, ``classes [R_i]``
        int64, ``scores [R_i]``; ``image_sizes``.
        Returns ``(mask_probs, mask_scores)``: per image ``[R_i, 28, 28]`` float32 probabilities
        (sigmoid of the class's logits; paste with
        :func:`segcore.ops.masks.paste_masks`) and ``[R_i]``
        scores x predicted mask IoU (the class scores unchanged without the MaskIoU head).
        """
        probs, all_scores, _ = self.predict_with_classes(features, boxes, classes, scores, image_sizes,
                                                         choose_missing=False)
        return probs, all_scores

    def predict_with_classes(self, features: list[Tensor], boxes: list[Tensor], classes: list[Tensor],
                             scores: list[Tensor], image_sizes: Sequence[tuple[int, int]], *,
                             choose_missing: bool = True) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """:meth:`predict` that also returns the classes used, per image ``[R_i]`` int64.

        With ``choose_missing``, a class of ``-1`` (a box prompt without a class) takes the
        channel whose sigmoid mask has the largest mean probability over the 28 x 28 RoI; other
        classes are used as given. ``choose_missing=False`` is exactly :meth:`predict`.
        """
        return fp32_call(self._predict_with_classes, features, boxes, classes, scores, image_sizes,
                         choose_missing=choose_missing)

    def _predict_with_classes(self, features: list[Tensor], boxes: list[Tensor], classes: list[Tensor],
                              scores: list[Tensor], image_sizes: Sequence[tuple[int, int]], *,
                              choose_missing: bool) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        pooled = self.pooler(features, boxes, image_sizes)
        logits = self.mask_head(pooled)
        all_classes = torch.cat([c.to(logits.device) for c in classes]).long() if classes else \
            torch.zeros(0, dtype=torch.int64, device=logits.device)
        if choose_missing and logits.shape[0] > 0:
            best = logits.float().sigmoid().mean(dim=(2, 3)).argmax(dim=1)
            all_classes = torch.where(all_classes < 0, best, all_classes)
        probs = select_class_masks(logits, all_classes).float().sigmoid()
        all_scores = torch.cat([s.to(logits.device) for s in scores]).float() if scores else probs.new_zeros(0)
        if self.maskiou_head is not None and probs.shape[0] > 0:
            pred_iou = self.maskiou_head(pooled, probs[:, None].to(pooled.dtype)).float()
            all_scores = mask_scores(all_scores, pred_iou, all_classes)
        counts = [len(b) for b in boxes]
        return list(probs.split(counts)), list(all_scores.split(counts)), list(all_classes.split(counts))


def roi_losses(roi: dict[str, Tensor], *, maskiou_weight: float = 1.0) -> dict[str, Tensor]:
    """``loss_mask`` (Mask R-CNN BCE on the gt-class 28 x 28 mask) and, with the MaskIoU head,
    ``loss_maskiou`` (L2, ``MASKIOU_LOSS_WEIGHT`` 1.0) from :meth:`CenterMaskRoIHeads.forward_train`'s
    outputs; no parameters. Finite zeros, connected to the graph, when there is no positive RoI."""
    losses = {"loss_mask": mask_rcnn_loss(roi["mask_logits"], roi["gt_classes"], roi["mask_targets"])}
    if "maskiou" in roi:
        losses["loss_maskiou"] = maskiou_loss(roi["maskiou"], roi["gt_classes"], roi["maskiou_targets"],
                                              maskiou_weight)
    return losses
