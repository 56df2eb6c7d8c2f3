"""SQL DDL of the project store, its schema version and migrations.

One SQLite file per project (``<root>/annotator.sqlite``), WAL journal, foreign keys on.
``meta`` holds ``schema_version``, ``created`` (ISO UTC) and ``app_version`` (and, once set,
``active_model_version``). Version 2 added ``image_splits`` (train / validation split by image).
Ids of images, annotations and model versions are AUTOINCREMENT (never reused after a delete).
Coordinates: bbox columns are COCO XYWH absolute pixels; ``rle`` is compressed-RLE JSON
(``{"size": [h, w], "counts": str}``); ``polygon`` is COCO polygon JSON or NULL.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Callable

SCHEMA_VERSION = 2

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
    sha256    TEXT NOT NULL CHECK (length(sha256) = 64),
    done      INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    added     TEXT NOT NULL
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


def now() -> str:
    """Current time as an ISO-8601 UTC string (seconds), the format of every timestamp column."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Additive: the ``image_splits`` table (empty; images are assigned at the next training)."""
    conn.execute(SPLITS_DDL)


# version -> function upgrading a database from that version to version + 1 (inside a transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2}


def create_schema(conn: sqlite3.Connection, *, created: str, app_version: str) -> None:
    """Create all tables in an empty database (caller holds the transaction)."""
    for stmt in (DDL + SPLITS_DDL).split(";"):
        if stmt.strip():
            conn.execute(stmt)
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


def migrate(conn: sqlite3.Connection, version: int) -> int:
    """Upgrade from ``version`` to :data:`SCHEMA_VERSION` step by step (caller holds the transaction)."""
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    return version
