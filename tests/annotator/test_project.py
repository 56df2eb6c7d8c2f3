"""Project store: creation/opening, images, annotations, states, transactions, WAL sharing."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator import masks
from annotator.errors import AnnotatorError, ProjectLockedError
from annotator.project import DB_NAME, Project, store
from annotator.project.schema import SCHEMA_VERSION


def make_images(folder: Path, sizes=((40, 30), (50, 20), (32, 32))) -> list[Path]:
    """Write small PNGs of the given (width, height) sizes; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (w, h) in enumerate(sizes):
        img = np.full((h, w, 3), 40 * k, np.uint8)
        img[h // 4:h // 2, w // 4:w // 2] = 255
        path = folder / f"img{k}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def dump(db_path: Path) -> dict:
    """Every row of every table, for before/after comparisons."""
    conn = sqlite3.connect(str(db_path))
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


def square(h, w, x0, y0, x1, y1) -> dict:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return masks.encode_mask(m)


@pytest.fixture
def project(tmp_path):
    make_images(tmp_path / "images")
    p = Project.create(tmp_path / "proj", images_dir=tmp_path / "images")
    yield p
    p.close()


def test_create_registers_images(tmp_path, project):
    images = project.images()
    assert [(i.width, i.height) for i in images] == [(40, 30), (50, 20), (32, 32)]
    first = images[0]
    assert first.file_name == "../images/img0.png"  # relative to the project root, may go up
    assert project.image_path(first.id) == (tmp_path / "images" / "img0.png")
    assert first.sha256 is None  # registered from the header; hashed later
    check = project.hash_images()
    assert check.hashed == [i.id for i in images] and not check.changed and not check.unreadable
    assert project.image(first.id).sha256 == hashlib.sha256((tmp_path / "images" / "img0.png").read_bytes()).hexdigest()
    assert project.unhashed_image_ids() == []
    assert first.state == "unlabeled" and first.coco_id is None
    assert project.db_path == tmp_path / "proj" / DB_NAME
    conn = sqlite3.connect(str(project.db_path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.close()
    assert project.add_images_from(tmp_path / "images").added == 0  # already registered
    make_images(tmp_path / "more", sizes=((8, 8),))
    assert project.add_images_from(tmp_path / "more").added == 1


def test_open_folder_and_file(tmp_path):
    make_images(tmp_path / "folder")
    p = Project.open(tmp_path / "folder")  # a plain image folder becomes a project
    assert len(p.images()) == 3 and p.images()[0].file_name == "img0.png"
    p.close()
    with Project.open(tmp_path / "folder" / DB_NAME) as q:
        assert len(q.images()) == 3
    with Project.open(tmp_path / "folder", read_only=True) as r:
        assert r.read_only
        with pytest.raises(AnnotatorError, match="read-only"):
            r.add_category("x")
    make_images(tmp_path / "plain")
    with pytest.raises(AnnotatorError, match="not an annotator project"):
        Project.open(tmp_path / "plain", create_if_folder=False)
    with pytest.raises(AnnotatorError, match="no such file"):
        Project.open(tmp_path / "missing")
    (tmp_path / "bad.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(AnnotatorError, match="bad.sqlite"):
        Project.open(tmp_path / "bad.sqlite")
    with pytest.raises(AnnotatorError, match="already exists"):
        Project.create(tmp_path / "folder")


def test_corrupt_image_skipped_and_unwritable_path(tmp_path):
    make_images(tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with Project.create(tmp_path / "proj", images_dir=tmp_path / "images") as p:
        assert [s.path.name for s in p.scan.skipped] == ["broken.jpg"]
        assert "not a valid image" in p.scan.skipped[0].reason
        assert p.scan.added == 3
        assert [Path(i.file_name).name for i in p.images()] == ["img0.png", "img1.png", "img2.png"]
    with pytest.raises(AnnotatorError, match="not a folder"):
        Project.create(tmp_path / "proj2", images_dir=tmp_path / "missing")
    assert not (tmp_path / "proj2" / DB_NAME).exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AnnotatorError, match="afile"):
        Project.create(tmp_path / "afile" / "proj")


def test_newer_schema_refused(tmp_path, project):
    project._conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(AnnotatorError, match="schema_version 99"):
        Project.open(project.root)


def test_annotations_and_states(project):
    img = project.images()[0]
    cat = project.add_category("cat", supercategory="animal")
    assert cat.id == 1 and cat.color.startswith("#")
    dog = project.add_category("dog", id=18)
    with pytest.raises(AnnotatorError, match="categories.name"):
        project.add_category("cat")
    poly = [[2, 2, 20, 2, 20, 10, 2, 10]]
    a1 = project.add_annotation(img.id, cat.id, polygon=poly)
    ann = project.annotations(img.id)[0]
    assert ann.id == a1 and ann.polygon == [[2.0, 2.0, 20.0, 2.0, 20.0, 10.0, 2.0, 10.0]]
    assert ann.rle["size"] == [30, 40] and isinstance(ann.rle["counts"], str)
    assert ann.area == masks.rle_area(ann.rle) and ann.bbox == masks.rle_bbox(ann.rle)
    assert (ann.source, ann.review_state) == ("human", "accepted")
    assert project.image_state(img.id) == "in_progress"   # worked on, not marked done

    img2 = project.images()[1]
    rle = square(20, 50, 5, 5, 15, 15)
    project.replace_predictions(img2.id, [{"category_id": dog.id, "rle": rle, "score": 0.9}], None)
    assert project.image_state(img2.id) == "predicted"
    pred = project.annotations(img2.id)[0]
    assert (pred.source, pred.review_state, pred.score, pred.polygon) == ("model", "predicted", 0.9, None)
    project.set_review_state([pred.id], "accepted")
    assert project.image_state(img2.id) == "in_progress"
    project.set_category(pred.id, cat.id)
    assert project.annotations(img2.id)[0].category_id == cat.id
    project.update_mask(pred.id, rle=square(20, 50, 0, 0, 4, 4))
    upd = project.annotations(img2.id)[0]
    assert upd.review_state == "edited" and upd.area == 16 and upd.bbox == [0.0, 0.0, 4.0, 4.0]
    assert [a.id for a in project.annotations(review_states=["edited"])] == [pred.id]
    assert [a.id for a in project.annotations(sources=["human"])] == [a1]

    img3 = project.images()[2]
    project.set_done([img3.id])
    assert project.image_state(img3.id) == "done"
    project.delete_annotations([a1])
    assert project.image_state(img.id) == "unlabeled"
    with pytest.raises(AnnotatorError, match="size"):
        project.add_annotation(img.id, cat.id, rle=square(20, 50, 0, 0, 3, 3))  # wrong image size
    with pytest.raises(AnnotatorError, match="polygon"):
        project.add_annotation(img.id, cat.id, polygon=[[1, 1, 5, 5]])
    with pytest.raises(AnnotatorError, match="category"):
        project.add_annotation(img.id, 999, polygon=poly)


def test_replace_predictions_keeps_reviewed_and_rolls_back(project):
    img = project.images()[1]
    cat = project.add_category("a")
    h, w = img.height, img.width
    keep = {state: project.add_annotation(img.id, cat.id, rle=square(h, w, 0, 0, 3, 3), source=src,
                                          review_state=state, score=0.5 if src == "model" else None)
            for state, src in (("accepted", "human"), ("rejected", "model"), ("edited", "model"))}
    old = project.add_annotation(img.id, cat.id, rle=square(h, w, 1, 1, 5, 5), source="model", score=0.3,
                                 review_state="predicted")
    project.replace_predictions(img.id, [{"category_id": cat.id, "rle": square(h, w, 2, 2, 9, 9), "score": 0.7}], None)
    anns = {a.id: a for a in project.annotations(img.id)}
    assert old not in anns and set(keep.values()) <= set(anns) and len(anns) == 4
    before = dump(project.db_path)
    bad = [{"category_id": cat.id, "rle": square(h, w, 2, 2, 9, 9), "score": 0.7},
           {"category_id": 12345, "rle": square(h, w, 2, 2, 9, 9), "score": 0.7}]
    with pytest.raises(AnnotatorError, match="unknown category"):
        project.replace_predictions(img.id, bad, None)
    assert dump(project.db_path) == before  # the delete of old predictions was rolled back too
    with pytest.raises(AnnotatorError, match="no annotation"):
        project.delete_annotations([old + 1000, list(keep.values())[0]])
    assert dump(project.db_path) == before


def test_check_constraints(project):
    img = project.images()[0]
    project.add_category("a")
    with pytest.raises(sqlite3.IntegrityError):
        project._conn.execute(
            "INSERT INTO annotations(image_id, category_id, rle, bbox_x, bbox_y, bbox_w, bbox_h, area, source, "
            "review_state, created, updated) VALUES (?, 1, '{}', 0, 0, 1, 1, 1, 'robot', 'accepted', '', '')",
            (img.id,))
    with pytest.raises(AnnotatorError, match="review_state"):
        project.add_annotation(img.id, 1, polygon=[[0, 0, 5, 0, 5, 5]], review_state="maybe")


def test_two_connections_share_commits(project, monkeypatch):
    other = Project.open(project.root)
    img = project.images()[0]
    cat = project.add_category("shared")
    ann = project.add_annotation(img.id, cat.id, polygon=[[0, 0, 9, 0, 9, 9]])
    assert [a.id for a in other.annotations()] == [ann]
    other.set_review_state([ann], "rejected")
    assert project.annotations()[0].review_state == "rejected"
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.1)
    third = Project.open(project.root)
    with other.transaction():
        with pytest.raises(ProjectLockedError):
            third.add_category("blocked")
        assert [c.name for c in project.categories()] == ["shared"]  # readers still read
    third.add_category("now free")
    other.close()
    third.close()


def test_model_versions_and_training_records(tmp_path, project):
    v1 = project.register_model_version(arch="yolact_tiny", checkpoint=project.root / "models" / "a.pt",
                                        categories=[{"id": 1, "name": "a"}], metrics={"segm": {"AP": 0.1}})
    v2 = project.register_model_version(arch="yolact_tiny", checkpoint=tmp_path / "elsewhere.pt",
                                        categories=[{"id": 1, "name": "a"}], parent=v1)
    raw = project._conn.execute("SELECT checkpoint FROM model_versions ORDER BY id").fetchall()
    assert raw[0][0] == "models/a.pt" and raw[1][0] == (tmp_path / "elsewhere.pt").as_posix()
    mv = project.model_version(v2)
    assert mv.parent == v1 and mv.checkpoint == tmp_path / "elsewhere.pt"
    assert project.model_version(v1).checkpoint_path == project.root / "models" / "a.pt"
    assert project.model_version(v1).metrics == {"segm": {"AP": 0.1}}
    assert [m.id for m in project.model_versions()] == [v1, v2]
    with pytest.raises(AnnotatorError, match="model_versions.id"):
        project.model_version(99)

    b = project.add_category("b", id=7)
    a = project.add_category("a", id=3)
    i0, i1, i2 = project.images()
    first = project.add_annotation(i0.id, a.id, polygon=[[0, 0, 9, 0, 9, 9]])
    project.add_annotation(i0.id, b.id, rle=square(30, 40, 1, 1, 4, 4), iscrowd=1, review_state="edited")
    project.add_annotation(i1.id, a.id, rle=square(20, 50, 1, 1, 4, 4), source="model", score=0.4,
                           review_state="predicted", model_version=v1)
    project.add_annotation(i2.id, a.id, rle=square(32, 32, 1, 1, 4, 4), review_state="rejected")
    records, categories = project.training_records()
    assert categories == [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    assert len(records) == 1
    rec = records[0]
    assert rec["file_name"] == str(tmp_path / "images" / "img0.png") and Path(rec["file_name"]).is_absolute()
    assert (rec["height"], rec["width"]) == (30, 40)
    assert rec["annotations"][0]["id"] == first
    assert rec["annotations"][0]["segmentation"] == [[0.0, 0.0, 9.0, 0.0, 9.0, 9.0]]
    assert rec["annotations"][1]["segmentation"]["size"] == [30, 40]
    assert [x["iscrowd"] for x in rec["annotations"]] == [0, 1]
    assert [x["category_id"] for x in rec["annotations"]] == [3, 7]


# ----------------------------------------------------------------------------- schema v3: scale
FIXTURE_V2 = Path(__file__).resolve().parents[1] / "fixtures" / "projects" / "schema_v2.sqlite"


def test_schema_v2_project_is_migrated_with_counters_and_triggers(tmp_path):
    """A project written by the schema-2 code (tests/fixtures/projects/schema_v2.sqlite: image 1
    with an accepted and a rejected annotation, image 2 with a prediction, image 3 empty, a stored
    split) opens as schema 3 with the same states, rows and split, and the counters then follow
    every change."""
    (tmp_path / "proj").mkdir()
    shutil.copy(FIXTURE_V2, tmp_path / "proj" / DB_NAME)
    before = sqlite3.connect(tmp_path / "proj" / DB_NAME)
    anns_before = before.execute("SELECT * FROM annotations ORDER BY id").fetchall()
    before.close()
    with Project.open(tmp_path / "proj") as p:
        assert p._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        assert [(i.id, i.state) for i in p.images()] == [(1, "in_progress"), (2, "predicted"), (3, "unlabeled")]
        assert [i.sha256 is not None for i in p.images()] == [True, True, True]  # kept from v2
        assert p._conn.execute("SELECT * FROM annotations ORDER BY id").fetchall() == anns_before
        assert p.image_splits() == {1: "train", 2: "val"}
        assert p._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert p._conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert p.image_state_counts() == {"unlabeled": 1, "predicted": 1, "in_progress": 1, "done": 0,
                                          "unreadable": 0}
        p.set_review_state([a.id for a in p.annotations(2)], "accepted")
        assert p.image_state(2) == "in_progress"
        p.delete_annotations([a.id for a in p.annotations(1)])
        assert p.image_state(1) == "unlabeled"
        p._conn.execute("DELETE FROM images WHERE id = 2")  # cascades to its annotations
        _assert_counters_match(p)


def _assert_counters_match(p):
    got = p._conn.execute("SELECT id, n_annotations, n_predicted FROM images ORDER BY id").fetchall()
    want = p._conn.execute(
        "SELECT i.id, (SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id), "
        "(SELECT COUNT(*) FROM annotations a WHERE a.image_id = i.id AND a.review_state = 'predicted') "
        "FROM images i ORDER BY i.id").fetchall()
    assert got == want


def test_counters_follow_every_kind_of_write(project):
    """Triggers keep n_annotations / n_predicted equal to the annotations table through adds,
    predictions, state changes, moves between images, undo-style restores and deletes."""
    rng = np.random.default_rng(0)
    cat = project.add_category("thing").id
    ids = [i.id for i in project.images()]
    for step in range(60):
        image_id = int(rng.choice(ids))
        rec = project.image(image_id)
        op = step % 5
        if op == 0:
            project.add_annotation(image_id, cat, rle=square(rec.height, rec.width, 1, 1, 5, 5))
        elif op == 1:
            project.replace_predictions(image_id, [{"category_id": cat, "score": 0.5,
                                                    "rle": square(rec.height, rec.width, 2, 2, 6, 6)}] * 2, None)
        elif op == 2 and project.annotations(image_id):
            anns = project.annotations(image_id)
            project.set_review_state([anns[0].id], str(rng.choice(["accepted", "rejected", "predicted"])))
        elif op == 3 and project.annotations(image_id):
            old = project.annotations(image_id)[-1]
            project.delete_annotations([old.id])
            project.restore_annotations([old])
        elif op == 4 and project.annotations(image_id):
            project.delete_annotations([project.annotations(image_id)[0].id])
        _assert_counters_match(project)
    states = {i.id: i.state for i in project.images()}
    for state in ("unlabeled", "predicted", "in_progress", "done"):
        assert project.image_ids(state) == sorted(i for i, s in states.items() if s == state)


def test_hash_images_detects_changed_and_vanished_files(tmp_path, project):
    ids = [i.id for i in project.images()]
    assert project.unhashed_image_ids() == ids and project.unhashed_image_ids(limit=2, after=ids[0]) == ids[1:3]
    project.hash_images()
    path0, path1, path2 = (project.image_path(i) for i in ids)
    img = cv2.imread(str(path0))
    img[0, 0] = (1, 2, 3)  # same size, other content
    cv2.imwrite(str(path0), img)
    cv2.imwrite(str(path1), np.zeros((7, 9, 3), np.uint8))  # another size: its masks no longer fit
    path2.unlink()
    check = project.hash_images(ids)
    assert check.hashed == [] and check.changed == [ids[0], ids[1]]
    assert set(check.unreadable) == {ids[1], ids[2]}
    assert "now 9 x 7 px" in check.unreadable[ids[1]] and "No such file" in check.unreadable[ids[2]]
    assert [project.image_state(i) for i in ids] == ["unlabeled", "unreadable", "unreadable"]
    assert project.image(ids[0]).sha256 == hashlib.sha256(path0.read_bytes()).hexdigest()
    assert project.hash_images(ids[:1]).changed == []  # unchanged since: a stat, no re-hash
    project.mark_readable(ids[1])
    assert project.image_state(ids[1]) == "unlabeled"


def test_next_image_id_and_state_queries(project):
    ids = [i.id for i in project.images()]
    cat = project.add_category("thing").id
    project.set_done([ids[1]])
    project.replace_predictions(ids[2], [{"category_id": cat, "score": 0.5,
                                          "rle": square(32, 32, 2, 2, 6, 6)}], None)
    assert project.next_image_id(None) == ids[0]
    assert project.next_image_id(ids[0]) == ids[2]          # ids[1] is done
    assert project.next_image_id(ids[2]) == ids[0]          # wraps
    assert project.next_image_id(ids[2], wrap=False) is None
    project.mark_unreadable(ids[0], "gone")
    assert project.next_image_id(ids[2], exclude_states=("done", "unreadable")) == ids[2]
    assert project.image_ids("predicted") == [ids[2]] and project.image_ids("unreadable") == [ids[0]]
    with pytest.raises(AnnotatorError, match="images.state"):
        project.image_ids("bogus")
    assert project.images_by_id([ids[2], 999])[ids[2]].state == "predicted"
