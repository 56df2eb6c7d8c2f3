"""BlendMask inference post-processing (AdelaiDet ``blendmask.py`` inference path, ``blender.py``,
detectron2 ``detector_postprocess`` / ``paste_masks_in_image``).

FCOS detections (:func:`segcore.modeling.fcos.fcos_detect`, ``THRESH_WITH_CTR`` True), their
attentions gathered by location, blended with the bases in the predicted (unclipped) boxes
(network-input pixels) to R x R mask probabilities, then as detectron2 ``detector_postprocess``
(``detectron2/modeling/postprocessing.py``, which AdelaiDet ``adet/modeling/blendmask/blendmask.py``
calls): boxes scaled to the original image by ``(W / w, H / h)``, clipped to it, empty ones
dropped, and masks pasted at the **clipped** boxes at full resolution (bilinear ``grid_sample``
over the box, threshold 0.5). A box leaving the image therefore gets its R x R mask, predicted
for the whole box, squeezed into the part inside the image: that is what the official code
does and what official weights were evaluated with, so segcore does the same.

Batches: ``blendmask_postprocess`` takes B images (``image_sizes`` / ``input_sizes`` per image).
Masks are pasted by :func:`segcore.ops.masks.paste_masks` (the op CenterMask uses too).

Symbols: B batch, N detections, R bottom resolution, H x W original image.
"""

from __future__ import annotations

from ...ops.masks import paste_masks
from ...structures import Instances
from ..fcos import fcos_detect
from ..fcos.d2_input import scale_and_clip_boxes
from .blender import blend

__all__ = ["blendmask_postprocess"]


def blendmask_postprocess(outputs: dict, image_sizes: list[tuple[int, int]], *,
                          input_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05,
                          pre_nms_topk: int = 1000, nms_threshold: float = 0.6, max_detections: int = 100,
                          thresh_with_ctr: bool = True, mask_threshold: float = 0.5, bottom_resolution: int = 56,
                          top_interp: str = "bilinear", box_local: bool = False) -> list[Instances]:
    """Raw BlendMask outputs -> one :class:`segcore.structures.Instances` per image.

    Args:
        outputs: the model's raw outputs (``model.py``).
        image_sizes: ``(H, W)`` of each original image.
        input_sizes: ``(h, w)`` of each resized image inside the padded network input (default:
            the padded size); boxes are scaled by ``(W / w, H / h)``, then clipped to ``(H, W)``.
        score_threshold: the FCOS pre-NMS threshold on ``cls x ctr`` (official 0.05); final
            scores are ``sqrt(cls x ctr)``, so every returned score is above it too.
        pre_nms_topk, nms_threshold, max_detections, thresh_with_ctr: FCOS inference settings.
        mask_threshold: on the pasted mask probabilities (0.5).
        box_local: ``pred_masks`` as :class:`~segcore.structures.BoxMasks` (each mask kept inside
            its box window: memory follows the boxes, not ``N x H x W``).

    Returns:
        B ``Instances`` with ``pred_boxes`` ``[N, 4]`` XYXY original pixels, ``scores`` ``[N]``,
        ``pred_classes`` ``[N]`` int64, ``pred_masks`` ``[N, H, W]`` bool.
    """
    dets = fcos_detect(outputs, pre_nms_thresh=score_threshold, pre_nms_topk=pre_nms_topk, nms_thresh=nms_threshold,
                       post_nms_topk=max_detections, thresh_with_ctr=thresh_with_ctr)
    bases = outputs["bases"].float()
    top = outputs["top_feats"]  # a tensor, or model.Attentions (computed at the detections' locations)
    m = int(round((top.shape[-1] / bases.shape[1]) ** 0.5))
    if input_sizes is None:
        input_sizes = [(bases.shape[2] * 4, bases.shape[3] * 4)] * len(dets)
    results = []
    for i, d in enumerate(dets):
        h, w = image_sizes[i]
        hi, wi = input_sizes[i]
        boxes = d["boxes"]
        if len(boxes):
            probs = blend(bases[i:i + 1], [boxes], top[i, d["loc_inds"]].float(), resolution=bottom_resolution,
                          attn_size=m, top_interp=top_interp).sigmoid()
        else:
            probs = bases.new_zeros((0, bottom_resolution, bottom_resolution))
        scaled, keep = scale_and_clip_boxes(boxes, (h, w), (hi, wi))
        # at the clipped boxes, as detectron2
        masks = paste_masks(probs[keep], scaled, (h, w), mask_threshold, box_local=box_local)
        results.append(Instances(image_size=(h, w), pred_boxes=scaled, scores=d["scores"][keep],
                                 pred_classes=d["classes"][keep], pred_masks=masks))
    return results
