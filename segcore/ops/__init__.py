"""Tensor ops shared by segcore models: box coding, crowd overlap, mask crop, Fast NMS, mask paste."""

from .boxes import (
    BOX_VARIANCES,
    box_crop_mask,
    box_ioa,
    center_form,
    crop_masks,
    decode_boxes,
    encode_boxes,
    point_form,
)
from .masks import paste_masks
from .nms import fast_nms, fast_nms_keep

__all__ = [
    "BOX_VARIANCES",
    "box_crop_mask",
    "box_ioa",
    "center_form",
    "crop_masks",
    "decode_boxes",
    "encode_boxes",
    "point_form",
    "fast_nms",
    "fast_nms_keep",
    "paste_masks",
]
