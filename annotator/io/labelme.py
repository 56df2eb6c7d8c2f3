"""labelme JSON import / export (one JSON file per image, labelme 5.x layout).

A file holds ``imagePath`` (relative to the JSON file), ``imageHeight`` / ``imageWidth`` and
``shapes``: each ``{"label", "points": [[x, y], ...] (absolute pixels), "group_id", "shape_type",
"flags", "mask"}``. Shapes with the same ``label`` and a non-null ``group_id`` are the parts of
one instance. Area shapes: ``polygon``, ``rectangle`` (two corners), ``circle`` (centre, a point
on the rim; imported as a 64-point polygon) and ``mask`` (``points`` = the inclusive bbox corners
``[[x1, y1], [x2, y2]]``, ``mask`` = base64 PNG of the ``(y2 - y1 + 1) x (x2 - x1 + 1)`` crop).
``point`` / ``line`` / ``linestrip`` / ``points`` shapes have no area and are skipped (counted).

Export: stored polygons as ``polygon`` shapes exactly (several parts share a ``group_id``),
masks without a polygon as ``mask`` shapes (holes kept); crowd regions are skipped (see
:mod:`annotator.io.policy`). ``imageData`` is null: labelme reads the image from ``imagePath``.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from shapely.geometry import Point

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.io.coco_schema import format_loc
from annotator.io.policy import (
    FormatReport, ImageResolver, PlannedAnnotation, PlannedImage, apply_import, export_selection, fail,
    size_of, staged_output, write_json,
)

LABELME_VERSION = "5.5.0"
Number = Annotated[float, Field(strict=True)]
XY = Annotated[list[Number], Field(min_length=2, max_length=2)]
NON_AREA = {"point", "points", "line", "linestrip"}


class LabelmeShape(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    label: Annotated[StrictStr, Field(min_length=1)]
    points: list[XY]
    group_id: Optional[StrictInt] = None
    shape_type: Literal["polygon", "rectangle", "circle", "mask", "point", "points", "line", "linestrip"] = "polygon"
    mask: Optional[StrictStr] = None


class LabelmeFile(BaseModel):
    """A labelme JSON file (fields this importer reads; others are kept out of the way)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    shapes: list[LabelmeShape]
    imagePath: Annotated[StrictStr, Field(min_length=1)]
    imageHeight: Optional[Annotated[StrictInt, Field(gt=0)]] = None
    imageWidth: Optional[Annotated[StrictInt, Field(gt=0)]] = None


def _parse(path: Path) -> LabelmeFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return LabelmeFile.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err["type"] == "json_invalid":
            fail(path, "(top level)", f"not valid JSON: {err['ctx'].get('error', err['msg'])}")
        problem = "required field is missing" if err["type"] == "missing" else err["msg"]
        fail(path, format_loc(err["loc"]), problem)


def _decode_mask(shape: LabelmeShape, path: Path, where: str, height: int, width: int) -> np.ndarray:
    if not shape.mask or len(shape.points) != 2:
        fail(path, where, "a mask shape needs 'mask' (base64 PNG) and two bbox corners in 'points'")
    try:
        crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape.mask, validate=True))))
    except Exception as exc:  # binascii.Error, PIL.UnidentifiedImageError, ...
        fail(path, f"{where}.mask", f"not a base64 PNG: {exc}")
    if crop.ndim == 3:
        crop = crop[..., 0]
    x1, y1 = (int(round(v)) for v in shape.points[0])
    h, w = crop.shape
    if x1 < 0 or y1 < 0 or y1 + h > height or x1 + w > width:
        fail(path, f"{where}.mask", f"{w}x{h} crop at ({x1}, {y1}) lies outside the {width}x{height} image")
    full = np.zeros((height, width), dtype=bool)
    full[y1:y1 + h, x1:x1 + w] = crop.astype(bool)
    return full


def _shape_part(shape: LabelmeShape, path: Path, where: str, height: int, width: int, report: FormatReport):
    """One shape as a polygon part (flat list) or a bool mask."""
    pts = shape.points
    if shape.shape_type == "mask":
        return _decode_mask(shape, path, where, height, width)
    if shape.shape_type == "polygon":
        if len(pts) < 3:
            fail(path, f"{where}.points", f"polygon has {len(pts)} points (needs >= 3)")
        return [float(v) for p in pts for v in p]
    if len(pts) != 2:
        fail(path, f"{where}.points", f"a {shape.shape_type} needs 2 points, got {len(pts)}")
    (xa, ya), (xb, yb) = pts
    if shape.shape_type == "rectangle":
        return [xa, ya, xb, ya, xb, yb, xa, yb]
    report.note("approx")
    ring = Point(xa, ya).buffer(float(np.hypot(xb - xa, yb - ya)), quad_segs=16).exterior.coords[:-1]
    return [float(v) for p in ring for v in p]


def _read(path: Path, resolver: ImageResolver, report: FormatReport) -> PlannedImage:
    doc = _parse(path)
    image = Path(os.path.normpath(path.parent / doc.imagePath.replace("\\", "/")))
    target = resolver.resolve(image, path, "imagePath")
    height, width = size_of(target)
    if (doc.imageHeight, doc.imageWidth) not in ((None, None), (height, width)):
        fail(path, "imageHeight", f"file says {doc.imageWidth}x{doc.imageHeight} but {image.name} is "
             f"{width}x{height} (w x h)")
    groups: dict[object, list] = {}
    for k, shape in enumerate(doc.shapes):
        if shape.shape_type in NON_AREA:
            report.note("nonarea")
            continue
        key = (shape.label, shape.group_id) if shape.group_id is not None else k
        groups.setdefault(key, []).append(_shape_part(shape, path, f"shapes[{k}]", height, width, report))
    anns = []
    for key, parts in groups.items():
        label = key[0] if isinstance(key, tuple) else doc.shapes[key].label
        if all(isinstance(p, list) for p in parts):
            anns.append(PlannedAnnotation(label, polygon=parts))
            continue
        mask = np.zeros((height, width), dtype=bool)
        for p in parts:
            mask |= p if isinstance(p, np.ndarray) else masks.decode_rle(masks.polygon_to_rle([p], height, width))
        if not mask.any():
            report.note("empty")
            continue
        anns.append(PlannedAnnotation(label, rle=masks.encode_mask(mask)))
    return PlannedImage(target, anns)


def import_labelme(project, path: Path) -> FormatReport:
    """Import one labelme JSON file or every ``*.json`` in a folder (not recursive), all or
    nothing. Images (``imagePath``, relative to each JSON) are matched to project images by
    path, then content; others are registered.

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` (e.g. ``a.json: shapes[2].points: polygon
            has 2 points (needs >= 3)``); the project is then unchanged.
    """
    path = Path(os.path.abspath(path))
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise AnnotatorError(f"{path}: no labelme .json files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise AnnotatorError(f"{path}: no such file or folder")
    report = FormatReport("imported", "labelme")
    resolver = ImageResolver(project)
    plan = [_read(f, resolver, report) for f in files]
    return apply_import(project, plan, report)


def _b64_png(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(bool)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _shapes(anns, names: dict[int, str], report: FormatReport) -> list[dict]:
    shapes, group = [], 0
    for a in anns:
        if a.iscrowd:
            report.note("crowd")
            continue
        label = names[a.category_id]
        report.instances += 1
        if a.polygon is not None:
            gid = None
            if len(a.polygon) > 1:
                group += 1
                gid = group
            for part in a.polygon:
                shapes.append({"label": label, "points": [[part[i], part[i + 1]] for i in range(0, len(part), 2)],
                               "group_id": gid, "description": "", "shape_type": "polygon", "flags": {},
                               "mask": None})
            continue
        x, y, w, h = (int(v) for v in masks.rle_bbox(a.rle))
        if w == 0 or h == 0:
            report.note("empty")
            report.instances -= 1
            continue
        crop = masks.decode_rle(a.rle)[y:y + h, x:x + w]
        shapes.append({"label": label, "points": [[x, y], [x + w - 1, y + h - 1]], "group_id": None,
                       "description": "", "shape_type": "mask", "flags": {}, "mask": _b64_png(crop)})
    return shapes


def export_labelme(project, out_dir: Path, *, include: str = "accepted") -> FormatReport:
    """Write one labelme JSON per exported image into ``out_dir`` (``<image stem>.json``;
    ``imagePath`` relative to ``out_dir``). Export ``out_dir`` = the image folder to open the
    result in labelme beside the images.

    Raises:
        AnnotatorError: an unwritable ``out_dir`` or two exported images with the same stem.
    """
    report = FormatReport("exported", "labelme")
    images, by_image, categories = export_selection(project, include, report)
    names = {c.id: c.name for c in categories}
    out_dir = Path(os.path.abspath(out_dir))
    used: set[str] = set()
    with staged_output(out_dir) as tmp:
        for im in images:
            src = project.abs_path(im.file_name)
            if src.stem in used:
                raise AnnotatorError(f"{src}: file_name: another exported image has the stem {src.stem!r}")
            used.add(src.stem)
            write_json(tmp / f"{src.stem}.json", {
                "version": LABELME_VERSION, "flags": {}, "shapes": _shapes(by_image.get(im.id, []), names, report),
                "imagePath": Path(os.path.relpath(src, out_dir)).as_posix(), "imageData": None,
                "imageHeight": im.height, "imageWidth": im.width})
            report.images += 1
    return report
