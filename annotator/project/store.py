"""The project store: one SQLite file per project, ``<root>/annotator.sqlite``.

WAL journal (a reader and a writer at once, e.g. the GUI and its background worker, each with
its own :class:`Project` on the same path), foreign keys on, and every public mutating method
is one transaction: a failure rolls back and leaves the project exactly as before. A
:class:`Project` object must be used from the thread that opened it (one connection each).

Formats: bbox COCO ``[x, y, w, h]`` XYWH absolute pixels; rle pycocotools compressed RLE
``{"size": [h, w], "counts": str}``; polygon COCO ``[[x1, y1, ...], ...]``.
User errors raise :class:`~annotator.errors.AnnotatorError` (one line, naming path and field);
a write blocked by another writer past the busy timeout raises ``ProjectLockedError``.
"""

from __future__ import annotations

import colorsys
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import annotator
from annotator.errors import AnnotatorError, ProjectLockedError
from annotator.project import schema
from annotator.project._annotations import AnnotationsMixin
from annotator.project._models import ModelsMixin
from annotator.project.images import ImageInfo, read_image_info, scan_images
from annotator.project.records import Category, ImageRecord

DB_NAME = "annotator.sqlite"
BUSY_TIMEOUT_S = 10.0

_IMAGE_SQL = """SELECT i.id, i.coco_id, i.file_name, i.width, i.height, i.sha256, i.done,
  (SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id),
  (SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id AND a.review_state = 'predicted')
FROM images i"""


def default_color(category_id: int) -> str:
    """Deterministic, well-spread ``#rrggbb`` colour for a category id (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((category_id * 0.618033988749895) % 1.0, 0.65, 0.95)
    return "#{:02x}{:02x}{:02x}".format(int(r * 255), int(g * 255), int(b * 255))


def _state(done: int, n: int, npred: int) -> str:
    if done:
        return "reviewed"
    if n == 0:
        return "unlabeled"
    return "predicted" if npred else "reviewed"


def _image(row) -> ImageRecord:
    return ImageRecord(id=row[0], coco_id=row[1], file_name=row[2], width=row[3], height=row[4],
                       sha256=row[5], done=bool(row[6]), state=_state(row[6], row[7], row[8]))


def _connect(db_path: Path, *, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            conn = sqlite3.connect(db_path.as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        else:
            conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    except sqlite3.Error as exc:
        raise AnnotatorError(f"{db_path}: cannot open project database: {exc}") from exc


class Project(AnnotationsMixin, ModelsMixin):
    """An annotation project (images, categories, annotations, model versions) in one SQLite file.

    Construct with :meth:`create` or :meth:`open`. Attributes: ``root`` (absolute project
    folder), ``db_path``, ``read_only``. Usable as a context manager (closes on exit).
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, *, read_only: bool):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.read_only = read_only
        self._conn = conn
        self._depth = 0

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, root: Path, *, images_dir: Optional[Path] = None) -> "Project":
        """Create a project in folder ``root`` (made if needed) and register ``images_dir``'s images.

        Raises:
            AnnotatorError: ``root`` cannot be created / written, a project already exists
                there, or an image in ``images_dir`` is unreadable (nothing is created then).
        """
        root = Path(os.path.abspath(root))
        infos = [read_image_info(p) for p in scan_images(images_dir)] if images_dir is not None else []
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AnnotatorError(f"{root}: cannot create project folder: {exc.strerror or exc}") from exc
        db_path = root / DB_NAME
        if db_path.exists():
            raise AnnotatorError(f"{db_path}: a project already exists here")
        if not os.access(root, os.W_OK):
            raise AnnotatorError(f"{root}: project folder is not writable")
        conn = _connect(db_path, read_only=False)
        project = cls(root, conn, read_only=False)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            with project.transaction():
                schema.create_schema(conn, created=schema.now(), app_version=annotator.__version__)
                project._insert_images(infos)
        except BaseException as exc:
            conn.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(db_path) + suffix).unlink(missing_ok=True)
            if isinstance(exc, sqlite3.Error):
                raise AnnotatorError(f"{db_path}: cannot create project database: {exc}") from exc
            raise
        return project

    @classmethod
    def open(cls, path: Path, *, create_if_folder: bool = True, read_only: bool = False) -> "Project":
        """Open a project folder or its ``annotator.sqlite``.

        A folder without a project is made into one (its images registered) when
        ``create_if_folder`` and not ``read_only``.

        Raises:
            AnnotatorError: no such path, not a project, or a project from a newer app version.
        """
        path = Path(os.path.abspath(path))
        if path.is_dir():
            db_path = path / DB_NAME
            if not db_path.is_file():
                if create_if_folder and not read_only:
                    return cls.create(path, images_dir=path)
                raise AnnotatorError(f"{path}: not an annotator project (no {DB_NAME})")
        elif path.is_file():
            db_path = path
        else:
            raise AnnotatorError(f"{path}: no such file or folder")
        conn = _connect(db_path, read_only=read_only)
        project = cls(db_path.parent, conn, read_only=read_only)
        project.db_path = db_path
        try:
            version = schema.read_version(conn)
            if version > schema.SCHEMA_VERSION:
                raise AnnotatorError(f"{db_path}: meta.schema_version {version} is newer than this app "
                                     f"supports ({schema.SCHEMA_VERSION}); update the annotator")
            if version < schema.SCHEMA_VERSION:
                if read_only:
                    raise AnnotatorError(f"{db_path}: meta.schema_version {version} needs a migration; "
                                         "open it writable once")
                with project.transaction():
                    schema.migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise AnnotatorError(f"{db_path}: not an annotator project database ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        return project

    def close(self) -> None:
        """Close the connection (committed data is already on disk)."""
        self._conn.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator["Project"]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls become savepoints.

        Everything inside commits together or, on any exception, is rolled back.

        Raises:
            AnnotatorError: the project is read-only.
            ProjectLockedError: another connection holds the write lock past the busy timeout.
        """
        if self.read_only:
            raise AnnotatorError(f"{self.db_path}: project is open read-only")
        if self._depth:
            name = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                raise
            else:
                self._conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise ProjectLockedError(f"{self.db_path}: project is being written by another process") from exc
            raise AnnotatorError(f"{self.db_path}: cannot write project: {exc}") from exc
        self._depth = 1
        try:
            yield self
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):  # read-only file, disk full, I/O error
                raise AnnotatorError(f"{self.db_path}: cannot write project: {exc}") from exc
            raise
        finally:
            self._depth = 0

    # ----------------------------------------------------------------- images
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

    def _insert_images(self, infos: Sequence[ImageInfo], coco_ids: Optional[Sequence] = None,
                       done: bool = False) -> list[int]:
        ids, now = [], schema.now()
        for k, info in enumerate(infos):
            cur = self._conn.execute(
                "INSERT INTO images(coco_id, file_name, width, height, sha256, done, added) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (coco_ids[k] if coco_ids else None, self.relative_path(info.path), info.width,
                 info.height, info.sha256, int(done), now))
            ids.append(cur.lastrowid)
        return ids

    def add_images_from(self, dir: Path, *, recursive: bool = False) -> int:
        """Register the jpg/png/bmp/tif images of ``dir`` not yet in the project; returns how many.

        Raises:
            AnnotatorError: not a folder, or an unreadable image (then none is added).
        """
        known = {self.abs_path(i.file_name) for i in self.images()}
        infos = [read_image_info(p) for p in scan_images(dir, recursive=recursive) if p not in known]
        with self.transaction():
            self._insert_images(infos)
        return len(infos)

    def add_image(self, path: Path, *, coco_id: Optional[int] = None, done: bool = False) -> int:
        """Register one image file; returns its project id.

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

    def images(self) -> list[ImageRecord]:
        """All images, by id, each with its ``state``."""
        return [_image(r) for r in self._conn.execute(_IMAGE_SQL + " ORDER BY i.id")]

    def image(self, image_id: int) -> ImageRecord:
        """One image. Raises AnnotatorError when there is no such image id."""
        row = self._conn.execute(_IMAGE_SQL + " WHERE i.id = ?", (image_id,)).fetchone()
        if row is None:
            raise AnnotatorError(f"{self.db_path}: images.id: no image {image_id}")
        return _image(row)

    def image_by_path(self, path: Path) -> Optional[ImageRecord]:
        """The image registered for file ``path`` (any form of the path), or None."""
        row = self._conn.execute(_IMAGE_SQL + " WHERE i.file_name = ?", (self.relative_path(path),)).fetchone()
        return _image(row) if row else None

    def image_path(self, image_id: int) -> Path:
        """Absolute, normalised path of an image file."""
        return self.abs_path(self.image(image_id).file_name)

    def image_state(self, image_id: int) -> str:
        """``"reviewed"`` if the done flag is set or it has annotations none of which is
        ``predicted``; ``"predicted"`` if any annotation is ``predicted``; else ``"unlabeled"``."""
        return self.image(image_id).state

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

    # ----------------------------------------------------------------- categories
    def categories(self) -> list[Category]:
        """All categories, by id (the COCO category id)."""
        rows = self._conn.execute("SELECT id, name, supercategory, color FROM categories ORDER BY id")
        return [Category(*r) for r in rows]

    def add_category(self, name: str, *, id: Optional[int] = None, supercategory: str = "",
                     color: Optional[str] = None) -> Category:
        """Add a category (``id`` defaults to max id + 1, ``color`` to a palette colour).

        Raises:
            AnnotatorError: empty name, or the name / id is already used.
        """
        name = str(name).strip()
        if not name:
            raise AnnotatorError(f"{self.db_path}: categories.name: empty category name")
        with self.transaction():
            row = self._conn.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
            if row:
                raise AnnotatorError(f"{self.db_path}: categories.name: {name!r} already exists (id {row[0]})")
            if id is None:
                id = (self._conn.execute("SELECT MAX(id) FROM categories").fetchone()[0] or 0) + 1
            elif self._conn.execute("SELECT 1 FROM categories WHERE id = ?", (int(id),)).fetchone():
                raise AnnotatorError(f"{self.db_path}: categories.id: {id} already used")
            cat = Category(int(id), name, supercategory or "", color or default_color(int(id)))
            self._conn.execute("INSERT INTO categories(id, name, supercategory, color) VALUES (?, ?, ?, ?)",
                               (cat.id, cat.name, cat.supercategory, cat.color))
        return cat

    def _category_exists(self, category_id: int) -> None:
        if not self._conn.execute("SELECT 1 FROM categories WHERE id = ?", (category_id,)).fetchone():
            raise AnnotatorError(f"{self.db_path}: annotations.category_id: unknown category {category_id}")

    def rename_category(self, category_id: int, name: str) -> Category:
        """Rename a category (its COCO id is kept). Raises AnnotatorError: unknown id, empty or taken name."""
        name = str(name).strip()
        if not name:
            raise AnnotatorError(f"{self.db_path}: categories.name: empty category name")
        with self.transaction():
            self._category_exists(category_id)
            row = self._conn.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
            if row and row[0] != category_id:
                raise AnnotatorError(f"{self.db_path}: categories.name: {name!r} already exists (id {row[0]})")
            self._conn.execute("UPDATE categories SET name = ? WHERE id = ?", (name, int(category_id)))
        return self.category(category_id)

    def set_category_color(self, category_id: int, color: str) -> Category:
        """Set a category's ``#rrggbb`` colour. Raises AnnotatorError: unknown id or bad colour."""
        text = str(color).strip()
        if len(text) != 7 or text[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in text[1:]):
            raise AnnotatorError(f"{self.db_path}: categories.color: {color!r} is not #rrggbb")
        with self.transaction():
            self._category_exists(category_id)
            self._conn.execute("UPDATE categories SET color = ? WHERE id = ?", (text.lower(), int(category_id)))
        return self.category(category_id)

    def merge_categories(self, source_id: int, into_id: int) -> int:
        """Move every annotation of category ``source_id`` to ``into_id`` and delete ``source_id``
        (one transaction; the kept category keeps its COCO id and name). Returns how many moved."""
        if int(source_id) == int(into_id):
            raise AnnotatorError(f"{self.db_path}: categories.id: cannot merge category {source_id} into itself")
        with self.transaction():
            self._category_exists(source_id)
            self._category_exists(into_id)
            cur = self._conn.execute("UPDATE annotations SET category_id = ?, updated = ? WHERE category_id = ?",
                                     (int(into_id), schema.now(), int(source_id)))
            self._conn.execute("DELETE FROM categories WHERE id = ?", (int(source_id),))
            return cur.rowcount

    def restore_categories(self, rows: Iterable[Category], *, remove_ids: Iterable[int] = ()) -> None:
        """Put category rows back exactly as in ``rows`` (id, name, supercategory, colour; an
        existing row with the same id is updated, a missing one inserted) and delete
        ``remove_ids``; one transaction. Used by the class manager's undo / redo.

        Raises:
            AnnotatorError: a name clash with another category, or a removed category still has
                annotations (nothing changes).
        """
        rows, remove = list(rows), [int(i) for i in remove_ids]
        with self.transaction():
            for cid in remove:
                used = self._conn.execute("SELECT COUNT(*) FROM annotations WHERE category_id = ?",
                                          (cid,)).fetchone()[0]
                if used:
                    raise AnnotatorError(f"{self.db_path}: categories.id: category {cid} still has {used} "
                                         "annotations")
                self._conn.execute("DELETE FROM categories WHERE id = ?", (cid,))
            for c in rows:
                clash = self._conn.execute("SELECT id FROM categories WHERE name = ? AND id != ?",
                                           (c.name, int(c.id))).fetchone()
                if clash:
                    raise AnnotatorError(f"{self.db_path}: categories.name: {c.name!r} already exists "
                                         f"(id {clash[0]})")
                if self._conn.execute("SELECT 1 FROM categories WHERE id = ?", (int(c.id),)).fetchone():
                    self._conn.execute("UPDATE categories SET name = ?, supercategory = ?, color = ? WHERE id = ?",
                                       (c.name, c.supercategory, c.color, int(c.id)))
                else:
                    self._conn.execute("INSERT INTO categories(id, name, supercategory, color) VALUES (?, ?, ?, ?)",
                                       (int(c.id), c.name, c.supercategory, c.color))

    def category(self, category_id: int) -> Category:
        """One category. Raises AnnotatorError when there is no such id."""
        row = self._conn.execute("SELECT id, name, supercategory, color FROM categories WHERE id = ?",
                                 (int(category_id),)).fetchone()
        if row is None:
            raise AnnotatorError(f"{self.db_path}: categories.id: unknown category {category_id}")
        return Category(*row)

    def add_image_info(self, info: ImageInfo, *, coco_id: Optional[int] = None, done: bool = False) -> int:
        """Register an image whose :class:`ImageInfo` (size, sha256) the caller already read, e.g.
        an importer that validated the file first; returns its project id. Joins the caller's
        transaction (``project.transaction()``) when there is one. Does not check for duplicates:
        the importers check paths and COCO ids before writing."""
        with self.transaction():
            return self._insert_images([info], [coco_id], done)[0]
