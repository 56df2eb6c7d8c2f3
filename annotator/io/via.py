"""VGG Image Annotator (VIA 2) region JSON import / export.

The file maps ``<filename><size>`` to ``{"filename", "size" (bytes), "regions": [...],
"file_attributes"}`` (a whole VIA project, with ``_via_img_metadata``, is read too; VIA 1's
``regions`` dict is accepted). A region is ``{"shape_attributes": {...}, "region_attributes":
{...}}``; shapes in absolute pixels: ``polygon`` (``all_points_x``, ``all_points_y``), ``rect``
(``x``, ``y``, ``width``, ``height``), ``circle`` (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``,
``cy``, ``rx``, ``ry``, ``theta`` radians); circles and ellipses are imported as 64-point polygons
(shapely), ``point`` / ``polyline`` regions have no area and are skipped. The class is a region
attribute: ``class_attribute`` if given, else the first of ``class``, ``label``, ``name``,
``category``, ``type`` present, else the only attribute; a text value or a checkbox / radio dict
with one option set. ``filename`` is relative to the JSON's folder (or ``image_root``).

Export: one polygon region per part (``region_attributes: {"class": name}``): a region cannot
hold holes, crowd regions or several parts (see :mod:`annotator.io.policy`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError
from shapely import affinity
from shapely.geometry import Point

from annotator.errors import AnnotatorError
from annotator.io.coco import _write_json_atomic
from annotator.io.coco_schema import format_loc
from annotator.io.policy import (
    FormatReport, ImageResolver, PlannedAnnotation, PlannedImage, apply_import, export_selection, fail,
    polygon_parts,
)

Number = Annotated[float, Field(strict=True)]
NonNeg = Annotated[float, Field(strict=True, ge=0)]
CLASS_KEYS = ("class", "label", "name", "category", "type")


class _M(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class ViaPolygon(_M):
    name: Literal["polygon"]
    all_points_x: list[Number]
    all_points_y: list[Number]


class ViaRect(_M):
    name: Literal["rect"]
    x: Number
    y: Number
    width: NonNeg
    height: NonNeg


class ViaCircle(_M):
    name: Literal["circle"]
    cx: Number
    cy: Number
    r: NonNeg


class ViaEllipse(_M):
    name: Literal["ellipse"]
    cx: Number
    cy: Number
    rx: NonNeg
    ry: NonNeg
    theta: Number = 0.0


class ViaNonArea(_M):
    name: Literal["point", "polyline"]


class ViaRegion(_M):
    shape_attributes: Annotated[Union[ViaPolygon, ViaRect, ViaCircle, ViaEllipse, ViaNonArea],
                                Field(discriminator="name")]
    region_attributes: dict[str, Any] = {}


class ViaFile(_M):
    filename: Annotated[StrictStr, Field(min_length=1)]
    size: Optional[StrictInt] = None
    regions: Union[list[ViaRegion], dict[str, ViaRegion]] = []
    file_attributes: dict[str, Any] = {}


_ADAPTER = TypeAdapter(dict[str, ViaFile])


def _parse(path: Path) -> dict[str, ViaFile]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        fail(path, "(top level)", f"not valid JSON: {exc}")
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data, prefix = data["_via_img_metadata"], ("_via_img_metadata",)
    else:
        prefix = ()
    if not isinstance(data, dict):
        fail(path, "(top level)", "expected a JSON object {\"<filename><size>\": {filename, regions}, ...}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if p not in ("list[ViaRegion]", "dict[str,ViaRegion]"))
        problem = "required field is missing" if err["type"] == "missing" else err["msg"]
        fail(path, format_loc(prefix + loc), problem)


def _class_of(attrs: dict, class_attribute: Optional[str], path: Path, where: str) -> str:
    key = class_attribute
    if key is None:
        key = next((k for k in CLASS_KEYS if k in attrs), None)
        if key is None and len(attrs) == 1:
            key = next(iter(attrs))
    if key is None or key not in attrs:
        fail(path, f"{where}.region_attributes", f"no class attribute {key or ''!r} (attributes: "
             f"{sorted(attrs)}; give class_attribute / --class-attribute)")
    value = attrs[key]
    if isinstance(value, dict):
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if not isinstance(value, str) or not value.strip():
        fail(path, f"{where}.region_attributes.{key}", f"{attrs[key]!r} is not one class name")
    return value.strip()


def _part(shape, path: Path, where: str, report: FormatReport) -> Optional[list[float]]:
    if isinstance(shape, ViaPolygon):
        xs, ys = shape.all_points_x, shape.all_points_y
        if len(xs) != len(ys):
            fail(path, f"{where}.all_points_y", f"{len(ys)} values but all_points_x has {len(xs)}")
        if len(xs) < 3:
            fail(path, f"{where}.all_points_x", f"polygon has {len(xs)} points (needs >= 3)")
        return [float(v) for xy in zip(xs, ys) for v in xy]
    if isinstance(shape, ViaRect):
        x0, y0, x1, y1 = shape.x, shape.y, shape.x + shape.width, shape.y + shape.height
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    if isinstance(shape, (ViaCircle, ViaEllipse)):
        report.note("approx")
        rx, ry = (shape.r, shape.r) if isinstance(shape, ViaCircle) else (shape.rx, shape.ry)
        geom = affinity.scale(Point(shape.cx, shape.cy).buffer(1.0, quad_segs=16), rx, ry)
        if isinstance(shape, ViaEllipse) and shape.theta:
            geom = affinity.rotate(geom, shape.theta, origin=(shape.cx, shape.cy), use_radians=True)
        return [float(v) for p in geom.exterior.coords[:-1] for v in p]
    report.note("nonarea")
    return None


def import_via(project, json_path: Path, *, image_root: Optional[Path] = None,
               class_attribute: Optional[str] = None) -> FormatReport:
    """Import a VIA 2 region JSON, all or nothing (one instance per area region).

    Images (``filename`` under ``image_root``, default the JSON's folder) are matched to project
    images by path, then content; others are registered.

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` (e.g. ``via.json: a.jpg123.regions[0].
            region_attributes: no class attribute ...``); the project is then unchanged.
    """
    json_path = Path(os.path.abspath(json_path))
    if not json_path.is_file():
        raise AnnotatorError(f"{json_path}: no such file")
    files = _parse(json_path)
    root = Path(os.path.abspath(image_root)) if image_root else json_path.parent
    report = FormatReport("imported", "via")
    resolver = ImageResolver(project)
    plan = []
    for key, entry in files.items():
        if "://" in entry.filename:
            fail(json_path, f"{key}.filename", f"{entry.filename!r} is a URL; download the images first")
        target = resolver.resolve(root / entry.filename.replace("\\", "/"), json_path, f"{key}.filename")
        regions = entry.regions.items() if isinstance(entry.regions, dict) else enumerate(entry.regions)
        anns = []
        for k, region in regions:
            where = f"{key}.regions[{k}]"
            part = _part(region.shape_attributes, json_path, f"{where}.shape_attributes", report)
            if part is not None:
                label = _class_of(region.region_attributes, class_attribute, json_path, where)
                anns.append(PlannedAnnotation(label, polygon=[part]))
        plan.append(PlannedImage(target, anns))
    return apply_import(project, plan, report)


def export_via(project, out_path: Path, *, include: str = "accepted") -> FormatReport:
    """Write a VIA 2 region JSON (``filename`` relative to the JSON's folder), atomically.

    Raises:
        AnnotatorError: an unwritable ``out_path`` (no file is left).
    """
    out_path = Path(os.path.abspath(out_path))
    report = FormatReport("exported", "via")
    images, by_image, categories = export_selection(project, include, report)
    names = {c.id: c.name for c in categories}
    payload = {}
    for im in images:
        src = project.abs_path(im.file_name)
        regions = []
        for a in by_image.get(im.id, []):
            if a.iscrowd:
                report.note("crowd")
                continue
            parts, holes = polygon_parts(a)
            report.note("holes", holes)
            report.note("split", len(parts) > 1)
            report.note("empty", not parts)
            report.instances += len(parts)
            for part in parts:
                regions.append({"shape_attributes": {"name": "polygon", "all_points_x": part[0::2],
                                                     "all_points_y": part[1::2]},
                                "region_attributes": {"class": names[a.category_id]}})
        size = src.stat().st_size if src.is_file() else -1
        filename = Path(os.path.relpath(src, out_path.parent)).as_posix()
        payload[f"{filename}{size}"] = {"filename": filename, "size": size, "regions": regions, "file_attributes": {}}
        report.images += 1
    _write_json_atomic(out_path, payload)
    return report
