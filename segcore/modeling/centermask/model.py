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

Raw outputs (dict; same keys in train and eval mode): the FCOS outputs ``logits`` ``[B, L, K]``,
``bbox_reg`` ``[B, L, 4]`` (ltrb in strides), ``ctrness`` ``[B, L]`` (logits), ``locations``
``[L, 2]``, ``loc_strides`` ``[L]``, ``level_sizes`` (5 ``(H_l, W_l)``), ``strides``
``[8, 16, 32, 64, 128]``; and ``features``: list ``[P3, P4, P5]`` of ``[B, C, H / s, W / s]``
(s = 8, 16, 32), the RoI heads' input. The RoI heads run in the loss (``loss.py``) and the
post-processing (``postprocess.py``), since they need the detections / targets.
Symbols: B batch, L locations over P3-P7, K classes, C FPN channels (256; Lite 128).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fcos import D2FPN, FCOSProposalGenerator
from .roi_heads import CenterMaskRoIHeads

from ..fcos.d2_input import D2_PIXEL_MEAN_BGR, D2InputMixin  # D2_PIXEL_MEAN_BGR re-exported

__all__ = ["CenterMask", "D2_PIXEL_MEAN_BGR"]

#: detectron2 ``MODEL.PIXEL_MEAN`` (BGR, 0..255); std is 1 (centermask2 configs keep the defaults).


class CenterMask(D2InputMixin, nn.Module):
    """FCOS + SAG-Mask + MaskIoU. Build through the registry (``builders.py``).

    Args:
        backbone: :class:`segcore.modeling.fcos.D2FPN` with P6, P7 (``top_levels=2``).
        proposal_generator: :class:`segcore.modeling.fcos.FCOSProposalGenerator` over its 5 levels.
        roi_heads: :class:`.roi_heads.CenterMaskRoIHeads` with strides (8, 16, 32).

    Raises ``ValueError`` from ``forward`` for a non-``[B, 3, H, W]`` input or H, W not multiples of 32.
    """

    family = "centermask"

    def __init__(self, backbone: D2FPN, proposal_generator: FCOSProposalGenerator, roi_heads: CenterMaskRoIHeads):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self._init_d2_input()

    def forward(self, images: torch.Tensor) -> dict:
        self.check_input(images)
        feats = self.backbone(self.normalize(images))
        out = self.proposal_generator(feats)
        out.pop("bbox_towers")
        out["features"] = list(feats[:3])
        return out
