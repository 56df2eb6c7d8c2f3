"""Plain records returned by :class:`annotator.project.Project` (read-only snapshots of rows).

Formats: ``bbox`` is COCO ``[x, y, w, h]`` (XYWH absolute pixels); ``rle`` is a pycocotools
compressed RLE ``{"size": [h, w], "counts": str}``; ``polygon`` is a COCO polygon list
``[[x1, y1, ...], ...]`` or None; timestamps are ISO-8601 UTC strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

ReviewState = Literal["predicted", "accepted", "rejected", "edited"]
Source = Literal["human", "model"]
ImageState = Literal["unlabeled", "predicted", "in_progress", "done", "unreadable"]

REVIEW_STATES: tuple[str, ...] = ("predicted", "accepted", "rejected", "edited")
SOURCES: tuple[str, ...] = ("human", "model")
#: Image states (their SQL definition: ``annotator.project.schema.STATE_SQL``).
IMAGE_STATES: tuple[str, ...] = ("unlabeled", "predicted", "in_progress", "done", "unreadable")
#: States of images a person has worked on (pre-labelling "unreviewed" images leaves them alone).
REVIEWED_STATES: tuple[str, ...] = ("in_progress", "done")


@dataclass(frozen=True)
class ImageRecord:
    """One project image.

    ``file_name`` is relative to the project root (posix separators, may start with ``..``);
    ``coco_id`` is the id the image had in an imported COCO file (None for scanned images);
    ``sha256`` is None until the file is hashed (``Project.hash_images``); ``state`` is
    ``"unlabeled" | "predicted" | "in_progress" | "done" | "unreadable"`` (``Project.image_state``);
    ``error`` why the file could not be read the last time (None when it could).
    """

    id: int
    coco_id: Optional[int]
    file_name: str
    width: int
    height: int
    sha256: Optional[str]
    done: bool
    state: str
    error: Optional[str] = None


@dataclass(frozen=True)
class Category:
    """A category; ``id`` is the COCO category id (kept from imports), ``color`` is ``#rrggbb``."""

    id: int
    name: str
    supercategory: str = ""
    color: str = "#808080"


@dataclass(frozen=True)
class AnnotationRecord:
    """One instance annotation (see module docstring for the formats)."""

    id: int
    image_id: int
    category_id: int
    rle: dict
    polygon: Optional[list]
    bbox: list[float]
    area: float
    iscrowd: int
    source: str
    model_version: Optional[int]
    score: Optional[float]
    review_state: str
    z_order: int = 0
    created: str = ""
    updated: str = ""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model checkpoint.

    ``checkpoint`` is absolute (stored relative to the project root when inside it);
    ``categories`` is the checkpoint's ``[{"id", "name"}]`` list; ``metrics`` and
    ``data_snapshot`` are free JSON dicts (or None).
    """

    id: int
    arch: str
    checkpoint: Path
    parent: Optional[int]
    categories: list[dict]
    metrics: Optional[dict[str, Any]] = None
    data_snapshot: Optional[dict[str, Any]] = None
    created: str = ""

    @property
    def checkpoint_path(self) -> Path:
        """Same as ``checkpoint`` (absolute path of the checkpoint file)."""
        return self.checkpoint
