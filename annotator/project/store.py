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

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import annotator
from annotator.errors import AnnotatorError, ProjectLockedError
from annotator.project import schema
from annotator.project.images import scan_images
from annotator.project._annotations import AnnotationsMixin
from annotator.project._images import AddedImages, ImagesMixin
from annotator.project._models import ModelsMixin
from annotator.project.records import Category
from annotator.palette import PALETTE, hex_color

DB_NAME = "annotator.sqlite"
BUSY_TIMEOUT_S = 10.0

def default_color(category_id: int) -> str:
    """``#rrggbb`` of a new category: :data:`annotator.palette.PALETTE` by id (Kelly's
    maximum-contrast colours, so consecutive ids never get near-identical colours)."""
    return hex_color(PALETTE[int(category_id) % len(PALETTE)])


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


class Project(ImagesMixin, AnnotationsMixin, ModelsMixin):
    """An annotation project (images, categories, annotations, model versions) in one SQLite file.

    Construct with :meth:`create` or :meth:`open`. Attributes: ``root`` (absolute project
    folder), ``db_path``, ``read_only``, ``scan`` (:class:`AddedImages` of the folder registered
    by :meth:`create`: how many images, which files were skipped as unreadable). Usable as a
    context manager (closes on exit).
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, *, read_only: bool):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.read_only = read_only
        self._conn = conn
        self._depth = 0
        self.scan = AddedImages()

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, root: Path, *, images_dir: Optional[Path] = None) -> "Project":
        """Create a project in folder ``root`` (made if needed) and register ``images_dir``'s images.

        Images are registered from their headers (hashed later, :meth:`hash_images`); files that
        cannot be read (empty, truncated header, not an image) are skipped and listed in the
        returned project's ``scan.skipped``.

        Raises:
            AnnotatorError: ``root`` cannot be created / written, a project already exists
                there, or ``images_dir`` is not a readable folder (nothing is created then).
        """
        root = Path(os.path.abspath(root))
        if images_dir is not None:
            scan_images(images_dir)  # a missing folder fails before anything is created
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
                if images_dir is not None:
                    project.scan = project.add_images_from(images_dir)
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
                rebuild = schema.needs_foreign_keys_off(version)
                if rebuild:  # a no-op inside a transaction: set before BEGIN
                    conn.execute("PRAGMA foreign_keys = OFF")
                try:
                    with project.transaction():
                        schema.migrate(conn, version)
                finally:
                    if rebuild:
                        conn.execute("PRAGMA foreign_keys = ON")
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

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when *another* connection (the CLI, a
        training child process, a background thread) commits to this project; this
        connection's own writes leave it unchanged. The app polls it to show others' changes."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

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
