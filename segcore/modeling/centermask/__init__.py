"""CenterMask / CenterMask-Lite parts that sit on top of FCOS (Lee and Park, CVPR 2020).

- :mod:`.pooler`: scale-adaptive RoI level assignment (paper Eq. 2) and multi-level RoIAlign.
- :mod:`.mask_head`: SAG-Mask head (spatial attention module), Mask R-CNN mask targets,
  ``loss_mask``, mask pasting.
- :mod:`.maskiou_head`: MaskIoU head, IoU targets, ``loss_maskiou``, mask scores.
- :mod:`.roi_heads`: :class:`CenterMaskRoIHeads` (proposal sampling + the above; the model's
  ``roi_heads`` so official ``roi_heads.mask_head.*`` / ``roi_heads.maskiou_head.*`` keys load).
- :mod:`.model` (:class:`CenterMask`), :mod:`.loss` (``centermask_loss``), :mod:`.postprocess`
  (``centermask_postprocess``), :mod:`.builders` (registered ``centermask_*`` architectures and
  the ``"centermask"`` family).

The VoVNetV2 backbone is :mod:`segcore.modeling.vovnet`.
"""

from .mask_head import (SAGMaskHead, SpatialAttention, mask_rcnn_loss, mask_rcnn_targets, select_class_masks)
from .maskiou_head import MaskIoUHead, mask_scores, maskiou_loss, maskiou_targets
from .pooler import MultiLevelRoIAlign, assign_boxes_to_levels_by_ratio, assign_boxes_to_levels_fpn
from .roi_heads import CenterMaskRoIHeads, select_positive_proposals
from .model import CenterMask
from .loss import centermask_loss, centermask_proposals
from .postprocess import centermask_postprocess
from . import builders as _builders  # noqa: F401,E402  (registers the CenterMask architectures and family)
from .builders import (build_centermask, centermask_lite_v19, centermask_lite_v39, centermask_r50, centermask_tiny,
                       centermask_v39, centermask_v57, centermask_v99)

__all__ = [
    "SAGMaskHead", "SpatialAttention", "mask_rcnn_loss", "mask_rcnn_targets",
    "select_class_masks", "MaskIoUHead", "mask_scores", "maskiou_loss", "maskiou_targets",
    "MultiLevelRoIAlign", "assign_boxes_to_levels_by_ratio", "assign_boxes_to_levels_fpn",
    "CenterMaskRoIHeads", "select_positive_proposals", "CenterMask", "centermask_loss", "centermask_proposals",
    "centermask_postprocess", "build_centermask", "centermask_v39", "centermask_v57", "centermask_v99",
    "centermask_r50", "centermask_lite_v19", "centermask_lite_v39", "centermask_tiny",
]
