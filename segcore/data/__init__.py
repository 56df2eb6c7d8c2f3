"""Data pipeline: COCO records, the training dataset and its augmentation."""

from segcore.data.dataset import InstanceDataset, collate, decode_segmentation, read_image_rgb
from segcore.data.records import load_coco_records

__all__ = ["InstanceDataset", "collate", "decode_segmentation", "load_coco_records", "read_image_rgb"]
