"""What each interchange format can hold, and the shared import / export machinery.

Policy (the same rule on import and on export; every case is counted in the one-line summary,
e.g. ``exported 80 images, 804 instances (3 holes flattened, 11 crowd regions skipped)``):

============  =====  =====  ==========  ==========  ==============================================
format        holes  crowd  multi-part  overlaps    what happens to what it cannot hold
============  =====  =====  ==========  ==========  ==============================================
YOLO-seg      no     no     no          yes         holes flattened (outer rings kept); crowd
                                                    regions skipped; a multi-part instance split
                                                    into one row (instance) per part
labelme       yes*   no     yes         yes         polygons as stored (parts joined by
                                                    ``group_id``); masks without a polygon as
                                                    ``mask`` shapes (*holes kept); crowd skipped;
                                                    point / line shapes skipped on import
VIA 2         no     no     no          yes         as YOLO-seg (a region is one polygon);
                                                    rect / circle / ellipse imported as polygons,
                                                    point / polyline regions skipped
mask PNGs     yes    yes**  yes         no          one id per pixel: larger instances painted
                                                    first (or in drawing order), the upper one
                                                    wins; covered pixels are lost, fully covered
                                                    instances skipped. **crowd regions are class
                                                    pixels with instance id 0 (Cityscapes)
============  =====  =====  ==========  ==========  ==============================================

Polygons are written exactly as stored (COCO ``[[x1, y1, ...], ...]`` absolute pixels); masks
without a polygon are traced with ``cv2.findContours`` (``RETR_CCOMP``: outer rings kept, holes
counted). Imported images are marked done (the files are taken as exhaustively labelled), the
annotations stored as source ``human``, review state ``accepted``; categories are matched by
name (new ones created). Every import is validated completely, then written in one
``project.transaction()``; a bad file raises :class:`~annotator.errors.AnnotatorError`
``<file>: <field>: <problem>`` with the project unchanged. Exports are built in a temporary
folder beside the destination and each finished file is moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project.images import ImageInfo, read_image_info

FORMATS = ("yolo", "labelme", "via", "masks")

# note key -> (singular, plural) wording of the summary line
NOTES = {
    "holes": ("hole flattened", "holes flattened"),
    "crowd": ("crowd region skipped", "crowd regions skipped"),
    "split": ("multi-part instance split into parts", "multi-part instances split into parts"),
    "nonarea": ("point/line shape skipped", "point/line shapes skipped"),
    "approx": ("circle/ellipse turned into a polygon", "circles/ellipses turned into polygons"),
    "covered": ("instance partly covered by another", "instances partly covered by others"),
    "hidden": ("instance fully covered skipped", "instances fully covered skipped"),
    "empty": ("empty mask skipped", "empty masks skipped"),
    "clipped": ("polygon clipped to the image", "polygons clipped to the image"),
    "crowd_class": ("crowd region kept as class pixels", "crowd regions kept as class pixels"),
}


@dataclass
class FormatReport:
    """What an import or export did: counts plus the policy notes (see :data:`NOTES`)."""

    action: str  # "imported" | "exported"
    format: str
    images: int = 0
    instances: int = 0
    new_images: int = 0
    new_categories: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "<file>: <reason>" of images left out

    def note(self, key: str, n: int = 1) -> None:
        if n:
            self.notes[key] = self.notes.get(key, 0) + int(n)

    def policy_line(self) -> str:
        """``"3 holes flattened, 1 crowd region skipped"`` (empty when nothing was lost)."""
        return ", ".join(f"{n} {NOTES[k][n != 1]}" for k, n in self.notes.items() if n)

    def line(self) -> str:
        """The one-line summary printed by the CLI."""
        text = f"{self.action} {self.images} images, {self.instances} instances ({self.format})"
        if self.action == "imported":
            text += f"; {self.new_images} new images, {self.new_categories} new categories"
        extra = self.policy_line()
        text += f"; {extra}" if extra else ""
        return text + skipped_line(self.skipped)


def skipped_line(skipped: list[str], shown: int = 5) -> str:
    """``"; 2 images skipped (unreadable): a.jpg: empty file, b.jpg: ..."`` or ``""``."""
    if not skipped:
        return ""
    more = f", and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"; {len(skipped)} image{'s' * (len(skipped) != 1)} skipped (unreadable): " + \
        ", ".join(skipped[:shown]) + more


def readable_images(project, images) -> tuple[list, list[str]]:
    """Split image records into those whose file can be read and ``"<file>: <reason>"`` lines
    for the others (marked unreadable, or the file is gone: a stat each, no decoding)."""
    keep, skipped = [], []
    for im in images:
        if im.error is not None:
            skipped.append(f"{im.file_name}: {im.error}")
        elif not os.path.isfile(os.path.join(project.root, im.file_name)):
            skipped.append(f"{im.file_name}: file not found")
        else:
            keep.append(im)
    return keep, skipped


class AnnotationsByImage:
    """``get(image_id, default)`` of the selected annotations of one image, read from the store
    when asked, so an export holds one image's annotations at a time (flat memory)."""

    def __init__(self, project, states, sources):
        self.project, self.states, self.sources = project, states, sources

    def get(self, image_id: int, default=None) -> list:
        return self.project.annotations(image_id, review_states=self.states, sources=self.sources) or (
            [] if default is None else default)


def fail(path, field_name: str, problem: str):
    """Raise the one-line ``<file>: <field>: <problem>`` user error."""
    raise AnnotatorError(f"{Path(path).name}: {field_name}: {problem}")


def mask_to_polygons(mask: np.ndarray) -> tuple[list[list[float]], int]:
    """Outer rings of a bool ``[H, W]`` mask as COCO polygon parts (absolute pixels, pixel
    centres) and the number of holes dropped (``cv2.findContours`` with ``RETR_CCOMP``).
    Rings with fewer than 3 points (1-2 pixel specks) are dropped."""
    contours, hierarchy = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE)
    parts, holes = [], 0
    for k, c in enumerate(contours):
        if hierarchy[0][k][3] != -1:
            holes += 1
        elif len(c) >= 3:
            parts.append([float(v) for v in c.reshape(-1)])
    return parts, holes


def polygon_parts(ann) -> tuple[list[list[float]], int]:
    """An annotation as polygon parts: the stored polygon exactly, else its traced mask."""
    if ann.polygon is not None:
        return [list(map(float, p)) for p in ann.polygon], 0
    return mask_to_polygons(masks.decode_rle(ann.rle))


# ----------------------------------------------------------------------------- export side
def export_selection(project, include: str, report: Optional[FormatReport] = None):
    """``(images, annotations by image, categories)`` exported with ``include`` (the
    :func:`annotator.io.coco.export_coco` rule: images with a selected annotation plus done
    images; annotations in drawing order, read per image: :class:`AnnotationsByImage`). Images
    whose file cannot be read are left out and listed in ``report.skipped``."""
    from annotator.io.coco import INCLUDE

    if include not in INCLUDE:
        raise AnnotatorError(f"include: {include!r} is not one of {sorted(INCLUDE)}")
    states, sources = INCLUDE[include]
    with_anns = project.annotated_image_ids(review_states=states, sources=sources)
    images = [im for im in project.images() if im.id in with_anns or im.done]
    images, skipped = readable_images(project, images)
    if report is not None:
        report.skipped += skipped
    return images, AnnotationsByImage(project, states, sources), project.categories()


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success move every file in it to the same
    place under ``out`` (``os.replace``, one file at a time, each complete), else delete it."""
    out = Path(os.path.abspath(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and not out.is_dir():
            raise AnnotatorError(f"{out}: --out: exists and is not a folder")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise AnnotatorError(f"{out}: cannot write: {exc.strerror or exc}") from exc
    try:
        yield tmp
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = out / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    except OSError as exc:
        raise AnnotatorError(f"{out}: cannot write: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, payload) -> None:
    """Write JSON (UTF-8, indented) creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` where the file system allows it, else copy it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------- import side
@dataclass
class PlannedAnnotation:
    """One validated instance: ``polygon`` (COCO parts, absolute pixels) or ``rle``."""

    category: str
    polygon: Optional[list] = None
    rle: Optional[dict] = None
    iscrowd: int = 0


@dataclass
class PlannedImage:
    target: object  # ImageRecord (already in the project) or ImageInfo (to register)
    annotations: list[PlannedAnnotation] = field(default_factory=list)


class ImageResolver:
    """Find the project image for a file: same path, else same content (sha256), else the file
    on disk becomes a new image (registered by :func:`apply_import`)."""

    def __init__(self, project):
        self.project = project
        images = project.images()
        self.by_path = {project.abs_path(i.file_name): i for i in images}
        self._by_sha: Optional[dict[str, object]] = None
        self.by_stem: dict[str, list] = {}
        for i in images:
            self.by_stem.setdefault(Path(i.file_name).stem, []).append(i)
        self.seen: dict[object, str] = {}

    @property
    def by_sha(self) -> dict[str, object]:
        """Project images by content hash, built on the first file not found by path (project
        images are hashed then, :meth:`Project.ensure_hashes`)."""
        if self._by_sha is None:
            self.project.ensure_hashes()
            self._by_sha = {}
            for i in self.project.images():
                if i.sha256 is not None:
                    self._by_sha.setdefault(i.sha256, i)
        return self._by_sha

    def resolve(self, path: Path, src, field_name: str):
        """ImageRecord or ImageInfo for image file ``path`` (``src`` / ``field_name`` name the
        reference in errors). Raises AnnotatorError for a missing / unreadable image or an
        image listed twice."""
        path = Path(os.path.normpath(os.path.abspath(path)))
        target = self.by_path.get(path)
        if target is None:
            if not path.is_file():
                fail(src, field_name, f"image file not found: {path}")
            try:
                info = read_image_info(path)
            except AnnotatorError as exc:
                fail(src, field_name, str(exc))
            target = self.by_sha.get(info.sha256, info)
        key = getattr(target, "id", None) or getattr(target, "path", None)
        if key in self.seen:
            fail(src, field_name, f"image {path.name} is already labelled by {self.seen[key]}")
        self.seen[key] = f"{Path(src).name}"
        return target


def size_of(target) -> tuple[int, int]:
    """``(height, width)`` of a planned image target."""
    return int(target.height), int(target.width)


def apply_import(project, plan: list[PlannedImage], report: FormatReport,
                 category_ids: Optional[dict[str, int]] = None, categories: Optional[list[str]] = None) -> FormatReport:
    """Write a validated plan in one transaction: categories by name (``categories`` first, in
    their order, then those the annotations use; new ones take the id from ``category_ids``
    when free), images registered or matched and marked done, annotations as human / accepted
    in the plan's order (drawing order)."""
    existing = {c.name: c.id for c in project.categories()}
    used_ids = set(existing.values())
    names = list(dict.fromkeys(list(categories or []) + [a.category for p in plan for a in p.annotations]))
    with project.transaction():
        cat_id = dict(existing)
        for name in names:
            if name in cat_id:
                continue
            want = (category_ids or {}).get(name)
            cat = project.add_category(name, id=want if want is not None and want not in used_ids else None)
            cat_id[name] = cat.id
            used_ids.add(cat.id)
            report.new_categories += 1
        for item in plan:
            if isinstance(item.target, ImageInfo):
                image_id = project.add_image_info(item.target, done=True)
                report.new_images += 1
            else:
                image_id = item.target.id
                project.set_done([image_id])
            for a in item.annotations:
                project.add_annotation(image_id, cat_id[a.category], rle=a.rle, polygon=a.polygon,
                                       iscrowd=a.iscrowd, source="human", review_state="accepted")
                report.instances += 1
            report.images += 1
    return report
