"""COCO evaluation (pycocotools COCOeval)."""

from segcore.evaluation.coco import (
    METRIC_NAMES,
    coco_evaluate,
    evaluate_coco_objects,
    evaluate_predictions,
    records_to_coco,
)

__all__ = ["METRIC_NAMES", "coco_evaluate", "evaluate_coco_objects", "evaluate_predictions", "records_to_coco"]
