"""Exports read by the other tools' own loaders.

* YOLO-seg: Ultralytics' own ``check_det_dataset`` (data.yaml) and ``verify_image_label`` (every
  label file). ``make test`` installs ``ultralytics`` with ``pip install --no-deps`` (its
  requirements pull ``opencv-python``, which clashes with our ``opencv-python-headless``), so it
  is not in the dev extra; without it the test fails and says how to install it. Its ``check_font``
  (downloads a plotting
  font, needs matplotlib) is replaced by a no-op; the dataset checks themselves are untouched.
* labelme: labelme 6 cannot be imported here (its package imports onnxruntime, imgviz, cmap and
  Qt), so the test re-reads the files the way ``labelme.label_file.LabelFile.load`` does (the
  keys it indexes, ``imagePath`` relative to the JSON, ``imageData`` null -> the image file,
  ``mask`` = base64 PNG of the inclusive bbox crop) and checks every shape against the project.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator import masks
from annotator.io import import_coco
from annotator.io.labelme import export_labelme
from annotator.io.yolo import export_yolo, label_path
from annotator.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory, coco_tiny):
    p = Project.create(tmp_path_factory.mktemp("src") / "proj", images_dir=coco_tiny / "val2017")
    import_coco(p, coco_tiny / "annotations" / "instances_val2017.json")
    yield p
    p.close()


def test_yolo_export_passes_ultralytics_checker(project, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    try:
        import ultralytics.data.utils as data_utils
    except ImportError as exc:
        pytest.fail(f"ultralytics missing ({exc}): pip install --no-deps 'ultralytics>=8.3' (make test does)")
    monkeypatch.setattr(data_utils, "check_font", lambda *a, **k: None)
    rep = export_yolo(project, tmp_path / "yolo", include="human")
    data = data_utils.check_det_dataset(str(tmp_path / "yolo" / "data.yaml"))
    assert data["nc"] == len(project.categories())
    found, segments = 0, 0
    for split in ("train", "val"):
        for img in sorted(Path(data[split]).iterdir()):
            out = data_utils.verify_image_label((str(img), str(label_path(img)), "", False, data["nc"], 0, 0, False))
            nm, nf, ne, nc, msg = out[5:]
            assert (nc, msg) == (0, ""), msg
            found += nf
            segments += len(out[3])
    assert found == rep.images and segments == rep.instances


def _labelme_load(path: Path) -> dict:
    """What LabelFile.load reads (labelme 5.x / 6.x), raising KeyError / ValueError like it."""
    data = json.loads(path.read_text())
    image_path = os.path.join(os.path.dirname(path), data["imagePath"])
    image_data = data["imageData"]
    if image_data is None:
        image_data = Path(image_path).read_bytes()
    shapes = []
    for s in data["shapes"]:
        mask = None
        if s.get("mask") is not None:
            mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(s["mask"])))).astype(bool)
        shapes.append({"label": s["label"], "points": s["points"], "shape_type": s.get("shape_type", "polygon"),
                       "flags": s.get("flags", {}), "description": s.get("description"),
                       "group_id": s.get("group_id"), "mask": mask})
    return {"flags": data.get("flags") or {}, "shapes": shapes, "imagePath": data["imagePath"],
            "imageData": image_data, "size": (data["imageHeight"], data["imageWidth"])}


def test_labelme_export_reads_like_labelme(project, tmp_path):
    (ann,) = project.annotations()[:1]
    im = project.image(ann.image_id)
    blob = np.zeros((im.height, im.width), bool)
    blob[10:40, 50:90] = True
    blob[20:30, 60:70] = False
    project.add_annotation(im.id, ann.category_id, rle=masks.encode_mask(blob))  # a mask shape with a hole
    export_labelme(project, tmp_path / "lm", include="human")
    names = {c.id: c.name for c in project.categories()}
    by_stem = {Path(i.file_name).stem: i for i in project.images()}
    n_mask = 0
    for path in sorted((tmp_path / "lm").glob("*.json")):
        doc = _labelme_load(path)
        image = by_stem[path.stem]
        assert doc["size"] == (image.height, image.width)
        assert Image.open(io.BytesIO(doc["imageData"])).size == (image.width, image.height)
        anns = [a for a in project.annotations(image.id) if not a.iscrowd]
        groups = {}
        for s in doc["shapes"]:
            key = (s["label"], s["group_id"]) if s["group_id"] is not None else id(s)
            groups.setdefault(key, []).append(s)
        assert len(groups) == len(anns)
        for shapes, a in zip(groups.values(), anns):
            assert {s["label"] for s in shapes} == {names[a.category_id]}
            if shapes[0]["shape_type"] == "mask":
                (x1, y1), (x2, y2) = shapes[0]["points"]
                full = np.zeros((image.height, image.width), bool)
                full[y1:y2 + 1, x1:x2 + 1] = shapes[0]["mask"]
                assert masks.rle_iou(masks.encode_mask(full), a.rle) == 1.0
                n_mask += 1
            else:
                assert [sum(s["points"], []) for s in shapes] == a.polygon
    assert n_mask == 1
