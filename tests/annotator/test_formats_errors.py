"""Bad interchange files are refused with the file and field named, and the project is unchanged
(validation of every file happens before the one write transaction)."""

from __future__ import annotations

import base64
import json
import shutil

import cv2
import numpy as np
import pytest

from annotator.cli import main
from annotator.errors import AnnotatorError
from annotator.io.labelme import import_labelme
from annotator.io.mask_png import export_masks, import_masks
from annotator.io.via import import_via
from annotator.io.yolo import import_yolo
from annotator.project import Project


@pytest.fixture()
def setup(tmp_path, coco_tiny):
    """A project with one category and one annotation, and two real images beside it."""
    images = sorted((coco_tiny / "val2017").glob("*.jpg"))[:2]
    folder = tmp_path / "images"
    folder.mkdir()
    for im in images:  # a temporary copy: labelme / VIA files sit beside their images
        shutil.copyfile(im, folder / im.name)
    project = Project.create(tmp_path / "proj")
    image_id = project.add_image(folder / images[0].name)
    cat = project.add_category("cat").id
    project.add_annotation(image_id, cat, polygon=[[1, 1, 30, 1, 30, 30]])
    yield project, folder, [folder / im.name for im in images]
    project.close()


def _snapshot(project):
    return (project.images(), project.categories(), project.annotations())


def _refused(project, fn, *args, match: str, **kwargs):
    before = _snapshot(project)
    with pytest.raises(AnnotatorError) as exc:
        fn(project, *args, **kwargs)
    assert match in str(exc.value), str(exc.value)
    assert _snapshot(project) == before
    return str(exc.value)


def _yolo(tmp_path, images, rows: list[str], names="names: [person, cat]\n"):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for im in images:
        shutil.copyfile(im, root / "images" / "train" / im.name)
        (root / "labels" / "train" / f"{im.stem}.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (root / "labels" / "train" / f"{images[-1].stem}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text(f"train: images/train\nval: images/train\n{names}")
    return root


@pytest.mark.parametrize("row, field", [
    ("0 0.1 0.1 0.5 0.5", "line 2: a detection box"),
    ("7 0.1 0.1 0.5 0.1 0.5 0.5", "line 2.class: 7 is not a class index 0..1"),
    ("0 0.1 0.1 0.5 0.1 0.5", "line 2: 5 coordinates"),
    ("0 0.1 0.1 1.5 0.1 0.5 0.5", "line 2: coordinates must be normalised"),
    ("person 0.1 0.1 0.5 0.1 0.5 0.5", "line 2: expected 'class x1 y1"),
])
def test_yolo_bad_rows(setup, tmp_path, row, field):
    project, _, images = setup
    root = _yolo(tmp_path, images, ["1 0.2 0.2 0.6 0.2 0.6 0.6", row])
    msg = _refused(project, import_yolo, root, match=field)
    assert msg.startswith(f"{images[-1].stem}.txt: ")


def test_yolo_bad_data_yaml(setup, tmp_path):
    project, _, images = setup
    root = _yolo(tmp_path, images, [], names="")
    _refused(project, import_yolo, root, match="data.yaml: names: required field is missing")
    (root / "data.yaml").write_text("names: [a]\ntrain: nowhere\n")
    _refused(project, import_yolo, root, match="data.yaml: train: 'nowhere': no such folder")
    (root / "data.yaml").write_text("names: [a\n")
    _refused(project, import_yolo, root, match="data.yaml: line 2: not valid YAML")


def _labelme(folder, image, shapes, **extra):
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image.name, "imageData": None, **extra}
    path = folder / f"{image.stem}.json"
    path.write_text(json.dumps(doc))
    return path


def test_labelme_bad_shapes_all_or_nothing(setup):
    project, folder, images = setup
    good = {"label": "dog", "points": [[1, 1], [20, 1], [20, 20]], "shape_type": "polygon"}
    _labelme(folder, images[0], [good])
    bad = _labelme(folder, images[1], [good, {"label": "dog", "points": [[1, 1], [5, 5]], "shape_type": "polygon"}])
    _refused(project, import_labelme, folder, match=f"{bad.name}: shapes[1].points: polygon has 2 points")
    _labelme(folder, images[1], [{"label": "dog", "points": [[1, 1], [5, 5]], "shape_type": "mask", "mask": "@@"}])
    _refused(project, import_labelme, folder, match="shapes[0].mask: not a base64 PNG")
    _labelme(folder, images[1], [{"label": "dog", "points": [[1, 1], [5, 5]], "shape_type": "blob"}])
    _refused(project, import_labelme, folder, match="shapes[0].shape_type: Input should be")
    _labelme(folder, images[1], [good], imageHeight=7, imageWidth=9)
    _refused(project, import_labelme, folder, match="imageHeight: file says 9x7")
    _labelme(folder, images[1], [good], imagePath="missing.jpg")
    _refused(project, import_labelme, folder, match="imagePath: image file not found")


def test_labelme_mask_shape_out_of_image(setup):
    project, folder, images = setup
    ok, png = cv2.imencode(".png", np.ones((50, 50), np.uint8))
    shape = {"label": "dog", "points": [[-3, 0], [46, 49]], "shape_type": "mask",
             "mask": base64.b64encode(png.tobytes()).decode()}
    _labelme(folder, images[1], [shape])
    _refused(project, import_labelme, folder / f"{images[1].stem}.json", match="shapes[0].mask: 50x50 crop at (-3, 0)")


def test_via_bad_regions(setup):
    project, folder, images = setup
    path = folder / "via.json"

    def write(region):
        path.write_text(json.dumps({f"{images[1].name}1": {"filename": images[1].name, "size": 1,
                                                              "regions": [region], "file_attributes": {}}}))
    poly = {"name": "polygon", "all_points_x": [1, 20, 20], "all_points_y": [1, 1, 20]}
    write({"shape_attributes": poly, "region_attributes": {}})
    _refused(project, import_via, path, match=f"via.json: {images[1].name}1.regions[0].region_attributes: no class")
    write({"shape_attributes": {**poly, "all_points_y": [1, 1]}, "region_attributes": {"class": "dog"}})
    _refused(project, import_via, path, match="regions[0].shape_attributes.all_points_y: 2 values")
    write({"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": -4, "height": 3},
           "region_attributes": {"class": "dog"}})
    _refused(project, import_via, path, match="regions[0].shape_attributes.rect.width")
    write({"shape_attributes": {"name": "circle", "cx": 5, "cy": 5, "r": 4}, "region_attributes": {"kind": "dog"}})
    assert import_via(project, path).notes == {"approx": 1}  # the only attribute gives the class


def test_masks_bad_pngs(setup, tmp_path):
    project, _, images = setup
    out = tmp_path / "masks"
    export_masks(project, out)
    inst_png = next((out / "instances").glob("*.png"))
    cls_png = out / "classes" / inst_png.name
    cls = cv2.imread(str(cls_png), cv2.IMREAD_UNCHANGED)
    cls[1, 1] = 9  # not in categories.json
    cv2.imwrite(str(cls_png), cls)
    _refused(project, import_masks, out, match=f"{cls_png.name}: (pixels): class ids [9] are not in categories.json")
    cls[1, 1] = 0  # inside instance 1: it now has class 0 and class 1 pixels
    cls[3, 20] = 0
    cv2.imwrite(str(cls_png), cls)
    _refused(project, import_masks, out, match="instance 1: pixels carry classes [0, 1]")
    cv2.imwrite(str(cls_png), cls[:-1])
    _refused(project, import_masks, out, match="(size):")
    cv2.imwrite(str(cls_png), np.zeros((*cls.shape, 3), np.uint8))
    _refused(project, import_masks, out, match="expected a single-channel")


def test_masks_16_bit_where_ids_exceed_255(setup, tmp_path):
    project, _, images = setup
    image_id = project.images()[0].id
    big = project.add_category("big", id=300).id
    project.add_annotation(image_id, big, polygon=[[40, 40, 90, 40, 90, 90]])
    export_masks(project, tmp_path / "m")
    stem = images[0].stem
    assert cv2.imread(str(tmp_path / "m" / "classes" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(tmp_path / "m" / "instances" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    with Project.create(tmp_path / "back") as back:
        rep = import_masks(back, tmp_path / "m", image_root=images[0].parent)
        assert rep.instances == 2 and {c.id for c in back.categories()} == {1, 300}


def test_cli_format_import_export_and_errors(setup, tmp_path, capsys):
    project, folder, images = setup
    root = str(project.root)
    project.close()
    assert main(["export", root, "--format", "labelme", "--out", str(folder)]) == 0
    assert "exported 1 images, 1 instances (labelme)" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "p2"), "--format", "labelme", str(folder)]) == 2
    assert main(["new", str(tmp_path / "p2"), "--images", str(folder)]) == 0
    assert main(["import", str(tmp_path / "p2"), "--format", "labelme", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "imported 1 images, 1 instances (labelme); 0 new images, " \
                                                       "1 new categories"
    assert main(["import", str(tmp_path / "p2"), "--format", "coco", str(folder)]) == 2
    assert "--format: 'coco' is not one of" in capsys.readouterr().err
    assert main(["export", root, "--format", "via"]) == 2
    assert "--format needs --out" in capsys.readouterr().err
