"""BlendMask inference post-processing (AdelaiDet ``blendmask.py`` inference path, ``blender.py``,
detectron2 ``detector_postprocess`` / ``paste_masks_in_image``).

FCOS detections (:func:`segcore.modeling.fcos.fcos_detect`, ``THRESH_WITH_CTR`` True), their
attentions gathered by location, blended with the bases in the predicted boxes (network-input
pixels) to R x R mask probabilities, then boxes scaled to the original image, clipped, empty
ones dropped, and masks pasted at full resolution (bilinear ``grid_sample`` over the box,
threshold 0.5).

Batches: ``blendmask_postprocess`` takes B images (``image_sizes`` / ``input_sizes`` per image).
On CUDA the masks are pasted by :func:`paste_masks_batched` (all instances at once, no host
synchronisation per instance); on the CPU by the per-box loop of :func:`paste_masks`. Both give
identical bool masks.

Symbols: B batch, N detections, R bottom resolution, H x W original image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...structures import Instances
from ..fcos import fcos_detect
from .blender import blend

__all__ = ["blendmask_postprocess", "paste_masks", "paste_masks_batched"]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int],
                threshold: float = 0.5) -> torch.Tensor:
    """Paste ``[N, R, R]`` mask probabilities into ``[N, H, W]`` bool at ``[N, 4]`` XYXY boxes
    (pixel grid centres at +0.5, detectron2 ``_do_paste_mask``; only the box's pixels are sampled).

    CUDA tensors go to :func:`paste_masks_batched` (same result, no per-instance host sync)."""
    if masks.device.type == "cuda":
        return paste_masks_batched(masks, boxes, image_hw, threshold)
    h, w = image_hw
    out = torch.zeros((masks.shape[0], h, w), dtype=torch.bool, device=masks.device)
    for i in range(masks.shape[0]):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        ix0, iy0 = max(int(x0), 0), max(int(y0), 0)
        ix1, iy1 = min(int(x1) + 1, w), min(int(y1) + 1, h)
        if ix1 <= ix0 or iy1 <= iy0 or x1 <= x0 or y1 <= y0:
            continue
        xs = (torch.arange(ix0, ix1, device=masks.device, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        ys = (torch.arange(iy0, iy1, device=masks.device, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack((xs[None, :].expand(len(ys), -1), ys[:, None].expand(-1, len(xs))), dim=2)
        res = F.grid_sample(masks[i][None, None].float(), grid[None], mode="bilinear", align_corners=False)
        out[i, iy0:iy1, ix0:ix1] = res[0, 0] >= threshold
    return out


def paste_masks_batched(masks: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int],
                        threshold: float = 0.5, chunk: int = 16) -> torch.Tensor:
    """:func:`paste_masks` for all instances at once (``chunk`` at a time, bounding the sampling
    grid to ``chunk x H x W x 2`` floats), without reading boxes on the host.

    Each pixel is sampled at the same grid coordinate as in the per-box loop (same float32
    operations), and pixels outside the loop's box window ``[int(x0), int(x1) + 1) x
    [int(y0), int(y1) + 1)`` (clipped to the image) or of a degenerate box stay False, so the
    result equals :func:`paste_masks`.

    Args:
        masks: ``[N, R, R]`` mask probabilities (any float dtype; sampled in float32).
        boxes: ``[N, 4]`` XYXY pixels of the ``(H, W)`` image (unclipped).
        image_hw: ``(H, W)``.
        threshold: pixels with probability ``>= threshold`` are True.

    Returns:
        ``[N, H, W]`` bool on the masks' device.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    n = masks.shape[0]
    out = torch.zeros((n, h, w), dtype=torch.bool, device=masks.device)
    if n == 0:
        return out
    boxes = boxes.to(device=masks.device, dtype=torch.float32)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    # the loop's window: int() truncates toward zero
    ix0, iy0 = x0.trunc().clamp(min=0), y0.trunc().clamp(min=0)
    ix1, iy1 = (x1.trunc() + 1).clamp(max=w), (y1.trunc() + 1).clamp(max=h)
    valid = (ix1 > ix0) & (iy1 > iy0) & (x1 > x0) & (y1 > y0)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    in_x = (xs[None] >= ix0[:, None]) & (xs[None] < ix1[:, None]) & valid[:, None]  # [N, W]
    in_y = (ys[None] >= iy0[:, None]) & (ys[None] < iy1[:, None])  # [N, H]
    bw = torch.where(valid, x1 - x0, torch.ones_like(x0))
    bh = torch.where(valid, y1 - y0, torch.ones_like(y0))
    gx = (xs[None] + 0.5 - x0[:, None]) / bw[:, None] * 2 - 1  # [N, W]
    gy = (ys[None] + 0.5 - y0[:, None]) / bh[:, None] * 2 - 1  # [N, H]
    for i in range(0, n, chunk):
        j = min(i + chunk, n)
        grid = torch.stack((gx[i:j, None, :].expand(j - i, h, w), gy[i:j, :, None].expand(j - i, h, w)), dim=3)
        res = F.grid_sample(masks[i:j, None].float(), grid, mode="bilinear", align_corners=False)
        out[i:j] = (res[:, 0] >= threshold) & in_y[i:j, :, None] & in_x[i:j, None, :]
    return out


def blendmask_postprocess(outputs: dict, image_sizes: list[tuple[int, int]], *,
                          input_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05,
                          pre_nms_topk: int = 1000, nms_threshold: float = 0.6, max_detections: int = 100,
                          thresh_with_ctr: bool = True, mask_threshold: float = 0.5, bottom_resolution: int = 56,
                          top_interp: str = "bilinear") -> list[Instances]:
    """Raw BlendMask outputs -> one :class:`segcore.structures.Instances` per image.

    Args:
        outputs: the model's raw outputs (``model.py``).
        image_sizes: ``(H, W)`` of each original image.
        input_sizes: ``(h, w)`` of each resized image inside the padded network input (default:
            the padded size); boxes are clipped to it before scaling by ``(W / w, H / h)``.
        score_threshold: the FCOS pre-NMS threshold on ``cls x ctr`` (official 0.05); final
            scores are ``sqrt(cls x ctr)``, so every returned score is above it too.
        pre_nms_topk, nms_threshold, max_detections, thresh_with_ctr: FCOS inference settings.
        mask_threshold: on the pasted mask probabilities (0.5).

    Returns:
        B ``Instances`` with ``pred_boxes`` ``[N, 4]`` XYXY original pixels, ``scores`` ``[N]``,
        ``pred_classes`` ``[N]`` int64, ``pred_masks`` ``[N, H, W]`` bool.
    """
    dets = fcos_detect(outputs, pre_nms_thresh=score_threshold, pre_nms_topk=pre_nms_topk, nms_thresh=nms_threshold,
                       post_nms_topk=max_detections, thresh_with_ctr=thresh_with_ctr)
    bases = outputs["bases"].float()
    top = outputs["top_feats"].float()
    m = int(round((top.shape[-1] / bases.shape[1]) ** 0.5))
    if input_sizes is None:
        input_sizes = [(bases.shape[2] * 4, bases.shape[3] * 4)] * len(dets)
    results = []
    for i, d in enumerate(dets):
        h, w = image_sizes[i]
        hi, wi = input_sizes[i]
        boxes = d["boxes"]
        if len(boxes):
            probs = blend(bases[i:i + 1], [boxes], top[i, d["loc_inds"]], resolution=bottom_resolution,
                          attn_size=m, top_interp=top_interp).sigmoid()
        else:
            probs = bases.new_zeros((0, bottom_resolution, bottom_resolution))
        scaled = boxes.clone()
        scaled[:, 0::2] = boxes[:, 0::2].clamp(0, wi) * (w / wi)
        scaled[:, 1::2] = boxes[:, 1::2].clamp(0, hi) * (h / hi)
        keep = (scaled[:, 2] > scaled[:, 0]) & (scaled[:, 3] > scaled[:, 1])
        # masks are pasted at the unclipped boxes they were pooled in (detectron2 pastes at the
        # clipped ones, which squeezes the mask of a box leaving the image)
        unclipped = boxes.clone()
        unclipped[:, 0::2] *= w / wi
        unclipped[:, 1::2] *= h / hi
        masks = paste_masks(probs[keep], unclipped[keep], (h, w), mask_threshold)
        results.append(Instances(image_size=(h, w), pred_boxes=scaled[keep], scores=d["scores"][keep],
                                 pred_classes=d["classes"][keep], pred_masks=masks))
    return results
