"""CenterMask inference post-processing (paper section 3 "Inference"; centermask2 on detectron2
``GeneralizedRCNN._postprocess`` -> ``detector_postprocess`` -> ``paste_masks_in_image``). No
trainable parameters: the FCOS detections, SAG-Mask and MaskIoU ran in the model's eval-mode
``forward`` on the unclipped FCOS boxes (``outputs["detections"]``, FCOS order, box scores and
mask scores = box score x predicted IoU). Here, as ``detector_postprocess``: boxes scaled to the
original image, clipped to it, empty ones dropped, and the 28 x 28 mask probabilities pasted at
the clipped boxes (:func:`segcore.ops.masks.paste_masks`, threshold 0.5).

Then the one segcore step the official code does not take: the instances are sorted by mask
score (stable: ties keep the FCOS order), the score segcore reports (``Instances.scores``, what
the app stores and ranks by); the box scores travel along as ``Instances.box_scores``. The
official ``Instances`` keep the FCOS order with ``scores`` (box) and ``mask_scores``; COCO results
(:func:`segcore.evaluation.coco.d2_coco_results`) are written as centermask2's evaluator writes
them (box score with the box, mask score with the mask), so the order does not change AP.

Symbols: B images, N detections, H x W original image, h x w resized image inside the padded input.
"""

from __future__ import annotations

import torch

from ...ops.masks import paste_masks
from ...structures import Instances
from ..fcos.d2_input import scale_and_clip_boxes

__all__ = ["centermask_postprocess"]


def centermask_postprocess(outputs: dict, image_sizes: list[tuple[int, int]], *,
                           input_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05,
                           mask_threshold: float = 0.5, box_local: bool = False) -> list[Instances]:
    """Eval-mode CenterMask outputs -> one :class:`segcore.structures.Instances` per image.

    Args:
        outputs: the model's eval-mode outputs (``detections``, ``features``).
        image_sizes: ``(H, W)`` of each original image.
        input_sizes: ``(h, w)`` of each resized image inside the padded network input (default:
            the padded size); boxes are scaled by ``(W / w, H / h)`` and clipped to ``(H, W)``.
            Pass the ``image_sizes`` the forward was given.
        score_threshold: not used: the forward's ``score_threshold`` chose the FCOS candidates
            (the returned mask scores can be lower than it).
        mask_threshold: on the pasted mask probabilities (0.5).
        box_local: ``pred_masks`` as :class:`~segcore.structures.BoxMasks` (each mask kept inside
            its box window: memory follows the boxes, not ``N x H x W``).

    Returns:
        B ``Instances`` with ``pred_boxes`` ``[N, 4]`` float32 XYXY original pixels (clipped),
        ``scores`` ``[N]`` float32 mask scores (not clamped: a predicted IoU above 1 or below 0
        gives a score outside [0, 1], as officially), ``box_scores`` ``[N]`` float32 FCOS box
        scores, ``pred_classes`` ``[N]`` int64, ``pred_masks`` ``[N, H, W]`` bool; sorted by mask
        score, descending, stable.

    Raises:
        ValueError: ``outputs`` has no ``detections`` (a training-mode forward).
    """
    if "detections" not in outputs:
        raise ValueError("centermask_postprocess needs the eval-mode outputs of the model (no 'detections')")
    p3 = outputs["features"][0]
    if input_sizes is None:
        input_sizes = [(int(p3.shape[2]) * 8, int(p3.shape[3]) * 8)] * len(outputs["detections"])
    results = []
    for det, (h, w), (hi, wi) in zip(outputs["detections"], image_sizes, input_sizes):
        h, w = int(h), int(w)
        boxes, keep = scale_and_clip_boxes(det["boxes"], (h, w), (hi, wi))
        mask_scores = det["mask_scores"][keep]
        order = torch.sort(mask_scores, descending=True, stable=True).indices
        masks = paste_masks(det["mask_probs"][keep][order], boxes[order], (h, w), mask_threshold,
                            box_local=box_local)
        results.append(Instances(image_size=(h, w), pred_boxes=boxes[order], scores=mask_scores[order],
                                 pred_classes=det["classes"][keep][order], pred_masks=masks,
                                 box_scores=det["scores"][keep][order]))
    return results
