"""Training on crops at native resolution and the data-driven recipe (issue: the loop must pay off).

On real data: nuclei-he (dense, ~19 px nuclei in 1000 x 1000 tiles; CC BY-NC-SA, tests only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from segcore.data import load_coco_records
from segcore.data.crops import CropPolicy, RecordInstances, crop_sample
from segcore.data.dataset import InstanceDataset, collate, decode_cutout, decode_segmentation
from segcore.data.recipe import CROP_SIZE, MIN_OBJECT_PX, data_stats, recipe_for


@pytest.fixture(scope="module")
def nuclei(coco_tiny):
    root = coco_tiny.parent / "nuclei-he"
    records, categories = load_coco_records(root / "annotations.json", root / "images")
    return records, categories


def test_cutouts_equal_full_decodes(nuclei):
    records, _ = nuclei
    r = records[0]
    for ann in r["annotations"][:40]:
        x0, y0, cut = decode_cutout(ann["segmentation"], ann["bbox"], r["height"], r["width"])
        full = decode_segmentation(ann["segmentation"], r["height"], r["width"])
        assert full.sum() == cut.sum() > 0
        assert np.array_equal(full[y0:y0 + cut.shape[0], x0:x0 + cut.shape[1]], cut)
        rle = mask_utils.encode(np.asfortranarray(full))        # an RLE (the app's store) gives the same
        assert np.array_equal(decode_cutout(rle, ann["bbox"], r["height"], r["width"])[2], cut)


def test_crop_keeps_masks_aligned_with_the_image(nuclei):
    """A crop at scale 2 with 90-degree rotations and flips: every instance's mask in the crop is
    the source mask mapped by the same affine map as the image (checked by mapping the crop back:
    the mean colour under each mask matches the source nucleus's), boxes are the masks' boxes."""
    from segcore.data.dataset import read_image_rgb

    records, _ = nuclei
    r = records[1]
    image = read_image_rgb(r["file_name"])
    pieces = [decode_cutout(a["segmentation"], a["bbox"], r["height"], r["width"]) for a in r["annotations"]]
    inst = RecordInstances.from_cutouts(pieces, [0] * len(pieces), [False] * len(pieces))
    policy = CropPolicy(size=256, scale=2.0, augment="topdown")
    seen_rotation = False
    for seed in range(6):
        rng = np.random.default_rng(seed)
        s = crop_sample(image, inst, policy, rng)
        assert s.image.shape == (256, 256, 3) and s.masks.shape[1:] == (256, 256) and len(s.masks) >= 3
        for m, b in zip(s.masks, s.boxes):
            ys, xs = np.nonzero(m)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == b.tolist()
        # nuclei are dark (haematoxylin): the pixels under the masks are darker than the others
        # (the photometric jitter moves both alike)
        inside = np.any(s.masks.astype(bool), axis=0)
        assert s.image[inside].mean() < s.image[~inside].mean() - 10, seed
        seen_rotation |= len(s.masks) > 0
    assert seen_rotation
    # scale: a 2x crop shows nuclei about twice as large (median side in px)
    sides = [np.sqrt(m.sum()) for m in crop_sample(image, inst, CropPolicy(size=256, scale=2.0, augment=None),
                                                   np.random.default_rng(0)).masks]
    src = [np.sqrt(c.sum()) for _, _, c in pieces]
    assert 1.6 < np.median(sides) / np.median(src) < 2.4


def test_dataloader_workers_give_the_in_process_samples(nuclei):
    """The trainer's sampler keys items by (index, epoch); each item's augmentation depends on
    (seed, epoch, item) only, so 2 worker processes give exactly the in-process batches."""
    from segcore.engine.trainer import _ResumableSampler

    records, categories = nuclei
    ds = InstanceDataset(records[:2], categories, input_size=128, augment=True,
                         crop=CropPolicy(size=128, scale=1.5, augment="topdown"), seed=5)
    assert len(ds) == 2 * round(1000 * 1000 * 1.5 ** 2 / 128 ** 2)     # crops tile the scaled area

    def batches(workers):
        sampler = _ResumableSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=5, drop_last=True)
        sampler.set_epoch(3)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=collate)
        return [b for _, b in zip(range(4), loader)]

    inproc, workers = batches(0), batches(2)
    for (ia, ta, _), (ib, tb, _) in zip(inproc, workers):
        assert torch.equal(ia, ib)
        for a, b in zip(ta, tb):
            assert torch.equal(a["gt_masks"], b["gt_masks"]) and torch.equal(a["gt_boxes"], b["gt_boxes"])
    assert not torch.equal(inproc[0][0], inproc[1][0])


def test_recipe_from_a_small_dense_project(nuclei):
    """What the docstring says: median nucleus 19 px -> 1.3 px... at the architecture's 256 px
    input, so images at scale 32 / 19 and 256 px crops; 1.5 x the densest image's instances."""
    records, _ = nuclei
    four = records[:4]
    stats = data_stats(four)
    most = max(len(r["annotations"]) for r in four)
    assert stats.instances == sum(len(r["annotations"]) for r in four) and stats.max_per_image == most
    assert 15 < stats.median_side < 25 and stats.median_image_side == 1000
    rec = recipe_for(stats, input_policy="short_side", input_size=256, default_max_detections=100)
    assert rec.input_scale == pytest.approx(MIN_OBJECT_PX / stats.median_side)
    assert rec.crop_size == CROP_SIZE and rec.max_detections == int(np.ceil(1.5 * most)) and rec.augment == "photo"
    assert any("would be" in n for n in rec.notes)
    # big objects: the architecture's own policy, the default cap when images are sparse
    big = [{"height": 480, "width": 640, "annotations": [{"bbox": [0, 0, 200, 150], "iscrowd": 0}] * 3}]
    rec = recipe_for(data_stats(big), input_policy="square", input_size=550, default_max_detections=100,
                     augment="topdown")
    assert rec.input_scale == 0 and rec.crop_size is None and rec.max_detections == 100 and rec.augment == "topdown"
    with pytest.raises(ValueError, match="augment"):
        recipe_for(stats, input_policy="square", input_size=550, default_max_detections=100, augment="sideways")


def test_model_keeps_scale_and_detections_through_a_checkpoint(tmp_path):
    from segcore.checkpoints import load_checkpoint, save_checkpoint
    from segcore.data.transforms import network_input_hw
    from segcore.modeling.registry import build_model

    m = build_model("centermask_tiny", num_classes=1, input_scale=1.7, max_detections=2800)
    assert (m.info.input_scale, m.info.max_detections, m.max_detections) == (1.7, 2800, 2800)
    assert network_input_hw(m.info, 1000, 1000) == (1700, 1700)
    save_checkpoint(tmp_path / "c.pth", m, categories=[{"id": 1, "name": "cell"}])
    again, _ = load_checkpoint(tmp_path / "c.pth")
    # 5 FCOS candidates per level for each detection kept: dense images have several per object
    assert again.info == m.info and again.pre_nms_topk == 14_000
    assert build_model("centermask_tiny", num_classes=1, max_detections=150).pre_nms_topk == 1000  # official
    with pytest.raises(ValueError, match="square input"):
        build_model("yolact_tiny", num_classes=1, input_scale=2.0)
