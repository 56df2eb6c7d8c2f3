"""CenterMask inference post-processing (paper section 3 "Inference"; centermask2
``detector_postprocess``; detectron2 ``paste_masks_in_image``). No trainable parameters: the
FCOS detections, SAG-Mask and MaskIoU ran in the model's eval-mode ``forward``
(``outputs["detections"]``, mask score = FCOS score x predicted IoU, clamped to [0, 1],
sorted by it); here the boxes are scaled to the original image and the 28 x 28 mask
probabilities pasted there (:func:`segcore.ops.masks.paste_masks`, threshold 0.5).

Symbols: B images, N detections, H x W original image, h x w resized image inside the padded input.
"""

from __future__ import annotations

from ...ops.masks import paste_masks
from ...structures import Instances

__all__ = ["centermask_postprocess"]


def centermask_postprocess(outputs: dict, image_sizes: list[tuple[int, int]], *,
                           input_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05,
                           mask_threshold: float = 0.5) -> list[Instances]:
    """Eval-mode CenterMask outputs -> one :class:`segcore.structures.Instances` per image.

    Args:
        outputs: the model's eval-mode outputs (``detections``, ``features``).
        image_sizes: ``(H, W)`` of each original image.
        input_sizes: ``(h, w)`` of each resized image inside the padded network input (default:
            the padded size); boxes are scaled by ``(W / w, H / h)``. Pass the ``image_sizes``
            the forward was given.
        score_threshold: not used: the forward's ``score_threshold`` chose the FCOS candidates
            (the returned mask scores can be lower than it).
        mask_threshold: on the pasted mask probabilities (0.5).

    Returns:
        B ``Instances`` with ``pred_boxes`` ``[N, 4]`` float32 XYXY original pixels, ``scores``
        ``[N]`` float32 mask scores in [0, 1], ``pred_classes`` ``[N]`` int64, ``pred_masks``
        ``[N, H, W]`` bool; sorted by score.

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
        b = det["boxes"].clone()
        b[:, 0::2] *= w / wi
        b[:, 1::2] *= h / hi
        masks = paste_masks(det["mask_probs"], b, (h, w), mask_threshold)
        results.append(Instances(image_size=(h, w), pred_boxes=b, scores=det["scores"],
                                 pred_classes=det["classes"], pred_masks=masks))
    return results
