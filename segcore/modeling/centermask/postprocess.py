"""CenterMask inference post-processing (paper section 3 "Inference"; centermask2
``CenterROIHeads.forward_with_given_boxes``, ``mask_rcnn_inference``, ``mask_iou_inference``;
detectron2 ``detector_postprocess`` / ``paste_masks_in_image``).

FCOS detections (:func:`segcore.modeling.fcos.fcos_detect`: class probability > ``score_threshold``
(``INFERENCE_TH_TEST`` 0.05), top 1000 per level, class-wise NMS 0.6, the best **50**
(``POST_NMS_TOPK_TEST`` 50 of the CenterMask configs), score ``sqrt(cls x ctr)``), clipped to the
resized image, go through RoIAlign (Eq. 2 level assignment) and SAG-Mask (28 x 28 probabilities of
the detected class); the MaskIoU head predicts their IoU and the **mask score = score x predicted
IoU** (Mask Scoring R-CNN) replaces the score, clamped to [0, 1] (the regressed IoU is unbounded;
centermask2 does not clamp); detections are re-sorted by it. Boxes are scaled to
the original image and the masks pasted there (bilinear, threshold 0.5).

Batches: every step works per image on a batch of B images (``image_sizes`` / ``input_sizes``
per image); the RoI heads run once for all detections of the batch.

Symbols: B images, N detections, H x W original image, h x w resized image inside the padded input.
"""

from __future__ import annotations

import contextlib

import torch

from ...ops.masks import paste_masks
from ...structures import Instances
from ..fcos import fcos_detect

__all__ = ["centermask_postprocess"]


def centermask_postprocess(outputs: dict, image_sizes: list[tuple[int, int]], *, roi_heads,
                           input_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05,
                           pre_nms_topk: int = 1000, nms_threshold: float = 0.6, max_detections: int = 50,
                           mask_threshold: float = 0.5, autocast_dtype: torch.dtype | None = None) -> list[Instances]:
    """Raw CenterMask outputs -> one :class:`segcore.structures.Instances` per image.

    Args:
        outputs: the model's raw outputs (``model.py``).
        image_sizes: ``(H, W)`` of each original image.
        roi_heads: the model's :class:`.roi_heads.CenterMaskRoIHeads`.
        input_sizes: ``(h, w)`` of each resized image inside the padded network input (default:
            the padded size); boxes are clipped to it, used for Eq. 2, and scaled by ``(W / w, H / h)``.
        score_threshold: FCOS candidate threshold on the class probability (0.05). The returned
            scores (``sqrt(cls x ctr) x predicted IoU``) can be lower than it.
        pre_nms_topk, nms_threshold, max_detections: FCOS inference (1000, 0.6, 50).
        mask_threshold: on the pasted mask probabilities (0.5).
        autocast_dtype: run the RoI heads (SAG-Mask, MaskIoU) under ``torch.autocast`` of the
            features' device type with this dtype (e.g. ``torch.float16`` on CUDA); None (default)
            = in float32. Their outputs are cast back to float32 before pasting.

    Returns:
        B ``Instances`` with ``pred_boxes`` ``[N, 4]`` float32 XYXY original pixels, ``scores``
        ``[N]`` float32 mask scores in [0, 1], ``pred_classes`` ``[N]`` int64, ``pred_masks`` ``[N, H, W]``
        bool; N <= ``max_detections``, sorted by score.
    """
    dets = fcos_detect(outputs, pre_nms_thresh=score_threshold, pre_nms_topk=pre_nms_topk, nms_thresh=nms_threshold,
                       post_nms_topk=max_detections, thresh_with_ctr=False)
    feats = [f.float() for f in outputs["features"]]
    if input_sizes is None:
        input_sizes = [(int(feats[0].shape[2]) * 8, int(feats[0].shape[3]) * 8)] * len(dets)
    boxes, classes, scores = [], [], []
    for d, (hi, wi) in zip(dets, input_sizes):
        b = d["boxes"].clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, wi)
        b[:, 1::2] = b[:, 1::2].clamp(0, hi)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        boxes.append(b[keep])
        classes.append(d["classes"][keep])
        scores.append(d["scores"][keep])
    amp = (torch.autocast(feats[0].device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    with amp:  # one RoI-head pass for the detections of every image of the batch
        probs, mask_scores = roi_heads.predict(feats, boxes, classes, scores, input_sizes)
    probs = [p.float() for p in probs]
    results = []
    for i, (h, w) in enumerate(image_sizes):
        hi, wi = input_sizes[i]
        ms = mask_scores[i].float().clamp(0.0, 1.0)
        order = torch.argsort(ms, descending=True)
        b = boxes[i][order].clone()
        b[:, 0::2] *= w / wi
        b[:, 1::2] *= h / hi
        masks = paste_masks(probs[i][order], b, (h, w), mask_threshold)
        results.append(Instances(image_size=(h, w), pred_boxes=b, scores=ms[order],
                                 pred_classes=classes[i][order].long(), pred_masks=masks))
    return results
