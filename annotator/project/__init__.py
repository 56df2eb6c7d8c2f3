"""The project store: :class:`Project` (SQLite, WAL, one transaction per change) and its records."""

from annotator.project import records
from annotator.project.records import AnnotationRecord, Category, ImageRecord, ModelVersion
from annotator.project.store import DB_NAME, Project

__all__ = ["Project", "records", "ImageRecord", "Category", "AnnotationRecord", "ModelVersion", "DB_NAME"]
