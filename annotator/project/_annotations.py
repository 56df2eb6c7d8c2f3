"""Annotation methods of :class:`annotator.project.Project` (a mixin; see ``store.py``).

Formats: bbox COCO ``[x, y, w, h]`` XYWH absolute pixels; rle pycocotools compressed RLE
``{"size": [h, w], "counts": str}`` (uncompressed ``counts`` lists are accepted on input);
polygon COCO ``[[x1, y1, ...], ...]`` absolute pixels.
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Optional, Sequence

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project.records import REVIEW_STATES, SOURCES, AnnotationRecord
from annotator.project.schema import now

ANN_COLS = ("id, image_id, category_id, rle, polygon, bbox_x, bbox_y, bbox_w, bbox_h, area, iscrowd, "
            "source, model_version, score, review_state, z_order, created, updated")


def annotation_from_row(row) -> AnnotationRecord:
    return AnnotationRecord(
        id=row[0], image_id=row[1], category_id=row[2], rle=json.loads(row[3]),
        polygon=json.loads(row[4]) if row[4] is not None else None, bbox=[row[5], row[6], row[7], row[8]],
        area=row[9], iscrowd=row[10], source=row[11], model_version=row[12], score=row[13],
        review_state=row[14], z_order=row[15], created=row[16], updated=row[17])


def _placeholders(values: Sequence) -> str:
    return ",".join("?" * len(values))


def _where(image_id: Optional[int] = None, review_states: Optional[Iterable[str]] = None,
           sources: Optional[Iterable[str]] = None) -> tuple[str, list]:
    """``(" WHERE ..." or "", args)`` selecting annotations of one image / states / sources."""
    where, args = [], []
    if image_id is not None:
        where.append("image_id = ?")
        args.append(int(image_id))
    for col, values in (("review_state", review_states), ("source", sources)):
        if values is not None:
            values = list(values)
            where.append(f"{col} IN ({_placeholders(values)})" if values else "0")
            args += values
    return (" WHERE " + " AND ".join(where) if where else ""), args


class AnnotationsMixin:
    """Reading and changing annotations; each mutating method is one transaction."""

    def _err(self, field: str, problem: str) -> AnnotatorError:
        return AnnotatorError(f"{self.db_path}: {field}: {problem}")

    def annotations(self, image_id: Optional[int] = None, *, review_states: Optional[Iterable[str]] = None,
                    sources: Optional[Iterable[str]] = None) -> list[AnnotationRecord]:
        """Annotations, optionally of one image and filtered by review state / source.

        Ordered by image id, z_order, id.
        """
        where, args = _where(image_id, review_states, sources)
        sql = f"SELECT {ANN_COLS} FROM annotations{where} ORDER BY image_id, z_order, id"
        return [annotation_from_row(r) for r in self._conn.execute(sql, args)]

    def annotated_image_ids(self, *, review_states: Optional[Iterable[str]] = None,
                            sources: Optional[Iterable[str]] = None) -> set[int]:
        """Ids of the images with at least one annotation in ``review_states`` / ``sources``."""
        where, args = _where(None, review_states, sources)
        return {r[0] for r in self._conn.execute(f"SELECT DISTINCT image_id FROM annotations{where}", args)}

    def iter_annotations(self, *, review_states: Optional[Iterable[str]] = None,
                         sources: Optional[Iterable[str]] = None):
        """Like :meth:`annotations` (all images), yielded one record at a time from the cursor
        (exports of 10^4 images with flat memory). Do not write to the project while iterating."""
        where, args = _where(None, review_states, sources)
        for row in self._conn.execute(f"SELECT {ANN_COLS} FROM annotations{where} ORDER BY image_id, z_order, id",
                                      args):
            yield annotation_from_row(row)

    def annotations_of_categories(self, category_ids: Iterable[int]) -> list[AnnotationRecord]:
        """Annotation rows of the given categories, any image; ordered by image id, z_order, id."""
        ids = [int(i) for i in category_ids]
        if not ids:
            return []
        sql = f"SELECT {ANN_COLS} FROM annotations WHERE category_id IN ({_placeholders(ids)})"
        return [annotation_from_row(r) for r in self._conn.execute(sql + " ORDER BY image_id, z_order, id", ids)]

    def annotation_ids(self) -> set[int]:
        """The ids of every annotation in the project."""
        return {int(r[0]) for r in self._conn.execute("SELECT id FROM annotations")}

    def annotation(self, ann_id: int) -> AnnotationRecord:
        """One annotation. Raises AnnotatorError when there is no such id."""
        row = self._conn.execute(f"SELECT {ANN_COLS} FROM annotations WHERE id = ?", (ann_id,)).fetchone()
        if row is None:
            raise self._err("annotations.id", f"no annotation {ann_id}")
        return annotation_from_row(row)

    def _ann_exists(self, ann_ids: Sequence[int]) -> None:
        for ann_id in ann_ids:
            if not self._conn.execute("SELECT 1 FROM annotations WHERE id = ?", (ann_id,)).fetchone():
                raise self._err("annotations.id", f"no annotation {ann_id}")

    def _mask(self, image_id: int, rle: Optional[dict], polygon: Optional[list]) -> tuple[dict, Optional[str]]:
        """Validated (compressed RLE, polygon JSON or None) for an image."""
        img = self.image(image_id)
        if polygon is not None:
            if not isinstance(polygon, list) or not polygon:
                raise self._err("annotations.polygon", "expected a list of [x1, y1, x2, y2, ...] parts")
            for k, part in enumerate(polygon):
                if len(part) % 2 or len(part) < 6:
                    raise self._err(f"annotations.polygon[{k}]",
                                    f"{len(part)} numbers (needs an even count >= 6, i.e. >= 3 points)")
                if not all(math.isfinite(float(v)) for v in part):
                    raise self._err(f"annotations.polygon[{k}]", "non-finite coordinate")
            polygon = [[float(v) for v in part] for part in polygon]
            if rle is None:
                rle = masks.polygon_to_rle(polygon, img.height, img.width)
        if rle is None:
            raise self._err("annotations.rle", "an annotation needs rle or polygon")
        if not masks.is_rle(rle):
            raise self._err("annotations.rle", "expected {'size': [h, w], 'counts': ...}")
        size = [int(v) for v in rle["size"]]
        if size != [img.height, img.width]:
            raise self._err("annotations.rle.size", f"mask size {size} differs from image {image_id} "
                            f"size [{img.height}, {img.width}] (height, width)")
        try:
            masks.check_rle(rle)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise self._err("annotations.rle.counts", str(exc)) from exc
        rle = masks.to_rle(rle, img.height, img.width)
        return rle, (json.dumps(polygon) if polygon is not None else None)

    def add_annotation(self, image_id: int, category_id: int, *, rle: Optional[dict] = None,
                       polygon: Optional[list] = None, iscrowd: int = 0, source: str = "human",
                       model_version: Optional[int] = None, score: Optional[float] = None,
                       review_state: str = "accepted", id: Optional[int] = None,
                       bbox: Optional[Sequence[float]] = None, area: Optional[float] = None,
                       z_order: Optional[int] = None) -> int:
        """Add one annotation; returns its id.

        The mask is ``rle`` or, when only ``polygon`` is given, the rasterised polygon (which
        is kept). ``bbox`` (XYWH) and ``area`` default to the mask's; ``z_order`` to the top.

        Raises:
            AnnotatorError: unknown image / category / model version, bad enum, mask size
                different from the image, bad polygon or bbox, or ``id`` already used.
        """
        if source not in SOURCES:
            raise self._err("annotations.source", f"{source!r} is not one of {SOURCES}")
        if review_state not in REVIEW_STATES:
            raise self._err("annotations.review_state", f"{review_state!r} is not one of {REVIEW_STATES}")
        if iscrowd not in (0, 1):
            raise self._err("annotations.iscrowd", f"{iscrowd!r} is not 0 or 1")
        if score is not None and not 0.0 <= float(score) <= 1.0:
            raise self._err("annotations.score", f"{score} is outside [0, 1]")
        with self.transaction():
            self._category_exists(category_id)
            if model_version is not None:
                self.model_version(model_version)
            rle, poly_json = self._mask(image_id, rle, polygon)
            bbox = [float(v) for v in bbox] if bbox is not None else masks.rle_bbox(rle)
            if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0 or not all(map(math.isfinite, bbox)):
                raise self._err("annotations.bbox", f"{bbox} is not [x, y, w, h] with w, h >= 0")
            area = float(area) if area is not None else float(masks.rle_area(rle))
            if id is not None and self._conn.execute("SELECT 1 FROM annotations WHERE id = ?", (id,)).fetchone():
                raise self._err("annotations.id", f"{id} already used")
            if z_order is None:
                z_order = (self._conn.execute("SELECT MAX(z_order) FROM annotations WHERE image_id = ?",
                                              (image_id,)).fetchone()[0] or 0) + 1
            ts = now()
            cur = self._conn.execute(
                f"INSERT INTO annotations({ANN_COLS}) VALUES ({_placeholders(ANN_COLS.split(','))})",
                (id, image_id, category_id, json.dumps(rle), poly_json, *bbox, area, iscrowd, source,
                 model_version, None if score is None else float(score), review_state, z_order, ts, ts))
            return cur.lastrowid

    def update_mask(self, ann_id: int, *, rle: Optional[dict] = None, polygon: Optional[list] = None,
                    review_state: str = "edited") -> None:
        """Replace an annotation's mask (bbox and area recomputed from it) and set its review state.

        Raises:
            AnnotatorError: no such annotation, bad mask (see :meth:`add_annotation`), bad state.
        """
        if review_state not in REVIEW_STATES:
            raise self._err("annotations.review_state", f"{review_state!r} is not one of {REVIEW_STATES}")
        with self.transaction():
            ann = self.annotation(ann_id)
            rle, poly_json = self._mask(ann.image_id, rle, polygon)
            self._conn.execute(
                "UPDATE annotations SET rle = ?, polygon = ?, bbox_x = ?, bbox_y = ?, bbox_w = ?, bbox_h = ?, "
                "area = ?, review_state = ?, updated = ? WHERE id = ?",
                (json.dumps(rle), poly_json, *masks.rle_bbox(rle), float(masks.rle_area(rle)), review_state,
                 now(), ann_id))

    def set_review_state(self, ann_ids: Iterable[int], state: str) -> None:
        """Set the review state of several annotations. Raises AnnotatorError on an unknown id/state."""
        ids = list(ann_ids)
        if state not in REVIEW_STATES:
            raise self._err("annotations.review_state", f"{state!r} is not one of {REVIEW_STATES}")
        with self.transaction():
            self._ann_exists(ids)
            ts = now()
            self._conn.executemany("UPDATE annotations SET review_state = ?, updated = ? WHERE id = ?",
                                   [(state, ts, i) for i in ids])

    def set_category(self, ann_id: int, category_id: int) -> None:
        """Change an annotation's category. Raises AnnotatorError on an unknown id."""
        with self.transaction():
            self._ann_exists([ann_id])
            self._category_exists(category_id)
            self._conn.execute("UPDATE annotations SET category_id = ?, updated = ? WHERE id = ?",
                               (category_id, now(), ann_id))

    def delete_annotations(self, ann_ids: Iterable[int]) -> None:
        """Delete annotations. Raises AnnotatorError on an unknown id (then nothing is deleted)."""
        ids = list(ann_ids)
        with self.transaction():
            self._ann_exists(ids)
            self._conn.executemany("DELETE FROM annotations WHERE id = ?", [(i,) for i in ids])

    def replace_predictions(self, image_id: int, predictions: list[dict], model_version: Optional[int]) -> int:
        """Replace an image's ``predicted`` annotations with new model predictions (one transaction).

        Each dict: ``category_id`` (project category id), ``rle`` (compressed RLE of the
        image's size), ``score`` in [0, 1], optional ``bbox`` (XYWH; default: the mask's).
        They are stored as source ``"model"``, review state ``"predicted"``. Human, accepted,
        rejected and edited annotations are untouched. Returns the number stored.

        Raises:
            AnnotatorError: unknown image / category / model version or a bad mask (nothing changes).
        """
        with self.transaction():
            self.image(image_id)
            self._conn.execute("DELETE FROM annotations WHERE image_id = ? AND review_state = 'predicted'",
                               (image_id,))
            for pred in predictions:
                self.add_annotation(image_id, int(pred["category_id"]), rle=pred["rle"], source="model",
                                    model_version=model_version, score=float(pred["score"]),
                                    review_state="predicted", bbox=pred.get("bbox"))
        return len(predictions)

    # ------------------------------------------------------------ undo / redo support
    def restore_annotations(self, records: Iterable[AnnotationRecord], *, remove_ids: Iterable[int] = ()) -> None:
        """Put annotation rows back exactly as in ``records`` (every column: id, mask JSON,
        provenance, z_order, timestamps; a row with the same id is replaced) and delete
        ``remove_ids``; one transaction. Used by undo / redo, so a restored mask has the
        byte-identical RLE it had.

        Raises:
            AnnotatorError: unknown image / category referenced by a record (nothing changes).
        """
        records, remove = list(records), [int(i) for i in remove_ids]
        with self.transaction():
            if remove:
                self._conn.executemany("DELETE FROM annotations WHERE id = ?", [(i,) for i in remove])
            for r in records:
                self.image(r.image_id)
                self._category_exists(r.category_id)
                self._conn.execute(
                    f"INSERT OR REPLACE INTO annotations({ANN_COLS}) VALUES ({_placeholders(ANN_COLS.split(','))})",
                    (int(r.id), int(r.image_id), int(r.category_id), json.dumps(r.rle),
                     None if r.polygon is None else json.dumps(r.polygon), *[float(v) for v in r.bbox],
                     float(r.area), int(r.iscrowd), r.source, r.model_version, r.score, r.review_state,
                     int(r.z_order), r.created, r.updated))

    def set_z_order(self, ann_id: int, z_order: int) -> None:
        """Set an annotation's drawing order (higher = drawn later, on top)."""
        with self.transaction():
            self._ann_exists([ann_id])
            self._conn.execute("UPDATE annotations SET z_order = ?, updated = ? WHERE id = ?",
                               (int(z_order), now(), int(ann_id)))

    def z_range(self, image_id: int) -> tuple[int, int]:
        """``(min z_order, max z_order)`` of an image's annotations, ``(0, 0)`` when it has none."""
        lo, hi = self._conn.execute("SELECT MIN(z_order), MAX(z_order) FROM annotations WHERE image_id = ?",
                                    (int(image_id),)).fetchone()
        return (int(lo or 0), int(hi or 0))
