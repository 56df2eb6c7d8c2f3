"""CenterMask box prompts: SAG-Mask's mask inside a user-drawn box (CenterMask paper Sec. 2.2-2.4;
centermask2 ``centermask/modeling/centermask/mask_head.py`` ``mask_rcnn_inference``,
``maskiou_head.py`` ``mask_iou_inference``, ``center_heads.py`` ``forward_with_given_boxes``,
``proposal_utils``).

CenterMask's mask branch is a two-stage RoI head: it already takes boxes. A user box is treated
exactly like an FCOS detection in :func:`segcore.modeling.centermask.postprocess.centermask_postprocess`:
scaled to the network input, Eq. 2 level assignment over P3-P5 and RoIAlign 14 x 14
(``aligned=True``), SAG-Mask -> 28 x 28 per-class logits, sigmoid of one class channel, pasted
at the box in the original image (bilinear, threshold 0.5); the MaskIoU head predicts the IoU
of that mask for that class (the **score**, clamped to [0, 1]; a detection's score would be
its FCOS score times this). All of it goes through
:meth:`~segcore.modeling.centermask.roi_heads.CenterMaskRoIHeads.predict_with_classes`, the same
code as the inference path, so prompting with the box and class of a detection that lies
inside the image reproduces the predictor's mask exactly. (A detection crossing the image
border is pooled at its unclipped FCOS box and pasted at the clipped one, as centermask2 does;
a user box is clipped to the image first, so its mask is pooled at the clipped box.)

**Which class channel** (the head predicts one mask per class):

1. the class given by the caller;
2. else the class of the highest-scoring FCOS detection (the model's own detections for this
   image: class probability > 0.05, NMS 0.6, the best ``max_detections``, boxes clipped to the
   input) whose box has IoU > 0.5 with the user box;
3. else the channel with the largest mean mask probability inside the box.

Symbols: N boxes, K classes, H x W original image, h x w resized image inside the padded
network input. Boxes are XYXY absolute pixels.
"""

from __future__ import annotations

import contextlib

import torch
from torchvision.ops import box_iou

from ...ops.masks import paste_masks
from ..fcos import fcos_detect

__all__ = ["centermask_detections", "centermask_box_prompt"]


def centermask_detections(outputs: dict, input_hw: tuple[int, int], *, score_threshold: float = 0.05,
                          max_detections: int = 50) -> dict[str, torch.Tensor]:
    """FCOS detections of one image as the model's forward makes them (before the mask head),
    with their boxes clipped to the resized image, as user boxes are, for matching.

    Returns ``boxes`` ``[D, 4]`` (network-input pixels, clipped to ``input_hw`` = (h, w), empty
    ones dropped), ``scores`` ``[D]`` (``sqrt(cls x ctr)``), ``classes`` ``[D]`` int64, sorted by score.
    """
    d = fcos_detect(outputs, pre_nms_thresh=score_threshold, post_nms_topk=max_detections, thresh_with_ctr=False)[0]
    hi, wi = int(input_hw[0]), int(input_hw[1])
    b = d["boxes"].clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, wi)
    b[:, 1::2] = b[:, 1::2].clamp(0, hi)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return {"boxes": b[keep], "scores": d["scores"][keep], "classes": d["classes"][keep]}


def centermask_box_prompt(outputs: dict, roi_heads, boxes: torch.Tensor, image_hw: tuple[int, int],
                          input_hw: tuple[int, int], *, classes: torch.Tensor | None = None,
                          detections: dict | None = None, match_iou: float = 0.5,
                          max_detections: int = 50, mask_threshold: float = 0.5,
                          autocast_dtype: torch.dtype | None = None) -> dict:
    """Masks of user boxes on one image from CenterMask's raw outputs.

    Args:
        outputs: raw outputs of the model for a batch of one image (``features`` P3-P5 and the
            FCOS outputs), float32.
        roi_heads: the model's :class:`~segcore.modeling.centermask.roi_heads.CenterMaskRoIHeads`.
        boxes: ``[N, 4]`` float XYXY pixels of the **original** image, clipped to it, non-empty.
        image_hw: ``(H, W)`` of the original image; input_hw: ``(h, w)`` of the resized image.
        classes: optional ``[N]`` int64 class indices 0..K-1; ``-1`` (or no tensor) = choose
            (module docstring, steps 2-3).
        detections: :func:`centermask_detections` of this image (computed when needed and None).
        match_iou: IoU a detection needs with the box to lend its class (> 0.5).
        max_detections: detections considered for step 2 (the model's ``max_detections``, 50).
        mask_threshold: paste threshold (0.5).
        autocast_dtype: run the RoI heads under ``torch.autocast`` of the features' device type
            with this dtype (as the post-processing's ``autocast_dtype``); None = float32.

    Returns:
        dict with ``masks`` ``[N, H, W]`` bool, ``classes`` ``[N]`` int64 (the channel used),
        ``class_source`` ``[N]`` int64 (0 given, 1 matched FCOS detection, 2 largest mean
        probability), ``scores`` ``[N]`` float32 predicted mask IoU in [0, 1] (None without a
        MaskIoU head) and ``detections`` (the FCOS detections used for step 2, or None).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    hi, wi = int(input_hw[0]), int(input_hw[1])
    feats = [f.float() for f in outputs["features"]]
    device = feats[0].device
    n = boxes.shape[0]
    boxes = boxes.to(device=device, dtype=torch.float32)
    cls = (torch.full((n,), -1, dtype=torch.int64, device=device) if classes is None
           else torch.as_tensor(classes, dtype=torch.int64).to(device).reshape(-1).clone())
    if cls.numel() != n:
        raise ValueError(f"classes: expected {n} class indices, got {cls.numel()}")
    source = torch.where(cls >= 0, 0, 2).to(torch.int64)
    if n == 0:
        return {"masks": torch.zeros((0, h, w), dtype=torch.bool, device=device), "classes": cls,
                "class_source": source, "scores": None if roi_heads.maskiou_head is None else torch.zeros(0),
                "detections": detections}
    net = boxes.clone()
    net[:, 0::2] = boxes[:, 0::2] * (wi / w)
    net[:, 1::2] = boxes[:, 1::2] * (hi / h)
    missing = cls < 0
    if bool(missing.any()):
        if detections is None:
            detections = centermask_detections(outputs, (hi, wi), max_detections=max_detections)
        if detections["boxes"].shape[0]:
            iou = box_iou(net[missing], detections["boxes"].to(device))              # [n_missing, D]
            ok = iou > match_iou
            # highest-scoring overlapping detection (detections are sorted by score)
            score = torch.where(ok, detections["scores"].to(device)[None, :], torch.full_like(iou, -1.0))
            best_score, best = score.max(dim=1)
            found = best_score >= 0
            idx = torch.nonzero(missing).squeeze(1)
            cls[idx[found]] = detections["classes"].to(device)[best[found]]
            source[idx[found]] = 1
    ones = torch.ones(n, device=device)
    amp = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    with amp:
        probs, ious, used = roi_heads.predict_with_classes(feats, [net], [cls], [ones], [(hi, wi)])
    probs = [p.float() for p in probs]
    masks = paste_masks(probs[0], boxes, (h, w), mask_threshold)
    scores = ious[0].float().clamp(0.0, 1.0) if roi_heads.maskiou_head is not None else None
    return {"masks": masks, "classes": used[0], "class_source": source, "scores": scores, "detections": detections}
