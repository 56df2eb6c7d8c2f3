"""Model-version and training-data methods of :class:`annotator.project.Project` (a mixin)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from annotator.project.records import ModelVersion
from annotator.project.schema import now

_MV_COLS = "id, arch, checkpoint, parent, categories, metrics, data_snapshot, created"


class ModelsMixin:
    """Registered checkpoints and the segcore training records of a project."""

    def _model_version(self, row) -> ModelVersion:
        ckpt = Path(row[2])
        if not ckpt.is_absolute():
            ckpt = Path(os.path.normpath(self.root / ckpt))
        loads = lambda v: json.loads(v) if v is not None else None  # noqa: E731
        return ModelVersion(id=row[0], arch=row[1], checkpoint=ckpt, parent=row[3], categories=json.loads(row[4]),
                            metrics=loads(row[5]), data_snapshot=loads(row[6]), created=row[7])

    def register_model_version(self, *, arch: str, checkpoint: Path, categories: list[dict],
                               parent: Optional[int] = None, metrics: Optional[dict] = None,
                               data_snapshot: Optional[dict] = None) -> int:
        """Record a checkpoint; returns the model version id.

        ``checkpoint`` is stored relative to the project root when it lies inside it;
        ``categories`` is the checkpoint's ``[{"id", "name"}]``; ``metrics`` / ``data_snapshot``
        are JSON-serialisable dicts.

        Raises:
            AnnotatorError: unknown ``parent``, empty ``arch``, or values that are not JSON.
        """
        if not arch:
            raise self._err("model_versions.arch", "empty architecture name")
        path = os.path.abspath(checkpoint)
        rel = self.relative_path(path)
        stored = rel if not rel.startswith("..") and not os.path.isabs(rel) else Path(path).as_posix()
        try:
            cats = json.dumps([{"id": int(c["id"]), "name": str(c["name"])} for c in categories])
            blobs = [json.dumps(v) if v is not None else None for v in (metrics, data_snapshot)]
        except (TypeError, ValueError, KeyError) as exc:
            raise self._err("model_versions", f"not JSON-serialisable: {exc}") from exc
        with self.transaction():
            if parent is not None:
                self.model_version(parent)
            cur = self._conn.execute(
                f"INSERT INTO model_versions({_MV_COLS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                (arch, stored, parent, cats, *blobs, now()))
            return cur.lastrowid

    def model_versions(self) -> list[ModelVersion]:
        """All model versions, oldest first."""
        rows = self._conn.execute(f"SELECT {_MV_COLS} FROM model_versions ORDER BY id")
        return [self._model_version(r) for r in rows]

    def model_version(self, id: int) -> ModelVersion:
        """One model version. Raises AnnotatorError when there is none with that id."""
        row = self._conn.execute(f"SELECT {_MV_COLS} FROM model_versions WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise self._err("model_versions.id", f"no model version {id}")
        return self._model_version(row)

    def training_records(self, review_states: Sequence[str] = ("accepted", "edited")) -> tuple[list[dict], list[dict]]:
        """segcore.data records and categories for training.

        Records (one per image with at least one annotation in ``review_states``)::

            {"file_name": absolute path str, "image_id": project image id, "height", "width",
             "annotations": [{"id": annotation id, "bbox": [x, y, w, h] (XYWH pixels), "category_id": COCO id,
                              "segmentation": polygon list if kept else RLE (counts str),
                              "iscrowd": 0 | 1}]}

        Categories: every project category as ``{"id", "name"}``, sorted by id.
        """
        by_image: dict[int, list[dict]] = {}
        for ann in self.annotations(review_states=list(review_states)):
            by_image.setdefault(ann.image_id, []).append({
                "id": ann.id, "bbox": list(ann.bbox), "category_id": ann.category_id,
                "segmentation": ann.polygon if ann.polygon is not None else ann.rle, "iscrowd": ann.iscrowd})
        records = []
        for img in self.images():
            if img.id in by_image:
                records.append({"file_name": str(self.abs_path(img.file_name)), "image_id": img.id,
                                "height": img.height, "width": img.width, "annotations": by_image[img.id]})
        categories = [{"id": c.id, "name": c.name} for c in self.categories()]
        return records, categories

    # ----------------------------------------------------------------- active version
    def active_model_version(self) -> Optional[int]:
        """The model version new training starts from and pre-labelling uses by default:
        ``meta.active_model_version`` when set (and still registered; ``0`` means "none on
        purpose": the versions there did not earn it, :meth:`set_no_active_model_version`), else
        the newest version, else None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'active_model_version'").fetchone()
        if row is not None and int(row[0]) == 0:
            return None
        if row is not None and self._conn.execute("SELECT 1 FROM model_versions WHERE id = ?",
                                                  (int(row[0]),)).fetchone():
            return int(row[0])
        row = self._conn.execute("SELECT MAX(id) FROM model_versions").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def set_active_model_version(self, version: Optional[int]) -> None:
        """Make ``version`` the active one (None: back to "the newest"). Raises AnnotatorError: unknown id."""
        with self.transaction():
            if version is None:
                self._conn.execute("DELETE FROM meta WHERE key = 'active_model_version'")
                return
            self.model_version(int(version))
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('active_model_version', ?)",
                               (str(int(version)),))

    def set_no_active_model_version(self) -> None:
        """No version is active, on purpose (the registered ones are offered, not used by default)."""
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('active_model_version', '0')")

    def delete_model_version(self, version: int, *, delete_checkpoint: bool = False) -> None:
        """Unregister a model version (children keep their row, ``parent`` becomes NULL; predictions
        keep their masks, ``model_version`` becomes NULL). ``delete_checkpoint`` also removes the
        file when it lies inside the project folder."""
        mv = self.model_version(int(version))
        with self.transaction():
            self._conn.execute("DELETE FROM model_versions WHERE id = ?", (int(version),))
        if delete_checkpoint:
            rel = self.relative_path(mv.checkpoint)
            if not rel.startswith("..") and not os.path.isabs(rel):
                Path(mv.checkpoint).unlink(missing_ok=True)

    # ----------------------------------------------------------------- train / validation split
    def image_splits(self) -> dict[int, str]:
        """``{image id: "train" | "val"}`` for every image assigned so far."""
        return {int(i): s for i, s in self._conn.execute("SELECT image_id, split FROM image_splits")}

    def assign_splits(self, image_ids: Sequence[int], *, val_fraction: float = 0.2, seed: int = 0) -> dict[int, str]:
        """Assign the images of ``image_ids`` not yet assigned to "train" or "val"; return the split of each.

        An image's draw is ``u = sha256(f"{seed}:{image sha256}")`` as a fraction in [0, 1). The
        new images with the smallest draws go to "val", as many as bring the validation images
        among ``image_ids`` to ``round(val_fraction x len(image_ids))`` (a threshold on the draw
        instead put 4 of 12 and 6 of 16 nuclei-he images in validation, a third of a small
        project's labels withheld from training); the rest to "train". Assignments are stored
        (``image_splits``) and never changed afterwards, so every later training round validates
        on the same images. With two or more images there is at least one of each split (when
        ``val_fraction > 0``): the new image with the smallest / largest draw is moved. One
        transaction.
        """
        if not 0.0 <= float(val_fraction) < 1.0:
            raise self._err("image_splits", f"val_fraction must be in [0, 1), got {val_fraction}")
        ids = [int(i) for i in image_ids]
        self.ensure_hashes(ids)  # registered images are hashed lazily; the draw needs the content hash
        with self.transaction():
            known = self.image_splits()
            new = []
            for i in ids:
                if i in known:
                    continue
                digest = hashlib.sha256(f"{int(seed)}:{self.image(i).sha256}".encode()).hexdigest()
                new.append((int(digest[:13], 16) / 16 ** 13, i))
            new.sort()
            want = max(0, round(float(val_fraction) * len(ids)) - sum(known[i] == "val" for i in ids if i in known))
            assigned = {i: ("val" if k < want else "train") for k, (_, i) in enumerate(new)}
            current = [known[i] for i in ids if i in known] + list(assigned.values())
            if new and val_fraction > 0 and len(current) >= 2:
                if "val" not in current:
                    assigned[new[0][1]] = "val"
                elif "train" not in current and len(new) >= 1:
                    assigned[new[-1][1]] = "train"
            stamp = now()
            self._conn.executemany("INSERT INTO image_splits(image_id, split, seed, assigned) VALUES (?, ?, ?, ?)",
                                   [(i, s, int(seed), stamp) for i, s in assigned.items()])
            known.update(assigned)
        return {i: known[i] for i in ids}
