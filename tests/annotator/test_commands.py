"""The command layer (annotator.tools.commands) on a real project store, without Qt: every
edit is one transaction, undo / redo restore byte-identical rows, per-image unlimited history
kept across image switches, pre-label runs undoable; category management; session lock;
COCO round trip of a mask with a hole and a two-part mask."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.io import export_coco, import_coco
from annotator.project import Project
from annotator.tools import commands as C
from annotator.tools import mask_ops
from annotator.tools.session import SessionLock

H, W = 60, 80


@pytest.fixture
def project(tmp_path) -> Project:
    imgs = tmp_path / "images"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(imgs / name), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    p = Project.create(tmp_path / "proj", images_dir=imgs)
    p.add_category("cat")
    p.add_category("dog")
    yield p
    p.close()


def _rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _rows(project, image_id):
    """Everything stored for an image's annotations, raw from SQLite (byte-level comparison)."""
    return project._conn.execute("SELECT * FROM annotations WHERE image_id = ? ORDER BY id", (image_id,)).fetchall()


def test_every_edit_undo_redo_byte_identical_and_kept_across_images(project):
    a, b = (im.id for im in project.images())
    h = C.History()
    states = [_rows(project, a)]
    aid = h.execute(project, C.add_mask(a, 1, _rect(10, 10, 50, 40))).result
    states.append(_rows(project, a))
    edits = [
        C.brush_stroke(a, aid, [(55, 45), (70, 50)], 3),
        C.brush_stroke(a, aid, [(20, 20), (30, 20)], 2, erase=True),
        C.polygon_edit(a, aid, [(35, 15), (45, 15), (45, 30), (35, 30)], cut=True),
        C.set_category(a, aid, 2),
        C.reject(a, [aid]),
        C.z_order(a, aid, front=False),
    ]
    for cmd in edits:
        assert h.execute(project, cmd) is cmd
        states.append(_rows(project, a))
    assert mask_ops.count_holes(C.current_mask(project, aid)) >= 1
    # the other image: a polygon instance and a pre-label run, then back to a
    pid = h.execute(project, C.add_mask(b, 1, polygon=[[5, 5, 30, 5, 30, 30, 5, 30]])).result
    assert project.annotation(pid).polygon is not None
    preds = [{"category_id": 2, "rle": masks.encode_mask(_rect(40, 10, 70, 50)), "score": 0.8}]
    h.execute(project, C.replace_predictions(b, preds, None))
    b_after = _rows(project, b)
    assert h.depth(a) == (len(states) - 1, 0) and h.depth(b) == (2, 0)
    for expected in reversed(states[:-1]):          # undo everything on a, byte for byte
        h.undo(project, a)
        assert _rows(project, a) == expected
    assert h.undo(project, a) is None and _rows(project, a) == []
    for expected in states[1:]:                      # and redo it all
        h.redo(project, a)
        assert _rows(project, a) == expected
    assert _rows(project, b) == b_after              # b untouched by a's history
    h.undo(project, b)                               # undo the pre-label run of b
    assert [r.source for r in project.annotations(b)] == ["human"]
    h.redo(project, b)
    assert _rows(project, b) == b_after
    h.undo(project, a)                               # new edit after an undo drops the redo branch
    h.execute(project, C.accept(a, [aid]))
    assert h.depth(a)[1] == 0


def test_review_commands_and_done(project):
    a, _ = (im.id for im in project.images())
    preds = [{"category_id": 1, "rle": masks.encode_mask(_rect(i * 10, 0, i * 10 + 8, 8)), "score": s}
             for i, s in enumerate((0.9, 0.6, 0.3))]
    h = C.History()
    h.execute(project, C.replace_predictions(a, preds, None))
    ids = [x.id for x in project.annotations(a)]
    accepted = h.execute(project, C.accept_above(a, 0.5)).result
    assert sorted(accepted) == ids[:2]
    cmd = h.execute(project, C.mark_done(a, "rejected"))
    assert project.image(a).done and project.annotation(ids[2]).review_state == "rejected"
    assert project.image_state(a) == "done" and cmd.text == "Done"
    h.undo(project, a)
    assert not project.image(a).done and project.annotation(ids[2]).review_state == "predicted"
    h.execute(project, C.mark_done(a, "accepted"))
    assert project.annotation(ids[2]).review_state == "accepted"
    assert h.execute(project, C.accept(a, [])) is None            # no change -> not pushed
    assert h.execute(project, C.accept(a, [ids[0]])) is None      # already accepted: only the
    #                                           timestamp could differ, which is not a change
    with pytest.raises(AnnotatorError):
        C.mark_done(a, "maybe")


def test_merge_subtract_split_fill_and_vertex_edit(project):
    a, _ = (im.id for im in project.images())
    h = C.History()
    x = h.execute(project, C.add_mask(a, 1, _rect(0, 0, 20, 20))).result
    y = h.execute(project, C.add_mask(a, 2, _rect(40, 40, 60, 60))).result
    h.execute(project, C.merge(a, x, y))
    assert [r.id for r in project.annotations(a)] == [x] and project.annotation(x).area == 800
    parts = h.execute(project, C.split(a, x)).result
    assert len(parts) == 3 - 1 and parts[0] == x
    assert sorted(r.area for r in project.annotations(a)) == [400, 400]
    h.execute(project, C.subtract(a, x, parts[1]))                 # disjoint: no change -> not pushed
    z = h.execute(project, C.add_mask(a, 1, _rect(10, 10, 30, 30))).result
    h.execute(project, C.subtract(a, z, x))
    assert project.annotation(z).area == 400 - 100
    h.execute(project, C.polygon_edit(a, z, [(22, 22), (26, 22), (26, 26), (22, 26)], cut=True))
    assert mask_ops.count_holes(C.current_mask(project, z)) == 1
    h.execute(project, C.fill_holes(a, z))
    assert mask_ops.count_holes(C.current_mask(project, z)) == 0
    h.execute(project, C.brush_stroke(a, z, [(0, 0), (79, 59)], 100, erase=True))   # erased away -> deleted
    with pytest.raises(AnnotatorError):
        project.annotation(z)
    h.undo(project, a)
    assert project.annotation(z).area > 0
    poly = h.execute(project, C.add_mask(a, 1, polygon=[[50, 5, 70, 5, 70, 25, 50, 25]])).result
    new = mask_ops.move_vertex(project.annotation(poly).polygon, 0, 2, 75, 35)
    h.execute(project, C.set_polygon(a, poly, new))
    rec = project.annotation(poly)
    assert rec.polygon == new and rec.review_state == "accepted" and rec.bbox[3] > 20


def test_category_manager_store_methods(project):
    cat = project.rename_category(1, "kitty")
    assert cat.name == "kitty" and cat.id == 1
    with pytest.raises(AnnotatorError):
        project.rename_category(1, "dog")
    assert project.set_category_color(2, "#A0B0C0").color == "#a0b0c0"
    with pytest.raises(AnnotatorError):
        project.set_category_color(2, "red")
    a, _ = (im.id for im in project.images())
    project.add_annotation(a, 1, rle=masks.encode_mask(_rect(0, 0, 5, 5)))
    project.add_annotation(a, 2, rle=masks.encode_mask(_rect(9, 9, 15, 15)))
    assert project.merge_categories(1, 2) == 1
    assert [c.id for c in project.categories()] == [2]
    assert {r.category_id for r in project.annotations(a)} == {2}
    with pytest.raises(AnnotatorError):
        project.merge_categories(2, 2)


def test_session_lock_second_instance_and_unclean_shutdown(tmp_path):
    first, second = SessionLock(tmp_path), SessionLock(tmp_path)
    s1 = first.acquire()
    assert not s1.locked and not s1.unclean and first.held
    s2 = second.acquire()
    assert s2.locked and s2.info.get("pid") and not second.held
    first.release()
    assert not (tmp_path / "annotator.session").exists()
    assert not second.acquire().unclean                  # clean close: nothing to report
    import os
    os.close(second._fd)                                 # simulate a crash: lock gone, file left
    second._fd = None
    third = SessionLock(tmp_path).acquire()
    assert third.unclean and not third.locked


def test_coco_roundtrip_hole_and_two_part_iou_one(project, tmp_path):
    a, b = (im.id for im in project.images())
    donut = mask_ops.cut_polygon(_rect(10, 10, 50, 50), [(20, 20), (40, 20), (40, 40), (20, 40)])
    two = _rect(5, 5, 20, 20) | _rect(50, 30, 70, 55)
    assert mask_ops.count_holes(donut) == 1 and len(mask_ops.split_parts(two)) == 2
    h = C.History()
    h.execute(project, C.add_mask(a, 1, donut))
    h.execute(project, C.add_mask(b, 2, two))
    out = tmp_path / "export" / "instances.json"
    counts = export_coco(project, out, include="accepted")
    assert counts["annotations"] == 2
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))                                        # pycocotools accepts the file
        res = coco.loadRes([dict(ann, score=1.0) for ann in json.loads(out.read_text())["annotations"]])
    by_name = {im["file_name"]: im["id"] for im in coco.dataset["images"]}
    got = {Path(n).name: coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=[i]))[0]).astype(bool)
           for n, i in by_name.items()}
    assert np.array_equal(got["a.png"], donut) and np.array_equal(got["b.png"], two)
    assert len(res.dataset["annotations"]) == 2
    with Project.create(tmp_path / "again") as other:
        import_coco(other, out, image_root=Path(counts["image_root"]))
        for im in other.images():
            (ann,) = other.annotations(im.id)
            orig = donut if im.file_name.endswith("a.png") else two
            assert masks.rle_iou(ann.rle, masks.encode_mask(orig)) == 1.0
            m = masks.decode_rle(ann.rle)
            assert mask_ops.count_holes(m) == (1 if orig is donut else 0)
            assert len(mask_ops.split_parts(m)) == (1 if orig is donut else 2)
