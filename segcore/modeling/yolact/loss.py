"""YOLACT training loss: prior matching, OHEM class loss, box loss, prototype mask loss, semantic loss.

Symbol legend: B batch, P priors, K classes (no background), k prototypes, N gt instances,
M crowd boxes, S input side, Hp x Wp prototype map, H3 x W3 P3 size.
Source: YOLACT paper section 3.3 (losses, weights 1 / 1.5 / 6.125), section 5 (semantic
segmentation loss) and official
``layers/modules/multibox_loss.py`` (``MultiBoxLoss``: ``ohem_conf_loss``, ``lincomb_mask_loss``,
``semantic_segmentation_loss``, YOLACT++ ``mask_iou_loss``), ``layers/box_utils.py`` (``match``),
SSD (Liu et al. 2016); YOLACT++ paper section 3.1 (fast mask re-scoring network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from ...ops.boxes import box_crop_mask, box_ioa, encode_boxes, point_form

__all__ = ["yolact_loss", "yolact_match", "YolactMatch", "match_priors", "mask_logits", "maskiou_samples"]


def match_priors(
    gt_boxes: Tensor,
    gt_classes: Tensor,
    crowd_boxes: Tensor,
    priors: Tensor,
    *,
    pos_iou_threshold: float = 0.5,
    neg_iou_threshold: float = 0.4,
    crowd_iou_threshold: float = 0.7,
) -> tuple[Tensor, Tensor]:
    """Assign a target to every prior (SSD-style matching with YOLACT's thresholds).

    A prior is positive when its best gt IoU is ``>= pos_iou_threshold``, background when it is
    ``< neg_iou_threshold``, ignored in between; every gt is forced onto its best prior (greedily,
    highest overlap first, one prior per gt). Non-positive priors whose intersection-over-prior-area
    with a crowd box exceeds ``crowd_iou_threshold`` are ignored.

    Args:
        gt_boxes: ``[N, 4]`` float relative XYXY.
        gt_classes: ``[N]`` int64 in ``0..K-1``.
        crowd_boxes: ``[M, 4]`` float relative XYXY (M may be 0).
        priors: ``[P, 4]`` float relative cxcywh.

    Returns:
        ``(conf_t, matched)``: ``[P]`` int64 class targets (-1 ignore, 0 background, ``c + 1``
        for class c) and ``[P]`` int64 index of the matched gt (meaningful where ``conf_t > 0``).

    Source: official ``layers/box_utils.py`` ``match`` (``use_prediction_matching=False``).
    """
    num_priors = priors.shape[0]
    device = priors.device
    prior_boxes = point_form(priors)
    if gt_boxes.shape[0] == 0:
        conf_t = torch.zeros(num_priors, dtype=torch.int64, device=device)
        matched = torch.zeros(num_priors, dtype=torch.int64, device=device)
    else:
        overlaps = box_iou(gt_boxes, prior_boxes)  # [N, P]
        best_gt_overlap, matched = overlaps.max(dim=0)  # [P]
        # force each gt onto its best prior, highest overlap first; when a prior is taken, the gts
        # that wanted it look again among the remaining priors (same result as the official loop)
        best_prior_overlap, best_prior = overlaps.max(dim=1)  # [N]
        done = torch.zeros(gt_boxes.shape[0], dtype=torch.bool, device=device)
        for _ in range(gt_boxes.shape[0]):
            j = int(best_prior_overlap.masked_fill(done, -3.0).argmax())
            i = int(best_prior[j])
            done[j] = True
            best_gt_overlap[i] = 2.0
            matched[i] = j
            overlaps[:, i] = -1.0
            stale = (best_prior == i) & ~done
            if bool(stale.any()):
                best_prior_overlap[stale], best_prior[stale] = overlaps[stale].max(dim=1)
        conf_t = gt_classes[matched] + 1
        conf_t[best_gt_overlap < pos_iou_threshold] = -1
        conf_t[best_gt_overlap < neg_iou_threshold] = 0
    if crowd_boxes.shape[0] > 0 and crowd_iou_threshold < 1:
        crowd_overlap = box_ioa(prior_boxes, crowd_boxes).max(dim=1).values  # [P]
        conf_t[(conf_t <= 0) & (crowd_overlap > crowd_iou_threshold)] = -1
    return conf_t, matched


def _input_size(targets: list[dict]) -> int | None:
    for t in targets:
        masks = t.get("gt_masks")
        if masks is not None and masks.dim() == 3:
            return int(masks.shape[-1])
    return None


def _ohem_conf_loss(conf: Tensor, conf_t: Tensor, negpos_ratio: int) -> Tensor:
    """Softmax CE over positives and the hardest ``negpos_ratio`` x #pos negatives per image.

    Negatives are ranked by ``logsumexp(conf) - conf[bg]`` (official ``ohem_conf_loss``).
    """
    pos = conf_t > 0
    with torch.no_grad():
        hardness = torch.logsumexp(conf, dim=-1) - conf[..., 0]  # [B, P]
        hardness[pos | (conf_t < 0)] = 0
        rank = hardness.argsort(dim=1, descending=True).argsort(dim=1)
        num_neg = (negpos_ratio * pos.sum(dim=1, keepdim=True)).clamp(max=conf_t.shape[1] - 1)
        neg = (rank < num_neg) & ~pos & (conf_t >= 0)
    selected = pos | neg
    return F.cross_entropy(conf[selected], conf_t[selected], reduction="sum")


@dataclass
class YolactMatch:
    """Training targets of a batch, matched to the priors (no gradient): what the forward of a
    YOLACT++ model and :func:`yolact_loss` share, so both see the same random mask sample.

    Attributes:
        conf_t: ``[B, P]`` int64 class targets (-1 ignore, 0 background, ``c + 1`` class c).
        matched: ``[B, P]`` int64 matched gt index (meaningful where ``conf_t > 0``).
        gt_rel: B ``[N_b, 4]`` float32 gt boxes, relative XYXY.
        samples: B dicts for the mask loss (None for an image without positives):
            ``pos_idx`` ``[n]`` int64 sampled positive priors (at most ``masks_to_train``),
            ``gt_idx`` ``[n]`` their gt, ``n_all`` (positives before sampling), ``classes``
            ``[n]`` int64 gt classes, ``mask_t`` ``[n, Hp, Wp]`` float32 {0, 1} gt masks at proto
            resolution (bilinear, > 0.5), ``inside`` ``[n, Hp, Wp]`` float32 {0, 1} gt box + 1 px,
            ``area`` ``[n]`` gt-box area in proto pixels (>= 1).
    """

    conf_t: Tensor
    matched: Tensor
    gt_rel: list[Tensor]
    samples: list[dict | None]


@torch.no_grad()
def yolact_match(outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], *, input_size: int | None = None,
                 pos_iou_threshold: float = 0.5, neg_iou_threshold: float = 0.4, crowd_iou_threshold: float = 0.7,
                 masks_to_train: int = 100) -> YolactMatch:
    """Match every image's gt to the priors (:func:`match_priors`) and sample the positives whose
    masks are trained (official ``MultiBoxLoss.forward`` + the ``masks_to_train`` sampling of
    ``lincomb_mask_loss``).

    Args:
        outputs: YOLACT raw outputs (``loc``, ``conf``, ``proto``, ``priors``).
        targets: B dicts as in :func:`yolact_loss`.
        input_size: S; taken from ``gt_masks.shape[-1]`` when None.

    Returns:
        :class:`YolactMatch`.

    Raises:
        ValueError: batch size mismatch, a class index outside ``0..K-1``, boxes / classes of
            different lengths, or boxes without a way to know S.
    """
    loc, priors, proto = outputs["loc"], outputs["priors"].float(), outputs["proto"]
    batch, num_priors = loc.shape[:2]
    num_classes = outputs["conf"].shape[-1] - 1
    hp, wp = proto.shape[1:3]
    if len(targets) != batch:
        raise ValueError(f"yolact_loss: {len(targets)} targets for a batch of {batch}")
    size = input_size if input_size is not None else _input_size(targets)
    device = loc.device
    conf_t = torch.zeros((batch, num_priors), dtype=torch.int64, device=device)
    matched = torch.zeros((batch, num_priors), dtype=torch.int64, device=device)
    gt_rel: list[Tensor] = []
    classes_b: list[Tensor] = []
    for b, t in enumerate(targets):
        boxes = t["gt_boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        classes = t["gt_classes"].to(device=device, dtype=torch.int64).reshape(-1)
        crowd = t.get("gt_crowd_boxes")
        crowd = torch.zeros((0, 4)) if crowd is None else crowd
        crowd = crowd.to(device=device, dtype=torch.float32).reshape(-1, 4)
        if boxes.shape[0] != classes.shape[0]:
            raise ValueError(
                f"yolact_loss: target {b} has {boxes.shape[0]} gt_boxes but {classes.shape[0]} gt_classes")
        if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
            raise ValueError(f"yolact_loss: target {b} gt_classes outside 0..{num_classes - 1}")
        if size is None and (boxes.shape[0] or crowd.shape[0]):
            raise ValueError(
                f"yolact_loss: target {b} has boxes but S is unknown (pass input_size or gt_masks [N, S, S])")
        scale = float(size) if size is not None else 1.0
        gt_rel.append(boxes / scale)
        classes_b.append(classes)
        conf_t[b], matched[b] = match_priors(
            boxes / scale, classes, crowd / scale, priors,
            pos_iou_threshold=pos_iou_threshold, neg_iou_threshold=neg_iou_threshold,
            crowd_iou_threshold=crowd_iou_threshold,
        )
    samples: list[dict | None] = []
    for b, t in enumerate(targets):
        pos_idx = (conf_t[b] > 0).nonzero().squeeze(1)
        if pos_idx.numel() == 0:
            samples.append(None)
            continue
        gt_idx = matched[b, pos_idx]
        n_all = pos_idx.numel()
        if n_all > masks_to_train:
            select = torch.randperm(n_all, device=device)[:masks_to_train]
            pos_idx, gt_idx = pos_idx[select], gt_idx[select]
        gt_masks = t["gt_masks"].to(device=device, dtype=torch.float32)
        down = F.interpolate(gt_masks[None], size=(hp, wp), mode="bilinear", align_corners=False)[0]
        boxes = gt_rel[b][gt_idx]
        area = ((boxes[:, 2] - boxes[:, 0]) * wp).clamp(min=1.0) * ((boxes[:, 3] - boxes[:, 1]) * hp).clamp(min=1.0)
        samples.append({"pos_idx": pos_idx, "gt_idx": gt_idx, "n_all": n_all, "classes": classes_b[b][gt_idx],
                        "mask_t": (down > 0.5).float()[gt_idx],
                        "inside": box_crop_mask(boxes, hp, wp, padding=1).float(), "area": area})
    return YolactMatch(conf_t=conf_t, matched=matched, gt_rel=gt_rel, samples=samples)


def mask_logits(proto: Tensor, coef: Tensor) -> Tensor:
    """Assembled mask logits ``proto @ coef^T`` of one image: ``[Hp, Wp, k]``, ``[n, k]`` -> ``[n, Hp, Wp]``."""
    return torch.einsum("hwk,nk->nhw", proto, coef)


def maskiou_samples(logits: Tensor, sample: dict, *, discard_mask_area: float = 25.0
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs and targets of the YOLACT++ re-scoring net for one image's sampled positives
    (official ``lincomb_mask_loss`` with ``use_maskiou``).

    Args:
        logits: ``[n, Hp, Wp]`` mask logits of ``sample["pos_idx"]`` (:func:`mask_logits`).
        sample: one entry of :attr:`YolactMatch.samples`.
        discard_mask_area: gt masks of at most this many proto pixels are left out (5 x 5).

    Returns:
        ``(masks [m, 1, Hp, Wp], iou_targets [m], classes [m])``: the predicted masks (sigmoid,
        zero outside the gt box + 1 px, not detached, as officially), the IoU of the mask
        thresholded at 0.5 with the gt mask (detached), and the gt classes.
    """
    keep = sample["mask_t"].sum(dim=(1, 2)) > discard_mask_area
    pred = torch.sigmoid(logits[keep]) * sample["inside"][keep]
    with torch.no_grad():
        mask_t = sample["mask_t"][keep]
        binary = (pred > 0.5).float()
        inter = (binary * mask_t).sum(dim=(1, 2))
        union = binary.sum(dim=(1, 2)) + mask_t.sum(dim=(1, 2)) - inter
    return pred[:, None], inter / union.clamp(min=1.0), sample["classes"][keep]


def yolact_loss(
    outputs: dict[str, Tensor],
    targets: list[dict[str, Tensor]],
    *,
    input_size: int | None = None,
    pos_iou_threshold: float = 0.5,
    neg_iou_threshold: float = 0.4,
    crowd_iou_threshold: float = 0.7,
    negpos_ratio: int = 3,
    conf_alpha: float = 1.0,
    bbox_alpha: float = 1.5,
    mask_alpha: float = 6.125,
    semantic_alpha: float = 1.0,
    masks_to_train: int = 100,
    maskiou_alpha: float = 25.0,
) -> dict[str, Tensor]:
    """YOLACT losses for a batch (official defaults). No trainable parameters: a function of the
    model's outputs and the targets.

    Args:
        outputs: training-mode output of :class:`~.model.Yolact` (``loc``, ``conf``,
            ``mask_coef``, ``proto``, ``priors``, ``segm``; any float dtype, computed in
            float32), plus, from ``model(images, targets)``, ``match`` (:class:`YolactMatch`:
            then the matching keyword arguments are not used, the model's own settings were) and
            for YOLACT++ ``maskiou`` (``{"pred" [D], "target" [D]}``).
        targets: B dicts with ``gt_boxes`` ``[N, 4]`` float XYXY pixels of the S x S input,
            ``gt_classes`` ``[N]`` int64 ``0..K-1``, ``gt_masks`` ``[N, S, S]`` uint8 {0, 1}
            (``[0, S, S]`` when N = 0) and optionally ``gt_crowd_boxes`` ``[M, 4]`` (pixels).
        input_size: S; taken from ``gt_masks.shape[-1]`` when None.

    Returns:
        dict of float32 scalars:
        ``loss_cls`` softmax CE with OHEM 3:1, x ``conf_alpha``, / #positives;
        ``loss_box`` SmoothL1 (sum) on SSD-encoded targets, x ``bbox_alpha``, / #positives;
        ``loss_mask`` BCE of ``sigmoid(proto @ coef^T)`` vs gt masks resized to Hp x Wp (bilinear,
        > 0.5), counted only inside the gt box (+1 px), each instance / its gt-box area in proto
        pixels, at most ``masks_to_train`` random positives per image (rescaled), x ``mask_alpha``,
        / #positives;
        ``loss_semantic`` BCE-with-logits (sum) of ``segm`` vs per-class gt masks at H3 x W3,
        / (H3 * W3) per image, x ``semantic_alpha``, / B (0 when ``segm`` is absent).
        #positives is clamped to >= 1, so a batch without gt gives finite losses (box, mask 0).
        YOLACT++ only (``outputs["maskiou"]`` present): ``loss_maskiou`` SmoothL1 (sum) between
        the re-scoring net's IoU for the gt class (computed in the model's forward on the trained
        predicted masks, :func:`maskiou_samples`) and the IoU of the mask thresholded at 0.5
        with the gt mask at proto resolution, x ``maskiou_alpha``, / #positives (official
        ``lincomb_mask_loss`` + ``mask_iou_loss``, ``maskiou_alpha 25``).

    Deviations from the official code (no effect on well-formed data): BCE is computed from
    logits and masked by the crop (official: BCE of the cropped sigmoid, which charges 100 per gt
    pixel outside the box+1 px); gt-box sides are clamped to >= 1 proto pixel in the mask
    normalisation (official: division by zero for empty boxes, which its pipeline drops).

    Raises:
        ValueError: batch size mismatch, a class index outside ``0..K-1``, or crowd boxes
            without a way to know S.
    """
    loc = outputs["loc"].float()
    conf = outputs["conf"].float()
    coef = outputs["mask_coef"].float()
    proto = outputs["proto"].float()
    priors = outputs["priors"].float()
    batch = loc.shape[0]
    num_classes = conf.shape[-1] - 1
    match = outputs.get("match")
    if match is None:
        match = yolact_match(outputs, targets, input_size=input_size, pos_iou_threshold=pos_iou_threshold,
                             neg_iou_threshold=neg_iou_threshold, crowd_iou_threshold=crowd_iou_threshold,
                             masks_to_train=masks_to_train)
    elif len(targets) != batch:
        raise ValueError(f"yolact_loss: {len(targets)} targets for a batch of {batch}")
    conf_t, matched, gt_rel = match.conf_t, match.matched, match.gt_rel
    device = loc.device

    pos = conf_t > 0
    num_pos = pos.sum().clamp(min=1).float()
    zero = coef.sum() * 0.0 + proto.sum() * 0.0  # keeps the graph connected when nothing is positive

    # box loss
    loc_t = torch.cat([encode_boxes(gt_rel[b][matched[b, pos[b]]], priors[pos[b]]) for b in range(batch)])
    loss_box = F.smooth_l1_loss(loc[pos], loc_t, reduction="sum") * bbox_alpha

    loss_cls = _ohem_conf_loss(conf, conf_t, negpos_ratio) * conf_alpha

    # mask loss on the prototypes
    loss_mask = zero
    for b, sample in enumerate(match.samples):
        if sample is None:
            continue
        logits = mask_logits(proto[b], coef[b, sample["pos_idx"]])
        bce = F.binary_cross_entropy_with_logits(logits, sample["mask_t"], reduction="none") * sample["inside"]
        loss_mask = loss_mask + (bce.sum(dim=(1, 2)) / sample["area"]).sum() * (
            sample["n_all"] / sample["pos_idx"].numel())
    loss_mask = loss_mask * mask_alpha

    # semantic segmentation loss on P3
    segm = outputs.get("segm")
    loss_semantic = zero
    if segm is not None:
        segm = segm.float()
        h3, w3 = segm.shape[-2:]
        for b, t in enumerate(targets):
            with torch.no_grad():
                seg_t = torch.zeros((num_classes, h3 * w3), device=device)
                classes = t["gt_classes"].to(device=device, dtype=torch.int64).reshape(-1)
                if classes.numel():
                    gt_masks = t["gt_masks"].to(device=device, dtype=torch.float32)
                    down = F.interpolate(gt_masks[None], size=(h3, w3), mode="bilinear", align_corners=False)[0]
                    onehot = F.one_hot(classes, num_classes).float()  # [N, K]
                    seg_t = (onehot.t() @ (down > 0.5).float().flatten(1)).clamp(max=1.0)
            loss_semantic = loss_semantic + F.binary_cross_entropy_with_logits(
                segm[b], seg_t.view(num_classes, h3, w3), reduction="sum") / (h3 * w3)
        loss_semantic = loss_semantic * semantic_alpha / batch

    losses = {
        "loss_cls": loss_cls / num_pos,
        "loss_box": loss_box / num_pos,
        "loss_mask": loss_mask / num_pos,
        "loss_semantic": loss_semantic,
    }
    if "maskiou" in outputs:
        pred_iou, iou_t = outputs["maskiou"]["pred"].float(), outputs["maskiou"]["target"].float()
        losses["loss_maskiou"] = F.smooth_l1_loss(pred_iou, iou_t, reduction="sum") * maskiou_alpha / num_pos
    return losses
