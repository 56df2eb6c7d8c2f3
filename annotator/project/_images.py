"""Image methods of :class:`annotator.project.Project` (a mixin; see ``store.py``).

Built for real folders: 100,000 images list, filter and page from the ``images`` table alone
(per-image annotation counters kept by triggers, ``schema.STATE_SQL``); registration reads only
the file headers and hashes later (:meth:`ImagesMixin.hash_images`, which also detects files
changed on disk); an image that cannot be read is marked (:meth:`ImagesMixin.mark_unreadable`,
state ``unreadable``) instead of stopping a batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from annotator.errors import AnnotatorError
from annotator.project import schema
from annotator.project.images import (
    ImageInfo, SkippedFile, _size_pil, file_sha256, read_image_info, read_image_infos, scan_images,
)
from annotator.project.records import IMAGE_STATES, ImageRecord

_IMAGE_COLS = f"id, coco_id, file_name, width, height, sha256, done, error, {schema.STATE_SQL}"
_CHUNK = 900  # ids per IN (...) query: below SQLite's default limit of 999 variables


def _image(row) -> ImageRecord:
    return ImageRecord(id=row[0], coco_id=row[1], file_name=row[2], width=row[3], height=row[4],
                       sha256=row[5], done=bool(row[6]), error=row[7], state=row[8])


@dataclass
class AddedImages:
    """What registering a folder did: ``added`` image count, ``skipped`` unreadable files."""

    added: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)


@dataclass
class FileCheck:
    """What :meth:`ImagesMixin.hash_images` found: ``hashed`` (ids hashed now), ``changed``
    (content differs from the stored hash), ``unreadable`` (``{id: reason}``)."""

    hashed: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)


class ImagesMixin:
    """Registering, listing and checking image files; each mutating method is one transaction."""

    # ----------------------------------------------------------------- paths
    def relative_path(self, path: Path) -> str:
        """``path`` relative to the project root, posix separators (may contain ``..``)."""
        path = os.path.abspath(path)
        try:
            rel = os.path.relpath(path, self.root)
        except ValueError:  # another drive on Windows
            rel = path
        return Path(rel).as_posix()

    def abs_path(self, file_name: str) -> Path:
        """Absolute, normalised path of a project-relative ``file_name``."""
        return Path(os.path.normpath(self.root / file_name))

    # ----------------------------------------------------------------- registering
    def _insert_images(self, infos: Sequence[ImageInfo], coco_ids: Optional[Sequence] = None,
                       done: bool = False) -> list[int]:
        now = schema.now()
        first = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0]
        self._conn.executemany(
            "INSERT INTO images(coco_id, file_name, width, height, sha256, done, added, file_size, mtime_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(coco_ids[k] if coco_ids else None, self.relative_path(info.path), info.width, info.height,
              info.sha256, int(done), now, info.file_size, info.mtime_ns) for k, info in enumerate(infos)])
        return [r[0] for r in self._conn.execute("SELECT id FROM images WHERE id > ? ORDER BY id", (first,))]

    def add_images_from(self, dir: Path, *, recursive: bool = False) -> AddedImages:
        """Register the jpg/png/bmp/tif images of ``dir`` not yet in the project, from their
        headers (no hash yet). Unreadable, empty or non-image files are skipped and listed.

        Raises:
            AnnotatorError: ``dir`` is not a readable folder (nothing is added).
        """
        known = {self.abs_path(name) for (name,) in self._conn.execute("SELECT file_name FROM images")}
        infos, skipped = read_image_infos(p for p in scan_images(dir, recursive=recursive) if p not in known)
        with self.transaction():
            self._insert_images(infos)
        return AddedImages(added=len(infos), skipped=skipped)

    def add_image(self, path: Path, *, coco_id: Optional[int] = None, done: bool = False) -> int:
        """Register one image file (hashed); returns its project id.

        Raises:
            AnnotatorError: unreadable image, already registered, or ``coco_id`` already used.
        """
        info = read_image_info(path)
        if self.image_by_path(path) is not None:
            raise AnnotatorError(f"{path}: image already in the project")
        if coco_id is not None and self._conn.execute(
                "SELECT 1 FROM images WHERE coco_id = ?", (coco_id,)).fetchone():
            raise AnnotatorError(f"{path}: coco_id {coco_id} already used by another image")
        with self.transaction():
            return self._insert_images([info], [coco_id], done)[0]

    # ----------------------------------------------------------------- reading
    def add_image_info(self, info: ImageInfo, *, coco_id: Optional[int] = None, done: bool = False) -> int:
        """Register an image whose :class:`ImageInfo` (size, sha256) the caller already read, e.g.
        an importer that validated the file first; returns its project id. Joins the caller's
        transaction (``project.transaction()``) when there is one. Does not check for duplicates:
        the importers check paths and COCO ids before writing."""
        with self.transaction():
            return self._insert_images([info], [coco_id], done)[0]

    def images(self) -> list[ImageRecord]:
        """All images, by id, each with its ``state``."""
        return [_image(r) for r in self._conn.execute(f"SELECT {_IMAGE_COLS} FROM images ORDER BY id")]

    def image(self, image_id: int) -> ImageRecord:
        """One image. Raises AnnotatorError when there is no such image id."""
        row = self._conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise AnnotatorError(f"{self.db_path}: images.id: no image {image_id}")
        return _image(row)

    def images_by_id(self, image_ids: Iterable[int]) -> dict[int, ImageRecord]:
        """``{id: record}`` for the given ids (unknown ids are left out); one query per 900 ids."""
        ids = [int(i) for i in image_ids]
        out: dict[int, ImageRecord] = {}
        for k in range(0, len(ids), _CHUNK):
            chunk = ids[k:k + _CHUNK]
            sql = f"SELECT {_IMAGE_COLS} FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], _image(r)) for r in self._conn.execute(sql, chunk))
        return out

    def image_ids(self, state: Optional[str] = None) -> list[int]:
        """Ids of the images (in ``state`` when given), ascending: the list behind the image list.

        Raises:
            AnnotatorError: ``state`` is not one of ``IMAGE_STATES``.
        """
        if state is None:
            return [r[0] for r in self._conn.execute("SELECT id FROM images ORDER BY id")]
        if state not in IMAGE_STATES:
            raise AnnotatorError(f"{self.db_path}: images.state: {state!r} is not one of {IMAGE_STATES}")
        sql = f"SELECT id FROM images WHERE {schema.STATE_SQL} = ? ORDER BY id"
        return [r[0] for r in self._conn.execute(sql, (state,))]

    def image_state_counts(self) -> dict[str, int]:
        """``{state: number of images}`` for every state in ``IMAGE_STATES`` (zeros included)."""
        counts = dict.fromkeys(IMAGE_STATES, 0)
        counts.update(self._conn.execute(f"SELECT {schema.STATE_SQL} AS s, COUNT(*) FROM images GROUP BY s"))
        return counts

    def next_image_id(self, after: Optional[int], *, exclude_states: Sequence[str] = ("done",),
                      wrap: bool = True) -> Optional[int]:
        """The first image id after ``after`` (ascending; wrapping to the start when ``wrap``)
        whose state is not in ``exclude_states``, or None. An indexed scan, not a list."""
        marks = ",".join("?" * len(exclude_states))
        sql = f"SELECT id FROM images WHERE id > ? AND {schema.STATE_SQL} NOT IN ({marks}) ORDER BY id LIMIT 1"
        row = self._conn.execute(sql, (int(after or 0), *exclude_states)).fetchone()
        if row is None and wrap and after is not None:
            row = self._conn.execute(sql, (0, *exclude_states)).fetchone()
        return None if row is None else int(row[0])

    def image_by_path(self, path: Path) -> Optional[ImageRecord]:
        """The image registered for file ``path`` (any form of the path), or None."""
        row = self._conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE file_name = ?",
                                 (self.relative_path(path),)).fetchone()
        return _image(row) if row else None

    def image_path(self, image_id: int) -> Path:
        """Absolute, normalised path of an image file."""
        return self.abs_path(self.image(image_id).file_name)

    def image_state(self, image_id: int) -> str:
        """The image's state (``schema.STATE_SQL``): ``unreadable``, ``done`` (done flag),
        ``predicted`` (predictions wait for review), ``in_progress`` (annotations, none waiting) or
        ``unlabeled``."""
        return self.image(image_id).state

    # ----------------------------------------------------------------- changing
    def set_done(self, image_ids: Iterable[int], done: bool = True) -> None:
        """Set or clear the images' done flag (one transaction)."""
        ids = list(image_ids)
        with self.transaction():
            for i in ids:
                self.image(i)
            self._conn.executemany("UPDATE images SET done = ? WHERE id = ?", [(int(done), i) for i in ids])

    def set_coco_id(self, image_id: int, coco_id: Optional[int]) -> None:
        """Set the COCO id an image is exported with (unique). Raises AnnotatorError when taken."""
        with self.transaction():
            row = self._conn.execute("SELECT id FROM images WHERE coco_id = ?", (coco_id,)).fetchone()
            if coco_id is not None and row and row[0] != image_id:
                raise AnnotatorError(f"{self.db_path}: images.coco_id: {coco_id} already used by image {row[0]}")
            self._conn.execute("UPDATE images SET coco_id = ? WHERE id = ?", (coco_id, self.image(image_id).id))

    def mark_unreadable(self, image_id: int, reason: str) -> None:
        """Record that the image file could not be read (state ``unreadable`` until it can)."""
        with self.transaction():
            self._conn.execute("UPDATE images SET error = ? WHERE id = ?", (str(reason) or "unreadable", int(image_id)))

    def mark_readable(self, image_id: int) -> None:
        """Clear an ``unreadable`` mark (the file was read after all); no write when there is none."""
        row = self._conn.execute("SELECT error FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is not None and row[0] is not None:
            with self.transaction():
                self._conn.execute("UPDATE images SET error = NULL WHERE id = ?", (int(image_id),))

    # ----------------------------------------------------------------- hashes / change detection
    def unhashed_image_ids(self, limit: Optional[int] = None, *, after: int = 0) -> list[int]:
        """Ids above ``after`` of images whose sha256 is not computed yet (ascending; at most ``limit``)."""
        sql = "SELECT id FROM images WHERE sha256 IS NULL AND id > ? ORDER BY id" + (
            f" LIMIT {int(limit)}" if limit else "")
        return [r[0] for r in self._conn.execute(sql, (int(after),))]

    def hash_images(self, image_ids: Optional[Iterable[int]] = None) -> FileCheck:
        """Hash the images' files and detect changed ones (default: every image not hashed yet).

        An image not hashed yet gets its sha256, size and mtime. A hashed image whose size or
        mtime differs from the stored ones is hashed again; if the content differs it is
        ``changed`` (new hash stored; when its width / height changed too, the stored masks no
        longer fit, so it is marked unreadable with the reason). A missing or unreadable file
        is marked unreadable. Files are read outside the transaction; one short write at the end.
        """
        ids = self.unhashed_image_ids() if image_ids is None else [int(i) for i in image_ids]
        recs = self.images_by_id(ids)
        check, updates, sizes, errors = FileCheck(), [], [], []
        for image_id in ids:
            rec = recs.get(image_id)
            if rec is None:
                continue
            path = self.abs_path(rec.file_name)
            if rec.sha256 is not None:
                row = self._conn.execute("SELECT file_size, mtime_ns FROM images WHERE id = ?", (image_id,)).fetchone()
                try:
                    st = os.stat(path)
                except OSError as exc:
                    errors.append((f"cannot read image: {exc.strerror or exc}", image_id))
                    check.unreadable[image_id] = errors[-1][0]
                    continue
                if row == (st.st_size, st.st_mtime_ns):
                    continue
            try:
                sha, size, mtime = file_sha256(path)
            except AnnotatorError as exc:
                errors.append((str(exc).split(": ", 1)[-1], image_id))
                check.unreadable[image_id] = errors[-1][0]
                continue
            updates.append((sha, size, mtime, image_id))
            if rec.sha256 is None:
                check.hashed.append(image_id)
            elif sha != rec.sha256:
                check.changed.append(image_id)
                dims = _size_pil(path)
                if dims is not None and (dims[0], dims[1]) != (rec.width, rec.height):
                    sizes.append((f"changed on disk: now {dims[0]} x {dims[1]} px, its annotations are "
                                  f"{rec.width} x {rec.height}", image_id))
                    check.unreadable[image_id] = sizes[-1][0]
        if updates or errors or sizes:
            with self.transaction():
                self._conn.executemany("UPDATE images SET sha256 = ?, file_size = ?, mtime_ns = ? WHERE id = ?",
                                       updates)
                self._conn.executemany("UPDATE images SET error = ? WHERE id = ?", errors + sizes)
        return check

    def ensure_hashes(self, image_ids: Optional[Iterable[int]] = None) -> None:
        """Hash the given images (default: all) that have no sha256 yet; used before anything
        that needs content hashes (train / validation split, matching imports by content)."""
        ids = None if image_ids is None else [int(i) for i in image_ids]
        missing = self.unhashed_image_ids() if ids is None else [
            i for i, r in self.images_by_id(ids).items() if r.sha256 is None]
        if missing:
            self.hash_images(missing)
