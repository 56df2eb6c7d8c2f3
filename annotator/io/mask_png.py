"""Instance-id and class-id mask PNGs import / export.

Layout::

    OUT/categories.json          [{"id": 1, "name": "person"}, ...]   (COCO category ids)
    OUT/instances/<stem>.png     per pixel: 0 = no instance, 1..N = the image's instances in
                                 painting order (bottom first)
    OUT/classes/<stem>.png       per pixel: 0 = background, else the COCO category id

``<stem>`` is the image file name without its extension. Both PNGs are single-channel,
``uint8``, or ``uint16`` where an id exceeds 255 (written and read with OpenCV). A pixel holds
one instance: larger instances are painted first (``order="area"``, or the drawing order) and
the upper one wins; covered pixels are lost and fully covered instances skipped (counted).
Crowd regions are class pixels with instance id 0 (the Cityscapes convention); on import every
class's instance-0 pixels become one crowd region. See :mod:`annotator.io.policy`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import cv2
import numpy as np
from pydantic import BaseModel, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.io.coco_schema import format_loc
from annotator.io.policy import (
    FormatReport, ImageResolver, PlannedAnnotation, PlannedImage, apply_import, export_selection, fail,
    size_of, staged_output, write_json,
)
from annotator.project.images import IMAGE_EXTENSIONS


class MaskCategory(BaseModel):
    id: Annotated[StrictInt, Field(gt=0, le=65535)]
    name: Annotated[StrictStr, Field(min_length=1)]


_CATEGORIES = TypeAdapter(list[MaskCategory])


def _read_categories(path: Path) -> dict[int, str]:
    try:
        cats = _CATEGORIES.validate_json(path.read_bytes())
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        problem = "required field is missing" if err["type"] == "missing" else err["msg"]
        fail(path, format_loc(err["loc"]), problem)
    out: dict[int, str] = {}
    for k, c in enumerate(cats):
        if c.id in out or c.name in out.values():
            fail(path, f"[{k}]", f"duplicate category id {c.id} or name {c.name!r}")
        out[c.id] = c.name
    return out


def _read_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        fail(path, "(file)", "missing or not a readable PNG")
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        fail(path, "(pixels)", f"expected a single-channel 8- or 16-bit PNG, got {arr.dtype} {arr.shape}")
    if arr.shape != shape:
        fail(path, "(size)", f"{arr.shape[1]}x{arr.shape[0]} but the image is {shape[1]}x{shape[0]} (w x h)")
    return arr


def _find_image(stem: str, resolver: ImageResolver, image_root: Optional[Path], src: Path):
    hits = resolver.by_stem.get(stem, [])
    if len(hits) > 1:
        fail(src, "(file name)", f"{len(hits)} project images are named {stem}.*: " +
             ", ".join(h.file_name for h in hits))
    if hits:
        return resolver.resolve(resolver.project.abs_path(hits[0].file_name), src, "(file name)")
    if image_root is not None:
        for ext in IMAGE_EXTENSIONS:
            for cand in (image_root / f"{stem}{ext}", image_root / f"{stem}{ext.upper()}"):
                if cand.is_file():
                    return resolver.resolve(cand, src, "(file name)")
    fail(src, "(file name)", f"no project image named {stem}.*" + (f" and none in {image_root}" if image_root else
                                                                    " (give image_root / --image-root)"))


def import_masks(project, path: Path, *, image_root: Optional[Path] = None) -> FormatReport:
    """Import a mask PNG folder (layout in the module docstring), all or nothing.

    Each ``instances/<stem>.png`` belongs to the project image named ``<stem>.*`` (else
    ``image_root/<stem>.<ext>``, registered). Every instance id is one instance (several parts
    allowed); its pixels must carry one class.

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` (missing class PNG, size mismatch, an
            instance with several classes, a class id not in categories.json); the project is
            then unchanged.
    """
    path = Path(os.path.abspath(path))
    if not (path / "instances").is_dir():
        raise AnnotatorError(f"{path}: instances/: folder not found (expected instances/, classes/, categories.json)")
    names = _read_categories(path / "categories.json")
    image_root = Path(os.path.abspath(image_root)) if image_root else None
    report = FormatReport("imported", "masks")
    resolver = ImageResolver(project)
    plan = []
    for inst_path in sorted((path / "instances").glob("*.png")):
        target = _find_image(inst_path.stem, resolver, image_root, inst_path)
        shape = size_of(target)
        inst = _read_png(inst_path, shape)
        cls_path = path / "classes" / inst_path.name
        cls = _read_png(cls_path, shape)
        bad = sorted(set(np.unique(cls).tolist()) - set(names) - {0})
        if bad:
            fail(cls_path, "(pixels)", f"class ids {bad[:5]} are not in categories.json")
        anns = []
        for c in np.unique(cls[(inst == 0) & (cls > 0)]).tolist():  # crowd regions (bottom)
            anns.append(PlannedAnnotation(names[c], rle=masks.encode_mask((inst == 0) & (cls == c)), iscrowd=1))
        for i in np.unique(inst).tolist():
            if i == 0:
                continue
            m = inst == i
            classes = np.unique(cls[m]).tolist()
            if len(classes) != 1 or classes[0] == 0:
                fail(cls_path, f"instance {i}", f"pixels carry classes {classes[:5]} (needs exactly one, not 0)")
            anns.append(PlannedAnnotation(names[classes[0]], rle=masks.encode_mask(m)))
        plan.append(PlannedImage(target, anns))
    if not plan:
        raise AnnotatorError(f"{path / 'instances'}: no .png files")
    return apply_import(project, plan, report, category_ids={v: k for k, v in names.items()},
                        categories=list(names.values()))


def _write_png(path: Path, arr: np.ndarray) -> None:
    dtype = np.uint8 if arr.max(initial=0) <= 255 else np.uint16
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), arr.astype(dtype)):
        raise AnnotatorError(f"{path}: cannot write PNG")


def export_masks(project, out_dir: Path, *, include: str = "accepted", order: str = "area") -> FormatReport:
    """Write instance-id and class-id PNGs per exported image and ``categories.json``.

    ``order``: which instance wins a pixel two share. ``"area"`` (default): larger instances
    are painted first, so smaller ones stay on top (what loses fewest instances); ``"drawing"``:
    the project's drawing order, as the canvas shows it. Crowd regions are always at the bottom.

    Raises:
        AnnotatorError: an unwritable ``out_dir``, two exported images with the same stem, a
            category id 0 or > 65535, or more than 65535 instances in one image.
    """
    if order not in ("area", "drawing"):
        raise AnnotatorError(f"order: {order!r} is not 'area' or 'drawing'")
    report = FormatReport("exported", "masks")
    images, by_image, categories = export_selection(project, include, report)
    bad = [c.id for c in categories if not 0 < c.id <= 65535]
    if bad:
        raise AnnotatorError(f"{project.db_path}: categories.id: {bad[0]} cannot be a class PNG value (1..65535)")
    used: set[str] = set()
    with staged_output(out_dir) as tmp:
        write_json(tmp / "categories.json", [{"id": c.id, "name": c.name} for c in categories])
        for im in images:
            stem = Path(im.file_name).stem
            if stem in used:
                raise AnnotatorError(f"{project.abs_path(im.file_name)}: file_name: another exported image has "
                                     f"the stem {stem!r}")
            used.add(stem)
            anns = by_image.get(im.id, [])  # drawing order; crowd at the bottom
            anns = sorted(anns, key=lambda a: (not a.iscrowd, -a.area if order == "area" else 0))
            if len(anns) > 65535:
                raise AnnotatorError(f"{im.file_name}: annotations: {len(anns)} instances exceed 65535")
            inst = np.zeros((im.height, im.width), dtype=np.int32)
            cls = np.zeros((im.height, im.width), dtype=np.int32)
            drawn = []
            for a in anns:
                m = masks.decode_rle(a.rle)
                cls[m] = a.category_id
                if a.iscrowd:
                    report.note("crowd_class")
                    inst[m] = 0
                else:
                    drawn.append((len(drawn) + 1, m))
                    inst[m] = len(drawn)
            for a in anns:
                if a.iscrowd:
                    kept = (inst == 0) & (cls == a.category_id) & masks.decode_rle(a.rle)
                    report.note("covered", int(kept.sum()) < masks.rle_area(a.rle))
            for k, m in drawn:
                visible = int((inst[m] == k).sum())
                if visible == 0:
                    report.note("hidden")
                    continue
                report.note("covered", visible < int(m.sum()))
                report.instances += 1
            _write_png(tmp / "instances" / f"{stem}.png", inst)
            _write_png(tmp / "classes" / f"{stem}.png", cls)
            report.images += 1
    return report
