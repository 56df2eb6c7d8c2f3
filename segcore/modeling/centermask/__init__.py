"""CenterMask / CenterMask-Lite parts that sit on top of FCOS (Lee and Park, CVPR 2020).

- :mod:`.pooler`: scale-adaptive RoI level assignment (paper Eq. 2) and multi-level RoIAlign.
- :mod:`.mask_head`: SAG-Mask head (spatial attention module), Mask R-CNN mask targets,
  ``loss_mask``, mask pasting.
- :mod:`.maskiou_head`: MaskIoU head, IoU targets, ``loss_maskiou``, mask scores.
- :mod:`.roi_heads`: :class:`CenterMaskRoIHeads` (proposal sampling + the above; the model's
  ``roi_heads`` so official ``roi_heads.mask_head.*`` / ``roi_heads.maskiou_head.*`` keys load).
- :mod:`.model` (:class:`CenterMask`: FCOS, proposals, RoI heads, all in ``forward``),
  :mod:`.loss` (``centermask_loss``), :mod:`.postprocess` (``centermask_postprocess``),
  :mod:`.builders` (registered ``centermask_*`` architectures), :mod:`.family` (the
  ``"centermask"`` :class:`~segcore.modeling.registry.Family`), :mod:`.importer`, :mod:`.box_prompt`.

The VoVNetV2 backbone is :mod:`segcore.modeling.vovnet`.
"""

from .mask_head import SAGMaskHead, SpatialAttention, mask_rcnn_loss, mask_rcnn_targets, select_class_masks
from .maskiou_head import MaskIoUHead, mask_scores, maskiou_loss, maskiou_targets
from .pooler import MultiLevelRoIAlign, assign_boxes_to_levels_by_ratio, assign_boxes_to_levels_fpn
from .roi_heads import CenterMaskRoIHeads, roi_losses, select_positive_proposals
from .model import CenterMask, centermask_proposals
from .loss import centermask_loss
from .postprocess import centermask_postprocess
from . import builders as _builders  # noqa: F401,E402  (registers the CenterMask architectures)
from .family import CENTERMASK_FAMILY
from .builders import (build_centermask, centermask_lite_v19, centermask_lite_v39, centermask_r50, centermask_tiny,
                       centermask_v39, centermask_v57, centermask_v99)

__all__ = [
    "SAGMaskHead", "SpatialAttention", "mask_rcnn_loss", "mask_rcnn_targets",
    "select_class_masks", "MaskIoUHead", "mask_scores", "maskiou_loss", "maskiou_targets",
    "MultiLevelRoIAlign", "assign_boxes_to_levels_by_ratio", "assign_boxes_to_levels_fpn",
    "CENTERMASK_FAMILY", "CenterMaskRoIHeads", "roi_losses", "select_positive_proposals", "CenterMask",
    "centermask_loss", "centermask_proposals",
    "centermask_postprocess", "build_centermask", "centermask_v39", "centermask_v57", "centermask_v99",
    "centermask_r50", "centermask_lite_v19", "centermask_lite_v39", "centermask_tiny",
]
