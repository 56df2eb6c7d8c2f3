"""CenterMask / CenterMask-Lite parts that sit on top of FCOS (Lee and Park, CVPR 2020).

- :mod:`.pooler`: scale-adaptive RoI level assignment (paper Eq. 2) and multi-level RoIAlign.
- :mod:`.mask_head`: SAG-Mask head (spatial attention module), Mask R-CNN mask targets,
  ``loss_mask``, mask pasting.
- :mod:`.maskiou_head`: MaskIoU head, IoU targets, ``loss_maskiou``, mask scores.
- :mod:`.roi_heads`: :class:`CenterMaskRoIHeads` (proposal sampling + the above; the model's
  ``roi_heads`` so official ``roi_heads.mask_head.*`` / ``roi_heads.maskiou_head.*`` keys load).

The VoVNetV2 backbone is :mod:`segcore.modeling.vovnet`.
"""

from .mask_head import (SAGMaskHead, SpatialAttention, mask_rcnn_loss, mask_rcnn_targets, paste_masks_in_image,
                        select_class_masks)
from .maskiou_head import MaskIoUHead, mask_scores, maskiou_loss, maskiou_targets
from .pooler import MultiLevelRoIAlign, assign_boxes_to_levels_by_ratio, assign_boxes_to_levels_fpn
from .roi_heads import CenterMaskRoIHeads, select_positive_proposals

__all__ = [
    "SAGMaskHead", "SpatialAttention", "mask_rcnn_loss", "mask_rcnn_targets", "paste_masks_in_image",
    "select_class_masks", "MaskIoUHead", "mask_scores", "maskiou_loss", "maskiou_targets",
    "MultiLevelRoIAlign", "assign_boxes_to_levels_by_ratio", "assign_boxes_to_levels_fpn",
    "CenterMaskRoIHeads", "select_positive_proposals",
]
