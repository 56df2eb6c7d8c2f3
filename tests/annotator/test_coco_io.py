"""COCO import validation (all-or-nothing), RLE / polygon / hole fidelity, export selections."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.io import coco as coco_io
from annotator.io import export_coco, export_results, import_coco
from annotator.project import Project

W, H = 40, 30  # both test images are 40 x 30


def dump(db_path: Path) -> dict:
    conn = sqlite3.connect(str(db_path))
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


def donut() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[5:25, 5:35] = True
    m[10:20, 15:25] = False  # the hole
    return m


def base_json() -> dict:
    return {
        "images": [{"id": 101, "file_name": "a.png", "width": W, "height": H},
                   {"id": 102, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 5, "name": "cat", "supercategory": "animal"}, {"id": 9, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 101, "category_id": 5, "iscrowd": 0, "area": 50.0, "bbox": [2, 2, 10, 5],
             "segmentation": [[2, 2, 12, 2, 12, 7, 2, 7], [20, 20, 30, 20, 30, 28]]},  # two parts
            {"id": 2, "image_id": 101, "category_id": 9, "iscrowd": 1, "area": 40.0, "bbox": [3, 10, 2, 20],
             "segmentation": {"size": [H, W], "counts": [100, 20, 10, 20, W * H - 150]}},  # uncompressed
            {"id": 3, "image_id": 102, "category_id": 9, "iscrowd": 0, "area": 500.0, "bbox": [5, 5, 30, 20],
             "segmentation": masks.encode_mask(donut())},  # compressed RLE with a hole
        ],
    }


@pytest.fixture
def setup(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(imgs / name), np.zeros((H, W, 3), np.uint8))
    project = Project.create(tmp_path / "proj")
    # pre-existing content that a failed import must leave alone
    project.add_images_from(imgs)
    project.add_category("cat", id=5)
    project.add_annotation(1, 5, polygon=[[0, 0, 5, 0, 5, 5]])
    yield project, tmp_path
    project.close()


def write(tmp_path: Path, data, name="instances.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_import_kinds_and_fidelity(setup):
    project, tmp = setup
    summary = import_coco(project, write(tmp, base_json()), image_root=tmp / "images")
    assert (summary.images, summary.new_images, summary.annotations, summary.crowd) == (2, 0, 3, 1)
    assert (summary.categories, summary.new_categories) == (2, 1)
    assert [i.coco_id for i in project.images()] == [101, 102]
    anns = {a.id: a for a in project.annotations()}
    assert {1, 2, 3} <= set(anns) and len(anns) == 4
    assert summary.renumbered == 1  # file id 1 is taken by the fixture's annotation: it got a new id
    poly = max(anns)
    assert all(a.source == "human" and a.review_state == "accepted" for a in anns.values())
    assert anns[poly].polygon == [[2, 2, 12, 2, 12, 7, 2, 7], [20, 20, 30, 20, 30, 28]]
    assert anns[poly].bbox == [2, 2, 10, 5] and anns[poly].area == 50.0  # original values kept
    assert anns[2].iscrowd == 1 and isinstance(anns[2].rle["counts"], str)
    want_crowd = mask_utils.frPyObjects(base_json()["annotations"][1]["segmentation"], H, W)
    assert (masks.decode_rle(anns[2].rle) == masks.decode_rle(masks.counts_to_str(want_crowd))).all()
    assert masks.rle_iou(anns[3].rle, masks.encode_mask(donut())) == 1.0
    assert not masks.decode_rle(anns[3].rle)[15, 20]  # the hole survived

    out = tmp / "out" / "export.json"
    counts = export_coco(project, out, include="human")
    assert counts["images"] == 2 and counts["annotations"] == 4
    data = json.loads(out.read_text())
    exp = {a["id"]: a for a in data["annotations"]}
    assert exp[poly]["segmentation"] == base_json()["annotations"][0]["segmentation"]  # both polygon parts
    parts = mask_utils.frPyObjects(exp[poly]["segmentation"], H, W)
    assert masks.rle_iou(mask_utils.merge(parts), anns[poly].rle) == 1.0
    assert masks.rle_iou(exp[3]["segmentation"], masks.encode_mask(donut())) == 1.0
    assert sorted(i["id"] for i in data["images"]) == [101, 102]
    assert {c["id"]: c["name"] for c in data["categories"]} == {5: "cat", 9: "dog"}
    gt = COCO(str(out))
    assert len(gt.getAnnIds()) == 4
    # importing again: same categories are fine, used annotation ids are renumbered
    again = import_coco(project, write(tmp, base_json()), image_root=tmp / "images")
    assert again.renumbered == 3 and again.new_categories == 0


def _mutate(path: str, value):
    def apply(d):
        keys = path.split("/")
        obj = d
        for k in keys[:-1]:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        last = keys[-1]
        if value is _DELETE:
            del obj[int(last) if last.isdigit() else last]
        else:
            obj[int(last) if last.isdigit() else last] = value
    return apply


_DELETE = object()
BAD_CASES = {
    "missing key": (_mutate("annotations", _DELETE), "annotations: required"),
    "segmentation type": (_mutate("annotations/0/segmentation", "oops"), "annotations[0].segmentation"),
    "polygon text": (_mutate("annotations/0/segmentation/0/1", "x"), "annotations[0].segmentation[0][1]"),
    "polygon 2 points": (_mutate("annotations/0/segmentation/1", [1, 2, 3, 4]),
                         "annotations[0].segmentation[1]: polygon has 2 points"),
    "rle size": (_mutate("annotations/2/segmentation/size", [W, H]), "annotations[2].segmentation.size"),
    "rle counts": (_mutate("annotations/1/segmentation/counts", [5, 5]), "annotations[1].segmentation.counts"),
    "bbox negative": (_mutate("annotations/0/bbox", [1, 1, -3, 4]), "annotations[0].bbox"),
    "unknown image": (_mutate("annotations/2/image_id", 999), "annotations[2].image_id: unknown image id 999"),
    "unknown category": (_mutate("annotations/2/category_id", 77), "annotations[2].category_id"),
    "duplicate ann id": (_mutate("annotations/2/id", 1), "annotations[2].id: duplicate"),
    "duplicate image id": (_mutate("images/1/id", 101), "images[1].id: duplicate"),
    "iscrowd": (_mutate("annotations/0/iscrowd", 3), "annotations[0].iscrowd"),
    "missing file": (_mutate("images/1/file_name", "nope.png"), "images[1].file_name: image file 'nope.png' not found"),
    "image size": (_mutate("images/1/width", 41), "images[1].width"),
    "category clash": (_mutate("categories/0/name", "kitten"), "categories[0].name: 'kitten'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_import_is_rejected_and_changes_nothing(setup, case):
    project, tmp = setup
    data = copy.deepcopy(base_json())
    mutate, expected = BAD_CASES[case]
    mutate(data)
    before = dump(project.db_path)
    with pytest.raises(AnnotatorError) as info:
        import_coco(project, write(tmp, data), image_root=tmp / "images")
    message = str(info.value)
    assert message.startswith("instances.json: ") and expected in message and "\n" not in message
    assert dump(project.db_path) == before


def test_bad_json_and_corrupt_image(setup):
    project, tmp = setup
    before = dump(project.db_path)
    with pytest.raises(AnnotatorError, match=r"^broken.json: not valid JSON"):
        import_coco(project, write(tmp, '{"images": [', name="broken.json"))
    (tmp / "images" / "c.png").write_bytes(b"\x89PNG not really")
    data = base_json()
    data["images"].append({"id": 103, "file_name": "c.png", "width": W, "height": H})
    with pytest.raises(AnnotatorError, match=r"^instances.json: images\[2\].file_name: .*c.png"):
        import_coco(project, write(tmp, data), image_root=tmp / "images")
    with pytest.raises(AnnotatorError, match="missing.json"):
        import_coco(project, tmp / "missing.json")
    assert dump(project.db_path) == before


def test_failure_during_write_rolls_back(setup, monkeypatch):
    project, tmp = setup
    before = dump(project.db_path)
    real, calls = project.add_annotation, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(project, "add_annotation", flaky)
    with pytest.raises(RuntimeError):
        import_coco(project, write(tmp, base_json()), image_root=tmp / "images")
    assert len(calls) == 2
    assert dump(project.db_path) == before  # categories, coco ids, done flags, first annotation: all undone


def test_import_registers_images_found_beside_json(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "data" / name), np.zeros((H, W, 3), np.uint8))
    data = base_json()
    del data["annotations"][2]["bbox"], data["annotations"][2]["area"]  # optional: taken from the mask
    with Project.create(tmp_path / "proj") as project:
        summary = import_coco(project, write(tmp_path / "data", data))
        assert summary.new_images == 2
        donut_ann = project.annotation(3)
        assert donut_ann.bbox == [5.0, 5.0, 30.0, 20.0] and donut_ann.area == float(donut().sum())
        assert [i.file_name for i in project.images()] == ["../data/a.png", "../data/b.png"]
        assert all(i.state == "done" for i in project.images())   # imported annotations are finished work


def _mixed_project(setup):
    project, tmp = setup
    img = project.images()[1].id
    rle = masks.encode_mask(donut())
    ids = {}
    for key, src, state in (("h_acc", "human", "accepted"), ("h_rej", "human", "rejected"),
                            ("m_pred", "model", "predicted"), ("m_acc", "model", "accepted"),
                            ("m_edit", "model", "edited"), ("m_rej", "model", "rejected")):
        ids[key] = project.add_annotation(img, 5, rle=rle, source=src, review_state=state,
                                          score=0.8 if src == "model" else None)
    ids["old"] = 1  # the fixture's human accepted annotation on image 1
    return project, tmp, ids


@pytest.mark.parametrize("include, keys", [
    ("accepted", {"old", "h_acc", "m_acc", "m_edit"}),
    ("human", {"old", "h_acc"}),
    ("all", {"old", "h_acc", "m_pred", "m_acc", "m_edit"}),
])
def test_export_selection(setup, include, keys):
    project, tmp, ids = _mixed_project(setup)
    out = tmp / f"{include}.json"
    counts = export_coco(project, out, include=include)
    got = {a["id"] for a in json.loads(out.read_text())["annotations"]}
    assert got == {ids[k] for k in keys} and counts["annotations"] == len(keys)
    COCO(str(out))  # loads in pycocotools


def test_export_results_and_write_errors(setup, monkeypatch):
    project, tmp, ids = _mixed_project(setup)
    out = tmp / "results.json"
    assert export_results(project, out) == 3
    results = json.loads(out.read_text())
    assert {r["score"] for r in results} == {0.8}
    assert all(isinstance(r["segmentation"]["counts"], str) and len(r["bbox"]) == 4 for r in results)
    gt_path = tmp / "gt.json"
    export_coco(project, gt_path, include="all")
    COCO(str(gt_path)).loadRes(str(out))
    (tmp / "afile").write_text("x")
    with pytest.raises(AnnotatorError, match="afile"):
        export_coco(project, tmp / "afile" / "x.json")
    with pytest.raises(AnnotatorError, match="include"):
        export_coco(project, tmp / "x.json", include="everything")
    # a failure while writing leaves the previous file intact and no temp file behind
    gt_before = gt_path.read_text()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(coco_io.json, "dumps", boom)
    with pytest.raises(AnnotatorError, match="No space left"):
        export_coco(project, gt_path, include="accepted")
    assert gt_path.read_text() == gt_before
    assert not [p for p in tmp.iterdir() if p.name.endswith(".tmp")]


def test_import_moves_marching_squares_polygons_onto_their_objects(setup):
    """A file whose polygons are pixel-centre marching-squares contours (pycococreator) is
    imported with every vertex moved by +0.5 px: the stored polygons rasterise to the objects'
    masks; a hand-drawn file (base_json) keeps its polygons as they are."""
    from tests.segcore.test_pixel_centre_polygons import marching_squares

    project, tmp = setup
    yy, xx = np.mgrid[:H, :W]
    objects = [((yy - 15) / 7.0) ** 2 + ((xx - 12 - 14 * k) / 6.0) ** 2 <= 1.0 for k in range(3)]
    data = base_json()
    data["annotations"] = [{"id": 10 + k, "image_id": 102, "category_id": 5, "iscrowd": 0, "area": float(m.sum()),
                            "bbox": [0, 0, 1, 1], "segmentation": [marching_squares(m)] * 3}
                           for k, m in enumerate(objects)]  # 3 parts each: enough vertices to tell
    summary = import_coco(project, write(tmp, data), image_root=tmp / "images")
    assert summary.polygons_shifted and summary.line().endswith("moved by +0.5 px")
    got = {a.id: a for a in project.annotations() if a.id >= 10}
    for k, m in enumerate(objects):
        assert got[10 + k].polygon[0] == [v + 0.5 for v in marching_squares(m)]
        assert (masks.decode_rle(got[10 + k].rle) == m).all()


def test_import_keeps_hand_drawn_polygons(setup):
    project, tmp = setup
    assert not import_coco(project, write(tmp, base_json()), image_root=tmp / "images").polygons_shifted
