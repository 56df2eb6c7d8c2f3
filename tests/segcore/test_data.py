"""segcore.data: COCO records, mask decoding, dataset items, SSD augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segcore.data import InstanceDataset, collate, decode_segmentation, load_coco_records, read_image_rgb
from segcore.data.transforms import Sample, drop_small_boxes, photometric_distort, resize_sample, ssd_augment


@pytest.fixture(scope="module")
def train_set(coco_tiny):
    json_path = coco_tiny / "annotations" / "instances_train2017.json"
    records, categories = load_coco_records(json_path, coco_tiny / "train2017")
    return json_path, records, categories


def _mask_box(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_load_coco_records(train_set, coco_tiny):
    json_path, records, categories = train_set
    raw = json.loads(json_path.read_text())
    assert len(records) == len(raw["images"]) == 80
    assert sum(len(r["annotations"]) for r in records) == len(raw["annotations"]) == 705
    assert [c["id"] for c in categories] == sorted(c["id"] for c in raw["categories"])
    assert set(categories[0]) == {"id", "name"}
    rec = records[0]
    assert set(rec) >= {"file_name", "image_id", "height", "width", "annotations"}
    assert rec["file_name"].startswith(str(coco_tiny.resolve())) and (coco_tiny / "train2017").is_dir()
    ann = rec["annotations"][0]
    assert set(ann) >= {"bbox", "category_id", "segmentation", "iscrowd"} and len(ann["bbox"]) == 4
    crowd = [a for r in records for a in r["annotations"] if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"], dict) for a in crowd)


def test_load_coco_records_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ValueError, match=r"bad\.json.*'annotations'"):
        load_coco_records(bad, tmp_path)
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
                               "annotations": [{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1],
                                                "segmentation": [[0, 0, 1, 0, 1, 1]]}],
                               "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match=r"bad\.json: annotations\[0\]\.category_id 9"):
        load_coco_records(bad, tmp_path)


def test_decode_segmentation_matches_pycocotools(train_set):
    json_path, records, _ = train_set
    coco = COCO(str(json_path))
    polygon = next(a for a in coco.dataset["annotations"] if not a["iscrowd"])
    crowd = next(a for a in coco.dataset["annotations"] if a["iscrowd"])
    for ann in (polygon, crowd):
        img = coco.imgs[ann["image_id"]]
        ours = decode_segmentation(ann["segmentation"], img["height"], img["width"])
        assert ours.dtype == np.uint8 and ours.shape == (img["height"], img["width"])
        np.testing.assert_array_equal(ours, coco.annToMask(ann))
    # compressed RLE with str counts (our own export format)
    img = coco.imgs[crowd["image_id"]]
    rle = coco.annToRLE(crowd)
    rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(decode_segmentation(rle, img["height"], img["width"]), coco.annToMask(crowd))
    assert not decode_segmentation([[1, 2, 3, 4]], 5, 5).any()  # degenerate polygon -> empty
    with pytest.raises(ValueError):
        decode_segmentation("nope", 5, 5)


def test_read_image_rgb(train_set):
    _, records, _ = train_set
    rec = records[0]
    img = read_image_rgb(rec["file_name"], (rec["height"], rec["width"]))
    assert img.dtype == np.uint8 and img.shape == (rec["height"], rec["width"], 3)
    with pytest.raises(FileNotFoundError):
        read_image_rgb(rec["file_name"] + ".missing")
    with pytest.raises(ValueError, match="record says"):
        read_image_rgb(rec["file_name"], (rec["height"] + 1, rec["width"]))


def test_read_image_rgb_applies_exif_orientation_and_is_the_annotators_reader(tmp_path):
    """EXIF orientation 6 (rotate 90 degrees clockwise to display): the pixels come back rotated,
    from a non-ASCII path too; the annotator's load_rgb returns the same array, and a record in the
    raw pixel order still reads (expected_hw)."""
    from PIL import Image

    from annotator.errors import AnnotatorError
    from annotator.project.images import load_rgb, read_image_info

    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:, :10] = 255  # white left band
    im = Image.fromarray(raw)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "drehung-ä.png"
    im.save(path, exif=exif)
    img = read_image_rgb(path)
    assert img.shape == (40, 20, 3) and img[:10].min() == 255 and img[30:].max() == 0  # band now on top
    assert np.array_equal(load_rgb(path), img)
    info = read_image_info(path)
    assert (info.height, info.width) == img.shape[:2]
    assert read_image_rgb(path, (20, 40)).shape == (20, 40, 3)
    with pytest.raises(AnnotatorError, match="cannot read image"):
        load_rgb(tmp_path / "missing.png")


def test_dataset_item_plain(train_set):
    _, records, categories = train_set
    rec = next(r for r in records if any(a["iscrowd"] for a in r["annotations"]))
    ds = InstanceDataset([rec], categories, input_size=160, augment=False)
    image, target, record = ds[0]
    assert record is rec
    assert image.shape == (3, 160, 160) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 255.0
    n = target["gt_boxes"].shape[0]
    assert n > 0 and target["gt_boxes"].dtype == torch.float32
    assert target["gt_classes"].shape == (n,) and target["gt_classes"].dtype == torch.int64
    assert target["gt_masks"].shape == (n, 160, 160) and target["gt_masks"].dtype == torch.uint8
    assert set(target["gt_masks"].unique().tolist()) <= {0, 1}
    assert target["gt_crowd_boxes"].shape[1] == 4 and target["gt_crowd_boxes"].shape[0] >= 1
    # class index = position of the COCO id in categories
    ids = [categories[i]["id"] for i in target["gt_classes"].tolist()]
    regular = [a for a in rec["annotations"] if not a["iscrowd"]]
    assert set(ids) <= {a["category_id"] for a in regular}
    # boxes: XYXY at S, >= 4 px, and enclose their masks
    boxes = target["gt_boxes"].numpy()
    assert (boxes[:, 2:] - boxes[:, :2] > 4).all() and (boxes >= 0).all() and (boxes <= 160).all()
    for b, m in zip(boxes, target["gt_masks"].numpy()):
        if m.any():
            mb = _mask_box(m)
            assert (mb[:2] >= b[:2] - 1.5).all() and (mb[2:] <= b[2:] + 1.5).all()


def test_dataset_augment_seeded_and_consistent(train_set):
    _, records, categories = train_set
    ds = InstanceDataset(records[:12], categories, input_size=128, augment=True)
    torch.manual_seed(3)
    first = [ds[i] for i in range(len(ds))]
    torch.manual_seed(3)
    again = [ds[i] for i in range(len(ds))]
    for (im1, t1, _), (im2, t2, _) in zip(first, again):
        assert torch.equal(im1, im2) and torch.equal(t1["gt_boxes"], t2["gt_boxes"])
    for image, target, _ in first:
        assert image.shape == (3, 128, 128) and 0.0 <= float(image.min()) and float(image.max()) <= 255.0
        boxes, masks = target["gt_boxes"].numpy(), target["gt_masks"].numpy()
        assert masks.shape == (len(boxes), 128, 128)
        if len(boxes):
            assert (boxes[:, 2:] - boxes[:, :2] > 4).all()
        for b, m in zip(boxes, masks):
            if m.any():  # a crop may cut the visible mask, but never outside its (clamped) box
                mb = _mask_box(m)
                assert (mb[:2] >= b[:2] - 1.5).all() and (mb[2:] <= b[2:] + 1.5).all()
    images, targets, recs = collate(first[:3])
    assert images.shape == (3, 3, 128, 128) and len(targets) == 3 and len(recs) == 3


def _synthetic(h=60, w=80) -> Sample:
    image = np.full((h, w, 3), 50, np.float32)
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 10:30, 5:25] = 1
    masks[1, 35:55, 40:75] = 1
    image[masks[0] == 1] = 200
    boxes = np.array([[5, 10, 25, 30], [40, 35, 75, 55]], np.float32)
    return Sample(image, masks, boxes, np.array([0, 1], np.int64), np.zeros(2, bool))


class _FixedRng:
    """Generator stand-in: integers() returns scripted values, uniform() draws from a real RNG."""

    def __init__(self, ints, seed=0):
        self._ints = list(ints)
        self._rng = np.random.default_rng(seed)

    def integers(self, n):
        return self._ints.pop(0) if self._ints else self._rng.integers(n)

    def uniform(self, lo, hi):
        return self._rng.uniform(lo, hi)


def test_mirror_only_is_a_flip():
    s = _synthetic()
    # crop option 0 (whole image), then mirror = 1
    out = ssd_augment(s, 40, _FixedRng([0, 1]), photometric=False, expand=False)
    ref = resize_sample(s, 40)
    # equal up to pixels on the mask edges (ties at exactly 0.5 coverage may round either way)
    assert (out.masks != ref.masks[:, :, ::-1]).mean() < 0.02
    np.testing.assert_allclose(out.boxes[:, [2, 0]], 40 - ref.boxes[:, [0, 2]], atol=1e-4)
    np.testing.assert_allclose(out.image, ref.image[:, ::-1], atol=1.0)


def test_expand_and_crop_keep_masks_in_boxes():
    s = _synthetic()
    rng = np.random.default_rng(0)
    seen_expand = False
    for _ in range(40):
        out = drop_small_boxes(ssd_augment(s, 64, rng, photometric=False), 4.0)
        assert out.image.shape == (64, 64, 3) and out.masks.shape[1:] == (64, 64)
        if (np.abs(out.image - np.asarray([123.68, 116.78, 103.94], np.float32)) < 1).all(axis=2).any():
            seen_expand = True
        for b, m in zip(out.boxes, out.masks):
            assert m.any()
            mb = _mask_box(m)
            assert (mb[:2] >= b[:2] - 1.5).all() and (mb[2:] <= b[2:] + 1.5).all()
    assert seen_expand


def test_photometric_distort_range():
    rng = np.random.default_rng(1)
    img = np.random.default_rng(2).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    for _ in range(10):
        out = photometric_distort(img, rng)
        assert out.shape == img.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
    assert not np.shares_memory(out, img)


def test_rle_uncompressed_counts_roundtrip():
    m = np.zeros((7, 9), np.uint8)
    m[2:5, 3:8] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    decoded = decode_segmentation({"size": rle["size"], "counts": rle["counts"].decode()}, 7, 9)
    np.testing.assert_array_equal(decoded, m)
