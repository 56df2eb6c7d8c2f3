"""YOLO-seg (Ultralytics) import / export.

Layout (what ``yolo segment train data=OUT/data.yaml`` reads)::

    OUT/data.yaml                 names: {0: person, 1: bicycle, ...}; train: images/train; val: images/val
    OUT/images/{train,val}/X.jpg  the images (hard links where possible, else copies)
    OUT/labels/{train,val}/X.txt  one row per instance: ``class x1 y1 x2 y2 ...``

Rows hold a class index (0..K-1, the order of ``names``; project categories sorted by COCO id)
and one polygon in **normalised xy** (pixel x / image width, y / height, 0..1). A row cannot hold
holes, crowd regions or several parts: see :mod:`annotator.io.policy` (holes flattened, crowd
skipped, parts split into rows). On import, coordinates are de-normalised and rounded to
1e-6 px; ``data.yaml`` is read with PyYAML (``path``, ``train`` / ``val`` / ``test`` as a folder,
a list of folders or a ``.txt`` list of images, ``names`` as a list or ``{index: name}``); label
files are found the Ultralytics way (the last ``images`` folder in the image path replaced by
``labels``, suffix ``.txt``); an image without a label file has no instances.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from annotator.errors import AnnotatorError
from annotator.io.coco_schema import format_loc
from annotator.io.policy import (
    FormatReport, ImageResolver, PlannedAnnotation, PlannedImage, apply_import, export_selection, fail,
    link_or_copy, polygon_parts, size_of, staged_output,
)
from annotator.project.images import scan_images

SPLITS = ("train", "val", "test")


class DataYaml(BaseModel):
    """The keys of ``data.yaml`` this importer reads (others are ignored)."""

    model_config = ConfigDict(extra="allow")
    path: Optional[StrictStr] = None
    train: Union[StrictStr, list[StrictStr], None] = None
    val: Union[StrictStr, list[StrictStr], None] = None
    test: Union[StrictStr, list[StrictStr], None] = None
    names: Union[list[StrictStr], dict[int, StrictStr]]


def _read_data_yaml(path: Path) -> DataYaml:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(top level)"
        fail(path, where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
    if not isinstance(data, dict):
        fail(path, "(top level)", "expected a mapping with names, train, val")
    try:
        model = DataYaml.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        problem = "required field is missing" if err["type"] == "missing" else err["msg"]
        fail(path, format_loc(err["loc"]), problem)
    if not any(getattr(model, s) for s in SPLITS):
        fail(path, "train", "no train / val / test images listed")
    return model


def _names(model: DataYaml, path: Path) -> list[str]:
    if isinstance(model.names, list):
        return list(model.names)
    keys = sorted(model.names)
    if keys != list(range(len(keys))):
        fail(path, "names", f"class indices {keys} are not 0..{len(keys) - 1}")
    return [model.names[k] for k in keys]


def _split_images(model: DataYaml, yaml_path: Path) -> list[tuple[Path, str]]:
    """(image path, field) of every image listed by the splits, each once."""
    base = yaml_path.parent
    if model.path:
        base = Path(model.path) if os.path.isabs(model.path) else base / model.path
    out: dict[Path, str] = {}
    for split in SPLITS:
        value = getattr(model, split)
        for k, entry in enumerate([value] if isinstance(value, str) else (value or [])):
            where = split if isinstance(value, str) else f"{split}[{k}]"
            p = Path(os.path.normpath(base / entry))
            if p.is_dir():
                files = scan_images(p, recursive=True)
            elif p.is_file() and p.suffix == ".txt":
                lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
                files = [Path(os.path.normpath(p.parent / ln)) for ln in lines]
            else:
                fail(yaml_path, where, f"{entry!r}: no such folder or .txt image list under {base}")
            for f in files:
                out.setdefault(f, where)
    return list(out.items())


def label_path(image: Path) -> Path:
    """Ultralytics' ``img2label_paths``: the last ``images`` folder becomes ``labels``, suffix .txt."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_labels(path: Path, names: list[str], height: int, width: int) -> list[PlannedAnnotation]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        fail(path, "(top level)", "not a text file")
    anns = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"line {n}"
        try:
            cls = int(tokens[0])
            coords = np.array([float(t) for t in tokens[1:]], dtype=np.float64)
        except ValueError:
            fail(path, where, f"expected 'class x1 y1 x2 y2 ...' numbers, got {line.strip()[:40]!r}")
        if not 0 <= cls < len(names):
            fail(path, f"{where}.class", f"{cls} is not a class index 0..{len(names) - 1} of data.yaml names")
        if len(coords) == 4:
            fail(path, where, "a detection box (class cx cy w h), not a segment (needs >= 3 points)")
        if len(coords) % 2 or len(coords) < 6:
            fail(path, where, f"{len(coords)} coordinates (needs an even count >= 6, i.e. >= 3 points)")
        if not np.all(np.isfinite(coords)) or coords.min() < 0 or coords.max() > 1:
            fail(path, where, "coordinates must be normalised xy in 0..1")
        coords[0::2] *= width
        coords[1::2] *= height
        anns.append(PlannedAnnotation(names[cls], polygon=[[round(float(v), 6) for v in coords]]))
    return anns


def import_yolo(project, path: Path) -> FormatReport:
    """Import a YOLO-seg dataset (``data.yaml`` or the folder holding it), all or nothing.

    Images are matched to project images by path, then content; others are registered.
    Returns the :class:`~annotator.io.policy.FormatReport` (``report.line()`` for the CLI).

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` (e.g. ``x.txt: line 3: 5 coordinates
            ...``); the project is then unchanged.
    """
    path = Path(os.path.abspath(path))
    if path.is_dir():
        found = [p for p in (path / "data.yaml", path / "dataset.yaml") if p.is_file()]
        if not found:
            raise AnnotatorError(f"{path}: no data.yaml in this folder")
        path = found[0]
    elif not path.is_file():
        raise AnnotatorError(f"{path}: no such file or folder")
    model = _read_data_yaml(path)
    names = _names(model, path)
    resolver = ImageResolver(project)
    plan = []
    for image, where in _split_images(model, path):
        target = resolver.resolve(image, path, where)
        labels = label_path(image)
        anns = _read_labels(labels, names, *size_of(target)) if labels.is_file() else []
        plan.append(PlannedImage(target, anns))
    return apply_import(project, plan, FormatReport("imported", "yolo"), categories=names)


def _val_images(images, hashes: dict[int, str], val_fraction: float) -> set[int]:
    """Deterministic validation split: images whose sha256-derived fraction is below ``val_fraction``."""
    if val_fraction <= 0 or len(images) < 2:
        return set()
    key = {im.id: int(hashlib.sha256(f"{hashes[im.id]}:{im.file_name}".encode()).hexdigest()[:8], 16) / 2**32
           for im in images}
    val = {i for i, f in key.items() if f < val_fraction}
    if not val:
        val = {min(key, key=key.get)}
    return val if len(val) < len(images) else val - {max(key, key=key.get)}


def export_yolo(project, out_dir: Path, *, include: str = "accepted", val_fraction: float = 0.1) -> FormatReport:
    """Write a YOLO-seg dataset under ``out_dir`` (layout in the module docstring).

    ``val_fraction`` of the images (chosen from their content hash, so stable across runs) go to
    ``val``; with 0 (or one image) ``val`` points at the train images. Reviewed images without
    annotations get an empty label file (background). Files already in ``out_dir`` with other
    names are left alone.

    Raises:
        AnnotatorError: an unwritable ``out_dir`` or two exported images with the same name.
    """
    report = FormatReport("exported", "yolo")
    images, by_image, categories = export_selection(project, include, report)
    project.ensure_hashes([im.id for im in images])  # the split is drawn from content hashes
    hashes = {i: r.sha256 for i, r in project.images_by_id([im.id for im in images]).items()}
    index = {c.id: k for k, c in enumerate(categories)}
    val = _val_images(images, hashes, val_fraction)
    used: set[str] = set()
    with staged_output(out_dir) as tmp:
        for im in images:
            split = "val" if im.id in val else "train"
            src = project.abs_path(im.file_name)
            name = f"{split}/{src.name}"
            if name in used:
                raise AnnotatorError(f"{src}: file_name: another exported image is also named {src.name}")
            used.add(name)
            rows = []
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
                    xy = np.array(part, dtype=np.float64).reshape(-1, 2) / (im.width, im.height)
                    if xy.min() < 0 or xy.max() > 1:
                        report.note("clipped")
                        xy = xy.clip(0, 1)
                    rows.append(f"{index[a.category_id]} " + " ".join(format(v, ".10g") for v in xy.reshape(-1)))
            link_or_copy(src, tmp / "images" / name)
            label = tmp / "labels" / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
            report.images += 1
        data = {"train": "images/train", "val": "images/val" if val else "images/train",
                "names": {k: c.name for k, c in enumerate(categories)}}
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return report
