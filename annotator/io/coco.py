"""COCO instances import / export and COCO results export for a :class:`~annotator.project.Project`.

Formats: bbox COCO ``[x, y, w, h]`` (XYWH absolute pixels); segmentation a polygon list
``[[x1, y1, ...], ...]`` or an RLE ``{"size": [h, w], "counts": str | [int, ...]}``.
Every user error is an :class:`~annotator.errors.AnnotatorError` with one line
``<file>: <field>: <problem>`` (e.g. ``instances.json: annotations[12].segmentation[0]: polygon
has 2 points (needs >= 3)``), raised before anything is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

import annotator
from annotator import masks
from annotator.errors import AnnotatorError
from annotator.io.coco_schema import CocoRLE, parse_instances
from annotator.io.policy import readable_images
from annotator.project.images import ImageInfo, read_image_info

INCLUDE = {  # include= -> (review states, sources)
    "accepted": (("accepted", "edited"), None),
    "human": (("predicted", "accepted", "edited"), ("human",)),
    "all": (("predicted", "accepted", "edited"), None),
}


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_coco` did: counts from the file, and how many rows were new."""

    images: int
    new_images: int
    categories: int
    new_categories: int
    annotations: int
    crowd: int
    renumbered: int  # annotation ids already used in the project, given new ids
    #: the file's polygons were in pixel-centre coordinates and were moved by +0.5 px
    #: (``segcore.data.records.pixel_centre_polygons``)
    polygons_shifted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """The one-line summary the CLI prints and the app shows."""
        text = (f"imported {self.images} images ({self.new_images} new), {self.annotations} annotations "
                f"({self.crowd} crowd, {self.renumbered} renumbered), {self.categories} categories "
                f"({self.new_categories} new)")
        if self.polygons_shifted:
            text += "; polygons in pixel-centre coordinates (marching squares) moved by +0.5 px"
        return text


def _duplicates(values) -> Optional[tuple[int, object]]:
    seen = set()
    for k, v in enumerate(values):
        if v is not None and v in seen:
            return k, v
        seen.add(v)
    return None


def _find_file(file_name: str, roots: list[Path]) -> list[Path]:
    if os.path.isabs(file_name):
        return [Path(os.path.normpath(file_name))]
    return [Path(os.path.normpath(root / file_name)) for root in roots]


def import_coco(project, json_path: Path, *, image_root: Optional[Path] = None) -> ImportSummary:
    """Import a COCO instances JSON into ``project``, all or nothing.

    Images are matched to project images by path (``image_root / file_name``; by default the
    project's image folders, then the JSON's folder, then the project root) or registered when
    found on disk; COCO image ids are kept as ``coco_id`` and the images marked done. Category
    ids and names are kept (missing ones created); annotation ids are kept when free. Polygons
    (several parts), compressed and uncompressed RLE and crowd regions are accepted; the
    original bbox and area are kept. Polygons traced in pixel-centre coordinates (the whole file
    shows the marching-squares form of ``skimage.measure.find_contours``, as pycococreator writes
    them: :func:`segcore.data.records.pixel_centre_polygons`) are moved by +0.5 px to COCO's
    pixel-edge coordinates, so their masks cover the objects (``ImportSummary.polygons_shifted``).
    Annotations are stored as source ``"human"``, review state ``"accepted"``.

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` for a malformed file, unknown or
            duplicate ids, a polygon with < 3 points, an RLE whose size differs from its image,
            a negative bbox size, a category id whose name differs from the project's, or a
            missing / corrupt image file. The project is then unchanged.
    """
    json_path = Path(os.path.abspath(json_path))
    name = json_path.name

    def fail(field: str, problem: str):
        raise AnnotatorError(f"{name}: {field}: {problem}")

    coco = parse_instances(json_path)
    for key, values in (("images", [i.id for i in coco.images]), ("images", [i.file_name for i in coco.images]),
                        ("categories", [c.id for c in coco.categories]),
                        ("categories", [c.name for c in coco.categories]),
                        ("annotations", [a.id for a in coco.annotations])):
        dup = _duplicates(values)
        if dup:
            field = "file_name" if isinstance(dup[1], str) and key == "images" else (
                "name" if isinstance(dup[1], str) else "id")
            fail(f"{key}[{dup[0]}].{field}", f"duplicate {field} {dup[1]!r}")

    # categories: same id must mean the same name
    existing = {c.id: c for c in project.categories()}
    by_name = {c.name: c for c in existing.values()}
    new_cats = []
    for k, cat in enumerate(coco.categories):
        if cat.id in existing:
            if existing[cat.id].name != cat.name:
                fail(f"categories[{k}].name", f"{cat.name!r} but project category {cat.id} is named "
                     f"{existing[cat.id].name!r}")
        elif cat.name in by_name:
            fail(f"categories[{k}].id", f"{cat.id} but project category {cat.name!r} has id {by_name[cat.name].id}")
        else:
            new_cats.append(cat)

    # images: match by path, else register the file found on disk
    project_images = project.images()
    by_path = {project.abs_path(i.file_name): i for i in project_images}
    by_coco = {i.coco_id: i for i in project_images if i.coco_id is not None}
    if image_root is not None:
        roots = [Path(os.path.abspath(image_root))]
    else:
        roots = list(dict.fromkeys([p.parent for p in by_path] + [json_path.parent, project.root]))
    plan: list[tuple[int, object]] = []  # (coco id, ImageRecord | ImageInfo)
    sizes: dict[int, tuple[int, int]] = {}
    for k, im in enumerate(coco.images):
        candidates = _find_file(im.file_name, roots)
        target = next((by_path[c] for c in candidates if c in by_path), None)
        if target is not None:
            width, height, path = target.width, target.height, project.abs_path(target.file_name)
            if target.coco_id not in (None, im.id):
                fail(f"images[{k}].id", f"{im.id} but {im.file_name!r} is already in the project with COCO id "
                     f"{target.coco_id}")
        else:
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                fail(f"images[{k}].file_name", f"image file {im.file_name!r} not found in the project or under "
                     + ", ".join(str(r) for r in roots))
            try:
                target = read_image_info(path)
            except AnnotatorError as exc:
                fail(f"images[{k}].file_name", str(exc))
            width, height = target.width, target.height
        other = by_coco.get(im.id)
        if other is not None and (not hasattr(target, "id") or other.id != target.id):
            fail(f"images[{k}].id", f"COCO id {im.id} already used by project image {other.file_name!r}")
        if (im.width, im.height) != (width, height):
            fail(f"images[{k}].width", f"file says {im.width}x{im.height} but {path} is {width}x{height} (w x h)")
        plan.append((im.id, target))
        sizes[im.id] = (height, width)

    # annotations
    cat_ids = {c.id for c in coco.categories}
    used_ids = project.annotation_ids()
    rows, crowd, renumbered = [], 0, 0
    for j, ann in enumerate(coco.annotations):
        field = f"annotations[{j}]"
        if ann.image_id not in sizes:
            fail(f"{field}.image_id", f"unknown image id {ann.image_id}")
        if ann.category_id not in cat_ids:
            fail(f"{field}.category_id", f"unknown category id {ann.category_id}")
        height, width = sizes[ann.image_id]
        seg = ann.segmentation
        if isinstance(seg, CocoRLE):
            if list(seg.size) != [height, width]:
                fail(f"{field}.segmentation.size", f"{list(seg.size)} but image {ann.image_id} is "
                     f"[{height}, {width}] (height, width)")
            rle = {"size": list(seg.size), "counts": seg.counts}
            try:
                masks.check_rle(rle)
                rle = masks.to_rle(rle, height, width)
            except (ValueError, UnicodeEncodeError) as exc:
                fail(f"{field}.segmentation.counts", f"invalid RLE: {exc}")
            polygon = None
        else:
            if not seg:
                fail(f"{field}.segmentation", "empty polygon list")
            for k, part in enumerate(seg):
                if len(part) < 6:
                    fail(f"{field}.segmentation[{k}]", f"polygon has {len(part) // 2} points (needs >= 3)")
                if len(part) % 2:
                    fail(f"{field}.segmentation[{k}]", f"odd number of coordinates ({len(part)})")
            rle, polygon = None, [list(p) for p in seg]
        if ann.bbox is not None and (ann.bbox[2] < 0 or ann.bbox[3] < 0):
            fail(f"{field}.bbox", f"{ann.bbox} has a negative width or height")
        ann_id = ann.id if ann.id is not None and ann.id not in used_ids else None
        renumbered += ann.id is not None and ann_id is None
        crowd += ann.iscrowd
        rows.append([ann, rle, polygon, ann_id])
    from segcore.data.records import pixel_centre_polygons, shift_polygons

    shifted = pixel_centre_polygons(row[2] for row in rows if row[2] is not None)
    if shifted:  # marching-squares contours (pycococreator & co.): to COCO's pixel-edge coordinates
        for row in rows:
            row[2] = shift_polygons(row[2]) if row[2] is not None else None

    # write everything in one transaction
    with project.transaction():
        for cat in new_cats:
            project.add_category(cat.name, id=cat.id, supercategory=cat.supercategory)
        image_ids, new_images = {}, 0
        for coco_id, target in plan:
            if isinstance(target, ImageInfo):
                image_ids[coco_id] = project.add_image_info(target, coco_id=coco_id, done=True)
                new_images += 1
            else:
                if target.coco_id is None:
                    project.set_coco_id(target.id, coco_id)
                project.set_done([target.id])
                image_ids[coco_id] = target.id
        z_top: dict[int, int] = {}
        for row in rows:  # z_order follows the file's order within each image
            pid = image_ids[row[0].image_id]
            if pid not in z_top:
                z_top[pid] = project.z_range(pid)[1]
            z_top[pid] += 1
            row.append(z_top[pid])
        # kept ids first, so that new ids (max + 1) never take an id the file still needs
        for ann, rle, polygon, ann_id, z in sorted(rows, key=lambda r: r[3] is None):
            project.add_annotation(image_ids[ann.image_id], ann.category_id, rle=rle, polygon=polygon,
                                   iscrowd=ann.iscrowd, source="human", review_state="accepted", id=ann_id,
                                   bbox=ann.bbox, area=ann.area, z_order=z)
    return ImportSummary(images=len(plan), new_images=new_images, categories=len(coco.categories),
                         new_categories=len(new_cats), annotations=len(rows), crowd=crowd, renumbered=renumbered,
                         polygons_shifted=shifted)


def _coco_image_ids(project) -> dict[int, int]:
    """project image id -> exported COCO id (``coco_id`` kept, else the project id if free)."""
    images = project.images()
    used = {im.coco_id for im in images if im.coco_id is not None}
    out, next_free = {}, max(used | {im.id for im in images} | {0}) + 1
    for im in images:
        if im.coco_id is not None:
            out[im.id] = im.coco_id
        elif im.id not in used:
            out[im.id] = im.id
            used.add(im.id)
        else:
            out[im.id] = next_free
            next_free += 1
    return out


def _write_json_atomic(out_path: Path, head, items: Optional[Iterable] = None, key: str = "annotations") -> int:
    """Write JSON to a temporary file, then rename it to ``out_path``: ``head`` alone when
    ``items`` is None; else ``head`` (a dict) with ``items`` as its last member ``key``, or, with
    ``head=None``, a JSON list of ``items``. ``items`` is consumed one at a time (a generator
    keeps memory flat). Returns the number of items written."""
    out_path = Path(os.path.abspath(out_path))
    tmp, n = None, 0
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if items is None:
                fh.write(json.dumps(head))
            elif head is not None:
                fh.write(json.dumps(head)[:-1] + f", {json.dumps(key)}: [")
            else:
                fh.write("[")
            for item in items or ():
                fh.write(("," if n else "") + json.dumps(item))
                n += 1
            if items is not None:
                fh.write("]}" if head is not None else "]")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
        tmp = None
        return n
    except OSError as exc:
        raise AnnotatorError(f"{out_path}: cannot write: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def export_coco(project, out_path: Path, *, include: str = "accepted") -> dict:
    """Write a COCO instances JSON of the project's annotations, atomically.

    ``include``: ``"accepted"`` (accepted + edited), ``"human"`` (source human, not rejected) or
    ``"all"`` (every annotation but rejected ones, predictions included with a ``score``).
    Images exported: those with a selected annotation, plus images marked done (negatives).
    Image ids: the imported COCO id, else the project id; ``file_name`` relative to the
    images' deepest common folder (returned as ``image_root``). Segmentation: the original
    polygon when kept, else RLE with counts str; bbox (XYWH) and area as stored.

    Images whose file cannot be read (marked unreadable, or gone) are left out with their
    annotations and listed in ``skipped``. Annotations are streamed from the store to the file.

    Returns:
        ``{"images": n, "annotations": n, "categories": n, "image_root": str, "skipped": ["<file>:
        <reason>", ...]}``.

    Raises:
        AnnotatorError: unknown ``include`` or an unwritable ``out_path`` (no file is left).
    """
    if include not in INCLUDE:
        raise AnnotatorError(f"{out_path}: include: {include!r} is not one of {sorted(INCLUDE)}")
    states, sources = INCLUDE[include]
    with_anns = project.annotated_image_ids(review_states=states, sources=sources)
    images = [im for im in project.images() if im.id in with_anns or im.done]
    images, skipped = readable_images(project, images)
    keep = {im.id for im in images}
    ids = _coco_image_ids(project)
    # plain strings, not Path objects: pathlib interns every part of every name (100,000 images)
    paths = {im.id: os.path.normpath(os.path.join(project.root, im.file_name)) for im in images}
    root = Path(os.path.commonpath([os.path.dirname(p) for p in paths.values()])) if paths else project.root
    head = {
        "info": {"description": "exported by annotator", "version": annotator.__version__,
                 "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "licenses": [],
        "images": [{"id": ids[im.id], "file_name": os.path.relpath(paths[im.id], root).replace(os.sep, "/"),
                    "width": im.width, "height": im.height} for im in images],
        "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory}
                       for c in project.categories()],
    }

    def entries():
        for a in project.iter_annotations(review_states=states, sources=sources):
            if a.image_id not in keep:
                continue
            entry = {"id": a.id, "image_id": ids[a.image_id], "category_id": a.category_id,
                     "segmentation": a.polygon if a.polygon is not None else a.rle,
                     "area": a.area, "bbox": list(a.bbox), "iscrowd": a.iscrowd}
            if a.source == "model" and a.score is not None:
                entry["score"] = a.score
            yield entry

    n = _write_json_atomic(out_path, head, entries())
    return {"images": len(images), "annotations": n, "categories": len(head["categories"]),
            "image_root": str(root), "skipped": skipped}


def _ids_from_reference(project, gt_json: Path) -> dict[int, int]:
    """project image id -> image id of a reference COCO file, matched by file name.

    A reference ``file_name`` (e.g. ``000000397133.jpg`` or ``val2017/000000397133.jpg``) matches a
    project image whose absolute path ends with it (whole path components).
    """
    ref = parse_instances(gt_json)
    by_tail: dict[tuple, int] = {}
    for im in ref.images:
        by_tail[tuple(Path(im.file_name.replace("\\", "/")).parts)] = im.id
    out = {}
    for im in project.images():
        parts = project.abs_path(im.file_name).parts
        for k in range(len(parts)):
            hit = by_tail.get(tuple(parts[k:]))
            if hit is not None:
                out[im.id] = hit
                break
    return out


def export_results(project, out_path: Path, *, gt_json: Optional[Path] = None) -> int:
    """Write a COCO *results* JSON of the model predictions (source model, not rejected).

    Each entry: ``image_id``, ``category_id``, ``segmentation`` (RLE, counts str), ``bbox``
    (XYWH), ``score``. Image ids are those of :func:`export_coco`, or, with ``gt_json`` (a
    COCO instances file to evaluate against), that file's ids matched by file name; then
    predictions on images the file does not list are left out. Returns the number of entries.

    These are the project's annotations, not the model's raw detections, and they deliberately
    differ from what the official evaluators write (``segcore.evaluation.predict_coco_results``
    writes that, per family, from a model and images):

    * one score per annotation, the one the project stores: the model's instance score
      (``Prediction.scores``: the mask score of YOLACT++ / CenterMask), used for the box and the
      mask alike; the official evaluators give the box the class / box score (dbolya/yolact
      ``eval.py``, centermask2's ``COCOEvaluator``), so bbox AP of those two families can differ;
    * ``bbox`` is the stored annotation box, the tight box of the (possibly edited) mask, not the
      detector's box (nor YOLACT's truncated integer box);
    * annotations with an empty mask are not stored, so not exported (detectron2 writes them;
      they only add false positives), and an edited mask is exported as edited.

    Raises:
        AnnotatorError: an unwritable ``out_path`` (no file is left), or a malformed ``gt_json``
            / one that matches none of the predicted images.
    """
    states, sources = ("predicted", "accepted", "edited"), ("model",)
    if gt_json is None:
        ids = _coco_image_ids(project)
    else:
        ids = _ids_from_reference(project, Path(gt_json))
        predicted = project.annotated_image_ids(review_states=states, sources=sources)
        if predicted and not predicted & set(ids):
            raise AnnotatorError(f"{Path(gt_json).name}: images: no file_name matches a predicted project image")
    results = ({"image_id": ids[a.image_id], "category_id": a.category_id, "segmentation": a.rle,
                "bbox": list(a.bbox), "score": a.score if a.score is not None else 1.0}
               for a in project.iter_annotations(review_states=states, sources=sources) if a.image_id in ids)
    return _write_json_atomic(out_path, None, results)
