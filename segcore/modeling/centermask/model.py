"""CenterMask network (Lee and Park, CVPR 2020; centermask2 ``centermask/modeling/centermask/``
on detectron2 ``GeneralizedRCNN``): FPN backbone -> FCOS proposal generator -> CenterMask RoI heads.

Modules and official key prefixes (identical to centermask2, so checkpoints load by name):
``backbone`` (:class:`segcore.modeling.fcos.D2FPN`: ``backbone.bottom_up.*`` = VoVNetV2
(:class:`segcore.modeling.vovnet.VoVNet`, keys with ``'/'``) or detectron2 ResNet,
``backbone.fpn_lateral{3,4,5}``, ``backbone.fpn_output{3,4,5}``, ``backbone.top_block.p6/p7``
(P6, P7 from P5)), ``proposal_generator.fcos_head.*`` (FCOS, GN towers, per-level scales) and
``roi_heads.{mask_head, maskiou_head}.*`` (:class:`.roi_heads.CenterMaskRoIHeads`: SAG-Mask,
MaskIoU). P3-P7 feed FCOS (paper section 3 "Implementation details"), P3-P5 the RoI heads.

Input contract (same as every segcore model): ``images`` ``[B, 3, H, W]`` float32 **RGB
0..255**, H and W multiples of 32 (the dataset / predictor resize the short side and pad with the
pixel mean). The model converts to detectron2's input itself: BGR, minus the mean
(103.530, 116.280, 123.675), std 1 (buffers ``pixel_mean`` / ``pixel_std``, not saved).

Outputs (dict): the FCOS outputs ``logits`` ``[B, L, K]``, ``bbox_reg`` ``[B, L, 4]`` (ltrb in
strides), ``ctrness`` ``[B, L]`` (logits), ``locations`` ``[L, 2]``, ``loc_strides`` ``[L]``,
``level_sizes`` (5 ``(H_l, W_l)``), ``strides`` ``[8, 16, 32, 64, 128]``; ``features``: list
``[P3, P4, P5]`` of ``[B, C, H / s, W / s]`` (s = 8, 16, 32), the RoI heads' input; and the RoI
heads' results, computed here so that every trainable module runs inside ``forward``:

* training (``model(images, targets)``): ``roi``, the mask branch on the sampled positive RoIs
  (:meth:`.roi_heads.CenterMaskRoIHeads.forward_train`: ``mask_logits``, ``gt_classes``,
  ``mask_targets``, ``maskiou``, ``maskiou_targets``). RoIs: FCOS detections of this forward,
  detached, with the training threshold 0.03, clipped to the image (:func:`centermask_proposals`:
  a segcore choice, centermask2 does not clip), plus the gt boxes.
* eval: ``detections``, per image in the FCOS order (descending box score): ``boxes`` ``[N, 4]``
  float32 XYXY network-input pixels, **not clipped** (centermask2 runs its RoI heads on the
  FCOS boxes as they are; only ``detector_postprocess`` clips them, :mod:`.postprocess`),
  ``classes`` ``[N]`` int64, ``scores`` ``[N]`` float32 FCOS box scores ``sqrt(cls x ctr)``,
  ``mask_scores`` ``[N]`` float32 (box score x predicted IoU of the class, centermask2
  ``mask_iou_inference``: not clamped, the MaskIoU head is unbounded; the box scores without a
  MaskIoU head) and ``mask_probs`` ``[N, 28, 28]`` float32 (paper section 3 "Inference": FCOS
  ``INFERENCE_TH_TEST`` = ``score_threshold``, top 1000 per level, NMS 0.6, the best
  ``max_detections`` (50, ties with the last kept as the official cut), then SAG-Mask and
  MaskIoU on them).
Symbols: B batch, L locations over P3-P7, K classes, C FPN channels (256; Lite 128).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fcos import D2FPN, FCOSProposalGenerator, fcos_detect
from .roi_heads import CenterMaskRoIHeads

from ..fcos.d2_input import D2_PIXEL_MEAN_BGR, D2InputMixin  # D2_PIXEL_MEAN_BGR re-exported

__all__ = ["CenterMask", "D2_PIXEL_MEAN_BGR", "centermask_proposals"]

#: detectron2 ``MODEL.PIXEL_MEAN`` (BGR, 0..255); std is 1 (centermask2 configs keep the defaults).


@torch.no_grad()
def centermask_proposals(outputs: dict, clip_to: list[tuple[int, int]] | None = None, *,
                         pre_nms_thresh: float = 0.03, pre_nms_topk: int = 1000, nms_thresh: float = 0.6,
                         post_nms_topk: int = 100) -> list[dict[str, torch.Tensor]]:
    """Detached FCOS detections per image (``THRESH_WITH_CTR`` False, the centermask2 default),
    the RoI heads' boxes.

    Args:
        outputs: the FCOS outputs of the forward.
        clip_to: None (inference): boxes as FCOS predicts them, **not clipped**, as centermask2
            gives them to its RoI heads (``centermask/modeling/fcos/fcos_outputs.py``
            ``predict_proposals``; only ``detector_postprocess`` clips them at the end). Per image
            ``(h, w)`` (training): boxes clipped to it and empty ones dropped, a segcore choice:
            centermask2 trains on unclipped proposals too, but on the 4-image overfit test
            (``tests/segcore/test_centermask_overfit.py``, seed 0) unclipped training RoIs gave
            segm AP50 0.70 against 0.90 with clipped ones (same inference).
        pre_nms_thresh, pre_nms_topk, nms_thresh, post_nms_topk: FCOS settings. Defaults: the
            training proposals (paper section 3: "positive score threshold 0.03 instead of 0.05
            since FCOS does not generate positive RoI samples well in initial training time";
            centermask2 ``POST_NMS_TOPK_TRAIN`` 100).

    Returns B dicts ``boxes`` ``[P_i, 4]`` float32 XYXY network-input pixels, ``scores`` ``[P_i]``
    (``sqrt(cls x ctr)``), ``classes`` ``[P_i]`` int64, in the FCOS order (descending score).
    """
    dets = fcos_detect({k: (v.detach() if torch.is_tensor(v) else v) for k, v in outputs.items()},
                       pre_nms_thresh=pre_nms_thresh, pre_nms_topk=pre_nms_topk, nms_thresh=nms_thresh,
                       post_nms_topk=post_nms_topk, thresh_with_ctr=False)
    out = []
    for i, d in enumerate(dets):
        b, keep = d["boxes"], slice(None)
        if clip_to is not None:
            h, w = clip_to[i]
            b = b.clone()
            b[:, 0::2] = b[:, 0::2].clamp(0, w)
            b[:, 1::2] = b[:, 1::2].clamp(0, h)
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        out.append({"boxes": b[keep], "scores": d["scores"][keep], "classes": d["classes"][keep]})
    return out


class CenterMask(D2InputMixin, nn.Module):
    """FCOS + SAG-Mask + MaskIoU. Build through the registry (``builders.py``).

    Args:
        backbone: :class:`segcore.modeling.fcos.D2FPN` with P6, P7 (``top_levels=2``).
        proposal_generator: :class:`segcore.modeling.fcos.FCOSProposalGenerator` over its 5 levels.
        roi_heads: :class:`.roi_heads.CenterMaskRoIHeads` with strides (8, 16, 32).
        sizes_of_interest, center_sample_radius: FCOS training targets (64/128/256/512, 1.5).
        max_detections: inference detections per image (``POST_NMS_TOPK_TEST`` 50).
        pre_nms_topk, nms_threshold: FCOS inference (1000, 0.6).
        proposal_threshold, proposals_per_image: training RoI proposals (0.03, 100).

    Raises ``ValueError`` from ``forward`` for a non-``[B, 3, H, W]`` input, H, W not multiples of
    32, or no targets in training mode.
    """

    def __init__(self, backbone: D2FPN, proposal_generator: FCOSProposalGenerator, roi_heads: CenterMaskRoIHeads,
                 *, sizes_of_interest=(64, 128, 256, 512), center_sample_radius: float = 1.5,
                 max_detections: int = 50, pre_nms_topk: int = 1000, nms_threshold: float = 0.6,
                 proposal_threshold: float = 0.03, proposals_per_image: int = 100):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.sizes_of_interest = tuple(int(s) for s in sizes_of_interest)
        self.center_sample_radius = float(center_sample_radius)
        self.max_detections = int(max_detections)
        self.pre_nms_topk = int(pre_nms_topk)
        self.nms_threshold = float(nms_threshold)
        self.proposal_threshold = float(proposal_threshold)
        self.proposals_per_image = int(proposals_per_image)
        self._init_d2_input()

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None, *,
                image_sizes: list[tuple[int, int]] | None = None, score_threshold: float = 0.05) -> dict:
        """The whole network (the model contract of :mod:`segcore.modeling.registry`).

        Args:
            images: ``[B, 3, H, W]`` float32 RGB 0..255, H and W multiples of 32.
            targets: training only, B dicts (``gt_boxes``, ``gt_classes``, ``gt_masks``,
                optionally ``input_hw``; :mod:`.loss`); required in training mode.
            image_sizes: B ``(h, w)`` of the resized images inside the padded input (default:
                the padded size; training: the targets' ``input_hw``): the image area of Eq. 2.
            score_threshold: eval: FCOS candidate threshold on the class probability (0.05).

        Returns:
            The dict of the module docstring.
        """
        self.check_input(images)
        feats = self.backbone(self.normalize(images))
        out = self.proposal_generator(feats)
        out.pop("bbox_towers")
        features = list(feats[:3])
        out["features"] = features
        padded = (int(images.shape[2]), int(images.shape[3]))
        if self.training:
            if targets is None:
                raise ValueError("CenterMask in training mode needs targets: model(images, targets)")
            if len(targets) != images.shape[0]:
                raise ValueError(f"CenterMask: {len(targets)} targets for a batch of {images.shape[0]}")
            sizes = [tuple(int(v) for v in t["input_hw"]) if "input_hw" in t else padded for t in targets]
            proposals = centermask_proposals(out, sizes, pre_nms_thresh=self.proposal_threshold,
                                             pre_nms_topk=self.pre_nms_topk, nms_thresh=self.nms_threshold,
                                             post_nms_topk=self.proposals_per_image)
            out["roi"] = self.roi_heads.forward_train(features, [p["boxes"] for p in proposals], targets, sizes)
            return out
        sizes = [tuple(int(v) for v in s) for s in image_sizes] if image_sizes is not None else \
            [padded] * images.shape[0]
        dets = centermask_proposals(out, pre_nms_thresh=score_threshold, pre_nms_topk=self.pre_nms_topk,
                                    nms_thresh=self.nms_threshold, post_nms_topk=self.max_detections)
        # one RoI-head pass for the detections of every image of the batch
        probs, mask_scores = self.roi_heads.predict(features, [d["boxes"] for d in dets],
                                                    [d["classes"] for d in dets], [d["scores"] for d in dets], sizes)
        out["detections"] = [{"boxes": d["boxes"].float(), "classes": d["classes"].long(),
                              "scores": d["scores"].float(), "mask_scores": ms.float(), "mask_probs": p.float()}
                             for d, p, ms in zip(dets, probs, mask_scores)]
        return out
