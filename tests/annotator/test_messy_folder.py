"""Folders as they are: ``new``, ``prelabel`` and ``export`` finish for every readable image of a
folder that also holds an empty file, a truncated JPEG, text named .jpg, 16-bit and palette
PNGs, CMYK and EXIF-rotated JPEGs and a non-ASCII file name, and name the files they skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from annotator.cli import EXIT_SKIPPED, main
from annotator.project import Project
from annotator.project.images import load_rgb

UNICODE_NAME = "ünïcødé 画像.jpg"


@pytest.fixture
def messy_folder(tmp_path, coco_tiny) -> Path:
    src = sorted((coco_tiny / "val2017").glob("*.jpg"))[:3]
    folder = tmp_path / "messy"
    folder.mkdir()
    shutil.copy(src[0], folder / "good.jpg")
    shutil.copy(src[1], folder / UNICODE_NAME)
    (folder / "empty.png").write_bytes(b"")
    data = src[2].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("these are my notes, not a picture\n")
    rgb = cv2.cvtColor(cv2.imread(str(src[2])), cv2.COLOR_BGR2RGB)
    cv2.imwrite(str(folder / "deep16.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(rgb).save(folder / "exif_rotated.jpg", exif=exif)
    return folder


def _tiny_checkpoint(path: Path) -> Path:
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    save_checkpoint(path, build_model("yolact_tiny", num_classes=1).eval(), categories=[{"id": 1, "name": "thing"}])
    return path


def test_new_prelabel_export_on_a_messy_folder(tmp_path, messy_folder, capsys):
    project = tmp_path / "proj"
    assert main(["new", str(project), "--images", str(messy_folder)]) == EXIT_SKIPPED
    out = capsys.readouterr()
    assert "created project" in out.out and "with 7 images (2 files skipped)" in out.out
    skipped = [line for line in out.out.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2
    assert any("empty.png: empty file" in line for line in skipped)
    assert any("notes.jpg: not a valid image" in line for line in skipped)

    with Project.open(project) as p:
        names = {Path(i.file_name).name: i for i in p.images()}
        assert set(names) == {"good.jpg", UNICODE_NAME, "truncated.jpg", "deep16.png", "palette.png",
                              "cmyk.jpg", "exif_rotated.jpg"}
        # a person outlined something in the truncated file before anyone noticed it is broken
        p.add_category("thing", id=1)
        p.add_annotation(names["truncated.jpg"].id, 1, polygon=[[10, 10, 60, 10, 60, 50]])
        rotated = names["exif_rotated.jpg"]
        assert load_rgb(p.image_path(rotated.id)).shape[:2] == (rotated.height, rotated.width)
        assert rotated.height > rotated.width  # the landscape pixels are shown upright (portrait)

    ckpt = _tiny_checkpoint(tmp_path / "tiny.pth")
    assert main(["prelabel", str(project), "--model", str(ckpt), "--score-threshold", "0"]) == EXIT_SKIPPED
    out = capsys.readouterr().out
    assert "pre-labelled 6 images" in out and "1 unreadable" in out
    assert [line for line in out.splitlines() if line.startswith("skipped: ")] == [
        "skipped: ../messy/truncated.jpg: not a valid image file (corrupt or unsupported)"]
    with Project.open(project) as p:
        states = {Path(i.file_name).name: i.state for i in p.images()}
        assert states.pop("truncated.jpg") == "unreadable"
        assert set(states.values()) == {"predicted"}
        assert len(p.annotations(names["truncated.jpg"].id)) == 1  # kept, only left out of exports

    export = tmp_path / "out.json"
    assert main(["export", str(project), "--coco", str(export), "--include", "all"]) == EXIT_SKIPPED
    out = capsys.readouterr().out
    assert "skipped: ../messy/truncated.jpg" in out
    coco = json.loads(export.read_text())
    assert sorted(Path(i["file_name"]).name for i in coco["images"]) == sorted(states)  # truncated.jpg left out
    assert coco["annotations"] and {a["image_id"] for a in coco["annotations"]} == {i["id"] for i in coco["images"]}

    yolo = tmp_path / "yolo"
    assert main(["export", str(project), "--format", "yolo", "--out", str(yolo), "--include", "all"]) == EXIT_SKIPPED
    assert "1 image skipped (unreadable): ../messy/truncated.jpg" in capsys.readouterr().out
    assert len(list((yolo / "images").rglob("*.*"))) == 6


def test_vanished_file_is_skipped_by_prelabel_and_export(tmp_path, messy_folder, capsys):
    project = tmp_path / "proj"
    main(["new", str(project), "--images", str(messy_folder)])
    (messy_folder / "good.jpg").unlink()
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pth")
    capsys.readouterr()
    assert main(["prelabel", str(project), "--model", str(ckpt), "--score-threshold", "0"]) == EXIT_SKIPPED
    out = capsys.readouterr().out
    assert "pre-labelled 5 images" in out
    assert "skipped: ../messy/good.jpg: No such file or directory" in out
