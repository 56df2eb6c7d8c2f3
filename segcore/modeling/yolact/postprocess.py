"""YOLACT inference post-processing: decode, Fast NMS, mask assembly.

Symbol legend: B batch, P priors, K classes (no background), k prototypes, D detections,
Hp x Wp prototype map, H x W original image size.
Source: YOLACT paper sections 3.3 (mask assembly, crop) and 5 (Fast NMS); official
``layers/functions/detection.py`` (``Detect``, ``fast_nms``) and ``layers/output_utils.py``
(``postprocess``: crop at proto resolution, bilinear upsample, threshold 0.5; YOLACT++ mask
re-scoring with ``net.maskiou_net``, ``rescore_mask=True``, ``rescore_bbox=False``, which runs
inside the model's forward here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...ops.boxes import crop_masks, decode_boxes
from ...ops.masks import upsample_masks
from ...ops.nms import fast_nms
from ...structures import Instances

__all__ = ["yolact_postprocess", "yolact_detect", "yolact_coco_results"]


@torch.no_grad()
def yolact_detect(
    outputs: dict[str, Tensor],
    *,
    score_threshold: float = 0.05,
    nms_iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    second_score_threshold: bool = False,
    maskiou: Callable[[Tensor], Tensor] | None = None,
) -> list[dict[str, Tensor]]:
    """Detections of every image at prototype resolution (official ``Detect`` + the crop of
    ``postprocess``).

    Per image: decode boxes against the priors, softmax the class logits, keep priors whose best
    foreground score is ``> score_threshold``, per-class Fast NMS (``top_k`` per class,
    ``nms_iou_threshold``), keep the ``max_detections`` best, assemble the masks
    ``sigmoid(proto @ coef^T)`` and zero them outside the predicted box (+1 proto px).

    As in the official code the score threshold is only a pre-filter on each prior's best class:
    after NMS a prior may also be reported for other classes with lower scores. Pass
    ``second_score_threshold=True`` to drop every detection with score ``<= score_threshold``.

    YOLACT++ (``maskiou``: the model's re-scoring net, called by its forward): the cropped masks go
    through it and each detection's score becomes the mask score ``class score x predicted IoU of
    its class`` (official ``postprocess`` returns ``[scores, scores * maskiou_p]`` and COCO mask AP
    uses the latter); detections are then re-sorted by that score (stable). Thresholds and NMS act
    on the class scores, as officially.

    Args:
        outputs: :class:`~.model.Yolact` raw outputs (``loc``, ``conf``, ``mask_coef``, ``proto``,
            ``priors``), any float dtype (computed in float32).
        maskiou: ``[D, 1, Hp, Wp]`` float32 masks -> ``[D, K]`` predicted IoUs, or None.

    Returns:
        B dicts: ``boxes`` ``[D, 4]`` float32 relative XYXY (corners as decoded), ``scores``
        ``[D]`` float32 (mask scores with ``maskiou``), ``classes`` ``[D]`` int64 ``0..K-1``,
        ``masks`` ``[D, Hp, Wp]`` float32 probabilities (0 outside the box + 1 px); sorted by
        descending score; with ``maskiou`` also ``box_scores`` ``[D]`` float32, the class scores
        (official ``postprocess`` ``scores[0]``, which ``eval.py`` gives to the boxes).
    """
    loc = outputs["loc"].float()
    conf = outputs["conf"].float()
    coef = outputs["mask_coef"].float()
    proto = outputs["proto"].float()
    priors = outputs["priors"].float()
    hp, wp = proto.shape[1:3]
    detections = []
    for b in range(loc.shape[0]):
        scores = F.softmax(conf[b], dim=-1)[:, 1:]  # [P, K]
        candidates = scores.amax(dim=1) > score_threshold
        boxes = decode_boxes(loc[b][candidates], priors[candidates])  # relative XYXY
        idx, classes, det_scores = fast_nms(
            boxes, scores[candidates], iou_threshold=nms_iou_threshold, top_k=top_k,
            max_detections=max_detections,
            score_threshold=score_threshold if second_score_threshold else None,
        )
        boxes = boxes[idx]
        masks = torch.einsum("hwk,dk->dhw", proto[b], coef[b][candidates][idx]).sigmoid_()
        masks = crop_masks(masks, boxes, padding=1).reshape(-1, hp, wp)  # [D, Hp, Wp]
        det = {}
        if maskiou is not None:
            box_scores = det_scores
            if idx.numel():
                iou = maskiou(masks[:, None]).float()
                det_scores = det_scores * iou.gather(1, classes.to(torch.int64)[:, None]).squeeze(1)
                order = torch.sort(det_scores, descending=True, stable=True).indices
                det_scores, classes, boxes, masks = det_scores[order], classes[order], boxes[order], masks[order]
                box_scores = box_scores[order]
            det["box_scores"] = box_scores.float()
        detections.append({"boxes": boxes.float(), "scores": det_scores.float(),
                           "classes": classes.to(torch.int64), "masks": masks, **det})
    return detections


@torch.no_grad()
def yolact_postprocess(
    outputs: dict[str, Tensor],
    image_sizes: Sequence[tuple[int, int]],
    *,
    score_threshold: float = 0.05,
    nms_iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    mask_threshold: float = 0.5,
    second_score_threshold: bool = False,
    input_sizes: Sequence[tuple[int, int]] | None = None,
    box_local: bool = False,
) -> list[Instances]:
    """Turn YOLACT outputs into per-image :class:`~segcore.structures.Instances`.

    Outputs of the model's eval-mode forward carry ``detections`` (:func:`yolact_detect`, run
    there with the forward's ``score_threshold`` and the model's NMS settings, YOLACT++ mask
    re-scoring included); they are used as they are and the detection keyword arguments here
    are not. Raw outputs alone (e.g. a training-mode forward) are detected here with them,
    without re-scoring. Then, as the official ``postprocess``: masks upsampled bilinearly to
    ``(H, W)`` and thresholded at ``mask_threshold``, boxes scaled to pixels, corners ordered and
    clipped to the image (``sanitize_coordinates``).

    Args:
        outputs: :class:`~.model.Yolact` outputs, any float dtype (computed in float32).
        image_sizes: B original ``(H, W)`` sizes in pixels; boxes and masks are returned there.
        input_sizes: ignored (the S x S input fills the image; the family contract's argument).
        box_local: ``pred_masks`` as :class:`~segcore.structures.BoxMasks`, each mask upsampled
            only inside its window (:func:`segcore.ops.masks.upsample_masks`); memory follows
            the boxes, not ``D x H x W``.

    Returns:
        B :class:`Instances`, ``pred_boxes`` float32 XYXY pixels clipped to the image, ``scores``
        float32, ``pred_classes`` int64 ``0..K-1``, ``pred_masks`` bool ``[D, H, W]``, sorted by
        descending score, on the outputs' device; YOLACT++: ``scores`` the mask scores and
        ``box_scores`` the class scores.

    Raises:
        ValueError: if ``len(image_sizes)`` differs from the batch size.
    """
    batch = outputs["loc"].shape[0]
    if len(image_sizes) != batch:
        raise ValueError(f"yolact_postprocess: {len(image_sizes)} image sizes for a batch of {batch}")
    detections = outputs.get("detections")
    if detections is None:
        detections = yolact_detect(outputs, score_threshold=score_threshold, nms_iou_threshold=nms_iou_threshold,
                                   top_k=top_k, max_detections=max_detections,
                                   second_score_threshold=second_score_threshold)
    results = []
    for det, (height, width) in zip(detections, image_sizes):
        height, width = int(height), int(width)
        masks, boxes = det["masks"], det["boxes"]
        box_scores = det.get("box_scores")
        if masks.shape[0] == 0:
            empty = Instances.empty((height, width), device=masks.device)
            if box_scores is not None:
                empty.box_scores = empty.scores.clone()
            results.append(empty)
            continue
        full = upsample_masks(masks, (height, width), mask_threshold, box_local=box_local)

        # official sanitize_coordinates: order the corners, scale to pixels, clip to the image
        xs = boxes[:, 0::2] * width
        ys = boxes[:, 1::2] * height
        pixel_boxes = torch.stack(
            (xs.min(dim=1).values.clamp(0, width), ys.min(dim=1).values.clamp(0, height),
             xs.max(dim=1).values.clamp(0, width), ys.max(dim=1).values.clamp(0, height)), dim=1)
        results.append(Instances(
            image_size=(height, width),
            pred_boxes=pixel_boxes.float(),
            scores=det["scores"].float(),
            pred_classes=det["classes"].to(torch.int64),
            pred_masks=full,
            box_scores=None if box_scores is None else box_scores.float(),
        ))
    return results


def yolact_coco_results(prediction, image_id: int) -> list[dict]:
    """COCO results entries of one image as the official ``eval.py`` writes them
    (``--output_coco_json``: ``prep_metrics``, ``Detections.add_bbox`` / ``add_mask``).

    * order: the official detection order, descending class score (``Detect`` sorts by it; the
      YOLACT++ re-scoring does not re-sort there): a stable sort of segcore's order by class score;
    * ``bbox``: the sanitised pixel box (segcore's ``pred_boxes``) truncated to integers as
      ``boxes.long()``, then XYWH rounded to 0.1 (``round(v * 10) / 10``);
    * a detection whose truncated box has zero area is dropped, box and mask alike;
    * ``score``: the class score (YOLACT++ too: ``box_scores``, ``rescore_bbox`` False);
      ``mask_score``: the mask score (YOLACT++: class score x predicted IoU; YOLACT: the class
      score again), which ``eval.py`` writes to its separate mask results file;
    * ``segmentation``: compressed RLE of the full-image mask (counts as str).

    ``prediction``: a :class:`segcore.predictor.Prediction` (``boxes``, ``scores``,
    ``box_scores`` or None, ``category_ids``, ``masks``).
    """
    n = len(prediction.scores)
    if n == 0:
        return []
    mask_scores = np.asarray(prediction.scores, dtype=np.float32)
    box_scores = mask_scores if prediction.box_scores is None else np.asarray(prediction.box_scores, np.float32)
    boxes = np.trunc(np.asarray(prediction.boxes, dtype=np.float32)).astype(np.int64)
    rles = prediction.to_rle()
    out = []
    for i in np.argsort(-box_scores, kind="stable"):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        if (y2 - y1) * (x2 - x1) <= 0:
            continue
        out.append({"image_id": int(image_id), "category_id": int(prediction.category_ids[i]),
                    "bbox": [round(float(v) * 10) / 10 for v in (x1, y1, x2 - x1, y2 - y1)],
                    "score": float(box_scores[i]), "mask_score": float(mask_scores[i]),
                    "segmentation": rles[i]})
    return out
