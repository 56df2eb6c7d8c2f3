"""Class-manager edits on the project-wide undo stack (annotator.tools.category_commands):
add / rename / recolour / merge undo and redo back to identical category and annotation rows
(COCO ids kept), refused undos change nothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project import Project
from annotator.tools import category_commands as cc
from annotator.tools.commands import History


@pytest.fixture
def project(tmp_path) -> Project:
    imgs = tmp_path / "images"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(imgs / name), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    p = Project.create(tmp_path / "proj", images_dir=imgs)
    p.add_category("cat", id=3)
    p.add_category("dog", id=17)
    a, b = (im.id for im in p.images())
    for img, cat, y in ((a, 3, 0), (b, 3, 10), (a, 17, 20)):
        m = np.zeros((40, 50), bool)
        m[y:y + 8, 5:30] = True
        p.add_annotation(img, cat, rle=masks.encode_mask(m), source="model", score=0.7)
    yield p
    p.close()


def state(p: Project):
    return p.categories(), p.annotations()


def test_each_class_change_undoes_and_redoes_exactly(project):
    h = History()
    s0 = state(project)
    new = h.execute(project, cc.add_category("bird", "#102030")).result
    assert new.id == 18 and new.color == "#102030"
    h.execute(project, cc.rename_category(3, "kitty"))
    h.execute(project, cc.recolor_category(17, "#aabbcc"))
    s1 = state(project)
    moved = h.execute(project, cc.merge_categories(3, 17)).result
    assert moved == 2
    s2 = state(project)
    assert [c.id for c in s2[0]] == [17, 18] and {a.category_id for a in s2[1]} == {17}
    assert h.depth(cc.PROJECT_SCOPE) == (4, 0)

    h.undo(project, cc.PROJECT_SCOPE)                 # merge undone: category 3 and its rows back
    assert state(project) == s1
    h.redo(project, cc.PROJECT_SCOPE)
    assert state(project) == s2
    for _ in range(4):
        h.undo(project, cc.PROJECT_SCOPE)
    assert state(project) == s0                        # byte-identical rows, ids kept
    assert h.undo(project, cc.PROJECT_SCOPE) is None
    for _ in range(4):
        h.redo(project, cc.PROJECT_SCOPE)
    assert state(project) == s2


def test_refused_undo_changes_nothing(project):
    h = History()
    new = h.execute(project, cc.add_category("bird")).result
    img = project.images()[0].id
    m = np.zeros((40, 50), bool)
    m[1:5, 1:5] = True
    project.add_annotation(img, new.id, rle=masks.encode_mask(m))   # the new class gets used
    before = state(project)
    with pytest.raises(AnnotatorError, match="still has 1 annotations"):
        h.undo(project, cc.PROJECT_SCOPE)
    assert state(project) == before and h.depth(cc.PROJECT_SCOPE) == (1, 0)


def test_failed_command_is_not_pushed(project):
    h = History()
    with pytest.raises(AnnotatorError):
        h.execute(project, cc.rename_category(3, "dog"))   # name taken
    with pytest.raises(AnnotatorError):
        h.execute(project, cc.merge_categories(3, 3))
    assert h.depth(cc.PROJECT_SCOPE) == (0, 0) and [c.name for c in project.categories()] == ["cat", "dog"]
    assert h.execute(project, cc.rename_category(3, "cat")) is None   # no change -> no undo step
