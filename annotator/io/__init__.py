"""File formats: COCO instances import / export, COCO results export."""

from annotator.io.coco import ImportSummary, export_coco, export_results, import_coco

__all__ = ["ImportSummary", "import_coco", "export_coco", "export_results"]
