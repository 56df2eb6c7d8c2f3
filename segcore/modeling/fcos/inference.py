"""FCOS inference (AdelaiDet ``adet/modeling/fcos/fcos_outputs.py`` ``predict_proposals``,
``forward_for_single_feature_map``, ``select_over_all_levels``; FCOS paper Sec. 3.3).

Per level and image: class probabilities ``sigmoid(logits)``, optionally multiplied by
``sigmoid(ctrness)`` *before* the threshold (``thresh_with_ctr``, BlendMask configs) or after;
candidates with a value above ``pre_nms_thresh`` (0.05), at most ``pre_nms_topk`` (1000) per level
by value; box = location -+ ltrb * stride; score = ``sqrt(cls * ctr)``. Then class-wise NMS at
0.6 (``torchvision.ops.batched_nms``) over all levels and the best ``post_nms_topk`` (100) as
the official ``select_over_all_levels`` cuts them: the ``post_nms_topk``-th largest score is a
threshold (``torch.kthvalue``) and every detection scoring ``>=`` it is kept, so detections
tied with the last one are all kept (more than ``post_nms_topk`` then; same rule in centermask2
``centermask/modeling/fcos/fcos_outputs.py``).
Boxes are XYXY pixels of the network input (not clipped here), in ``batched_nms`` order
(descending score).

Symbols: B batch, L locations (all levels), K classes, N detections.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

__all__ = ["fcos_detect", "candidates_per_level", "CANDIDATES_PER_DETECTION"]

#: Candidates kept per level before NMS for each detection kept after it, when a data-made cap
#: raises the detections per image above the official 100 (:func:`candidates_per_level`).
CANDIDATES_PER_DETECTION = 5


def candidates_per_level(max_detections: int, official: int = 1000) -> int:
    """``pre_nms_topk`` for a cap of ``max_detections``: the official 1000 (AdelaiDet /
    centermask2 ``PRE_NMS_TOPK_TEST``) up to a cap of 200, then 5 per detection. A dense image
    (hundreds of cells) has several candidate locations per object on one level (FCOS center
    sampling); with 1000, or one per detection, the NMS never sees many of the objects: on
    nuclei-he tiles of 1,165-1,584 nuclei, 2,087 candidates per level left 41 % of the nuclei
    without a detection at IoU >= 0.5 and 10,000 left 33 % (centermask_tiny, ``annotator simulate``
    round 4)."""
    return max(int(official), CANDIDATES_PER_DETECTION * int(max_detections))


def fcos_detect(outputs: dict, *, pre_nms_thresh: float = 0.05, pre_nms_topk: int = 1000,
                nms_thresh: float = 0.6, post_nms_topk: int = 100, thresh_with_ctr: bool = False
                ) -> list[dict[str, torch.Tensor]]:
    """Detections of every image of the batch.

    Args:
        outputs: FCOS raw outputs: ``logits`` ``[B, L, K]``, ``bbox_reg`` ``[B, L, 4]`` (ltrb in
            strides), ``ctrness`` ``[B, L]`` (logits), ``locations`` ``[L, 2]``, ``loc_strides``
            ``[L]``, ``level_sizes``.
        pre_nms_thresh, pre_nms_topk, nms_thresh, post_nms_topk, thresh_with_ctr: official
            ``INFERENCE_TH_TEST``, ``PRE_NMS_TOPK_TEST``, ``NMS_TH``, ``POST_NMS_TOPK_TEST``,
            ``THRESH_WITH_CTR``.

    Returns:
        B dicts: ``boxes`` ``[N, 4]`` float32 XYXY network-input pixels, ``scores`` ``[N]``
        float32 (sqrt(cls * ctr)), ``classes`` ``[N]`` int64, ``loc_inds`` ``[N]`` int64 index
        into the L locations (to gather per-location features such as BlendMask attentions);
        sorted by score, descending (``batched_nms`` order). More than ``post_nms_topk`` only
        when scores tie with the ``post_nms_topk``-th (the official cut).
    """
    probs = outputs["logits"].float().sigmoid()
    ctr = outputs["ctrness"].float().sigmoid()
    reg = outputs["bbox_reg"].float() * outputs["loc_strides"].float()[None, :, None]
    locs = outputs["locations"].float()
    sizes = [h * w for h, w in outputs["level_sizes"]]
    results = []
    for i in range(probs.shape[0]):
        scores_all, cls_all, inds_all = [], [], []
        start = 0
        for n in sizes:
            p = probs[i, start:start + n]
            c = ctr[i, start:start + n]
            value = p * c[:, None] if thresh_with_ctr else p
            cand = value > pre_nms_thresh
            flat = value[cand]
            nz = cand.nonzero()
            if not thresh_with_ctr:
                flat = flat * c[nz[:, 0]]
            if flat.numel() > pre_nms_topk:
                flat, top = flat.topk(pre_nms_topk, sorted=False)
                nz = nz[top]
            scores_all.append(torch.sqrt(flat))
            cls_all.append(nz[:, 1])
            inds_all.append(nz[:, 0] + start)
            start += n
        scores = torch.cat(scores_all) if scores_all else probs.new_zeros((0,))
        classes = torch.cat(cls_all) if cls_all else torch.zeros((0,), dtype=torch.int64, device=probs.device)
        inds = torch.cat(inds_all) if inds_all else torch.zeros((0,), dtype=torch.int64, device=probs.device)
        r = reg[i, inds]
        l_xy = locs[inds]
        boxes = torch.stack((l_xy[:, 0] - r[:, 0], l_xy[:, 1] - r[:, 1], l_xy[:, 0] + r[:, 2], l_xy[:, 1] + r[:, 3]), 1)
        keep = batched_nms(boxes, scores, classes, nms_thresh)  # indices sorted by descending score
        if 0 < post_nms_topk < keep.numel():
            # official: kthvalue(scores, n - topk + 1) as a threshold, ties with it kept
            kept = scores[keep]
            keep = keep[kept >= kept[post_nms_topk - 1]]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "classes": classes[keep].long(),
                        "loc_inds": inds[keep].long()})
    return results
