"""COCO evaluation (pycocotools COCOeval)."""

from segcore.evaluation.coco import (
    METRIC_NAMES,
    coco_evaluate,
    coco_results_writer,
    d2_coco_results,
    evaluate_coco_objects,
    evaluate_predictions,
    predict_coco_results,
    records_to_coco,
)

__all__ = ["METRIC_NAMES", "coco_evaluate", "coco_results_writer", "d2_coco_results", "evaluate_coco_objects",
           "evaluate_predictions", "predict_coco_results", "records_to_coco"]
