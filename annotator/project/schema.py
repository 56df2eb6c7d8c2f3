"""SQL DDL of the project store, its schema version and migrations.

One SQLite file per project (``<root>/annotator.sqlite``), WAL journal, foreign keys on.
``meta`` holds ``schema_version``, ``created`` (ISO UTC) and ``app_version`` (and, once set,
``active_model_version``). Version 2 added ``image_splits`` (train / validation split by image);
version 3 made ``images.sha256`` optional (hashed lazily, ``Project.hash_images``), added the
file's ``file_size`` / ``mtime_ns`` when it was hashed (change detection), ``error`` (why the file
could not be read the last time; NULL when it could) and the per-image counters ``n_annotations``
/ ``n_predicted`` that triggers keep equal to the annotations table, so listing, filtering and
paging 100,000 images by state never scans the annotations.
Ids of images, annotations and model versions are AUTOINCREMENT (never reused after a delete).
Coordinates: bbox columns are COCO XYWH absolute pixels; ``rle`` is compressed-RLE JSON
(``{"size": [h, w], "counts": str}``); ``polygon`` is COCO polygon JSON or NULL.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Callable

SCHEMA_VERSION = 3

DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE images (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    coco_id   INTEGER UNIQUE,
    file_name TEXT NOT NULL UNIQUE CHECK (file_name <> ''),
    width     INTEGER NOT NULL CHECK (width > 0),
    height    INTEGER NOT NULL CHECK (height > 0),
    sha256    TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    done      INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    added     TEXT NOT NULL,
    file_size INTEGER,
    mtime_ns  INTEGER,
    error     TEXT,
    n_annotations INTEGER NOT NULL DEFAULT 0,
    n_predicted   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE categories (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE CHECK (name <> ''),
    supercategory TEXT NOT NULL DEFAULT '',
    color         TEXT NOT NULL DEFAULT '#808080'
);
CREATE TABLE model_versions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    arch          TEXT NOT NULL CHECK (arch <> ''),
    checkpoint    TEXT NOT NULL,
    parent        INTEGER REFERENCES model_versions(id) ON DELETE SET NULL,
    categories    TEXT NOT NULL,
    metrics       TEXT,
    data_snapshot TEXT,
    created       TEXT NOT NULL
);
CREATE TABLE annotations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id      INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    category_id   INTEGER NOT NULL REFERENCES categories(id) ON DELETE RESTRICT,
    rle           TEXT NOT NULL,
    polygon       TEXT,
    bbox_x        REAL NOT NULL,
    bbox_y        REAL NOT NULL,
    bbox_w        REAL NOT NULL CHECK (bbox_w >= 0),
    bbox_h        REAL NOT NULL CHECK (bbox_h >= 0),
    area          REAL NOT NULL CHECK (area >= 0),
    iscrowd       INTEGER NOT NULL DEFAULT 0 CHECK (iscrowd IN (0, 1)),
    source        TEXT NOT NULL CHECK (source IN ('human', 'model')),
    model_version INTEGER REFERENCES model_versions(id) ON DELETE SET NULL,
    score         REAL CHECK (score IS NULL OR (score >= 0 AND score <= 1)),
    review_state  TEXT NOT NULL
                  CHECK (review_state IN ('predicted', 'accepted', 'rejected', 'edited')),
    z_order       INTEGER NOT NULL DEFAULT 0,
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL
);
CREATE INDEX annotations_by_image ON annotations(image_id, review_state);
CREATE INDEX annotations_by_category ON annotations(category_id);
"""

# Version 2 (training loop): the train / validation split by image, kept so that later training
# rounds validate on the same images. An image is assigned once, when it first has training data.
SPLITS_DDL = """
CREATE TABLE image_splits (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    split    TEXT NOT NULL CHECK (split IN ('train', 'val')),
    seed     INTEGER NOT NULL,
    assigned TEXT NOT NULL
);
"""

# Version 3: per-image counters kept by triggers (every writer, the GUI, the CLI or a training child
# process, goes through SQL, so the counters cannot drift from the annotations table).
COUNTER_TRIGGERS_DDL = """
CREATE TRIGGER annotations_count_insert AFTER INSERT ON annotations BEGIN
    UPDATE images SET n_annotations = n_annotations + 1,
                      n_predicted = n_predicted + (NEW.review_state = 'predicted')
    WHERE id = NEW.image_id;
END;
CREATE TRIGGER annotations_count_delete AFTER DELETE ON annotations BEGIN
    UPDATE images SET n_annotations = n_annotations - 1,
                      n_predicted = n_predicted - (OLD.review_state = 'predicted')
    WHERE id = OLD.image_id;
END;
CREATE TRIGGER annotations_count_update AFTER UPDATE OF image_id, review_state ON annotations BEGIN
    UPDATE images SET n_annotations = n_annotations - 1,
                      n_predicted = n_predicted - (OLD.review_state = 'predicted')
    WHERE id = OLD.image_id;
    UPDATE images SET n_annotations = n_annotations + 1,
                      n_predicted = n_predicted + (NEW.review_state = 'predicted')
    WHERE id = NEW.image_id;
END;
"""

#: An image's state as an SQL expression over ``images`` columns (the one definition of it; the
#: names are ``annotator.project.records.IMAGE_STATES``): ``unreadable`` when the file could not be
#: read the last time it was tried, ``done`` when a person marked it done, ``predicted`` when
#: predictions wait for review, ``in_progress`` when it has annotations and none waits for review
#: (a person has worked on it, not finished), ``unlabeled`` when it has none.
STATE_SQL = ("CASE WHEN error IS NOT NULL THEN 'unreadable' WHEN done THEN 'done' "
             "WHEN n_annotations = 0 THEN 'unlabeled' WHEN n_predicted > 0 THEN 'predicted' "
             "ELSE 'in_progress' END")


def now() -> str:
    """Current time as an ISO-8601 UTC string (seconds), the format of every timestamp column."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Additive: the ``image_splits`` table (empty; images are assigned at the next training)."""
    conn.execute(SPLITS_DDL)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Rebuild ``images`` (SQLite cannot relax a CHECK in place: SQLite's documented 12-step
    table rebuild; ``Project.open`` turns foreign keys off around it), fill the counters from the
    annotations and add the triggers that keep them."""
    for name in ("annotations_count_insert", "annotations_count_delete", "annotations_count_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")  # re-made below (only present if re-run by hand)
    images_ddl = DDL[DDL.index("CREATE TABLE images"):DDL.index("CREATE TABLE categories")]
    conn.execute(images_ddl.replace("CREATE TABLE images", "CREATE TABLE images_v3", 1).strip().rstrip(";"))
    conn.execute(
        "INSERT INTO images_v3(id, coco_id, file_name, width, height, sha256, done, added, n_annotations, "
        "n_predicted) SELECT i.id, i.coco_id, i.file_name, i.width, i.height, i.sha256, i.done, i.added, "
        "(SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id), "
        "(SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id AND a.review_state = 'predicted') "
        "FROM images i")
    conn.execute("DROP TABLE images")
    conn.execute("ALTER TABLE images_v3 RENAME TO images")
    _run_script(conn, COUNTER_TRIGGERS_DDL)


# version -> function upgrading a database from that version to version + 1 (inside a transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}

#: Versions whose upgrade rebuilds a table that others reference.
REBUILDS = frozenset({2})


def _run_script(conn: sqlite3.Connection, ddl: str) -> None:
    """Execute ``;``-separated statements one by one (``sqlite3.complete_statement`` keeps a
    trigger body, whose statements also end with ``;``, together). Unlike ``executescript`` it
    does not COMMIT, so it runs inside the caller's transaction."""
    stmt = ""
    for part in ddl.split(";"):
        stmt += part + ";"
        if sqlite3.complete_statement(stmt):
            if stmt.strip(" \n;"):
                conn.execute(stmt)
            stmt = ""


def create_schema(conn: sqlite3.Connection, *, created: str, app_version: str) -> None:
    """Create all tables in an empty database (caller holds the transaction)."""
    _run_script(conn, DDL + SPLITS_DDL + COUNTER_TRIGGERS_DDL)
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("created", created), ("app_version", app_version)],
    )


def read_version(conn: sqlite3.Connection) -> int:
    """Schema version stored in ``meta``; raises ``sqlite3.DatabaseError`` if there is none."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("meta.schema_version missing")
    return int(row[0])


def needs_foreign_keys_off(version: int) -> bool:
    """Whether upgrading from ``version`` rebuilds a referenced table: the caller then sets
    ``PRAGMA foreign_keys = OFF`` *before* its transaction (inside one the pragma is a no-op)."""
    return any(v in REBUILDS for v in range(version, SCHEMA_VERSION))


def migrate(conn: sqlite3.Connection, version: int) -> int:
    """Upgrade from ``version`` to :data:`SCHEMA_VERSION` step by step (caller holds the transaction).

    Raises:
        sqlite3.IntegrityError: a rebuilt table left a foreign key unresolved (the caller's
            transaction then rolls the whole upgrade back).
    """
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise sqlite3.IntegrityError("foreign key check failed after the schema upgrade")
    return version
