"""Torch dataset over segcore records: image reading, mask decoding, augmentation, targets.

Symbols: B batch, N instances (non-crowd), M crowd regions, H x W source image, S input side.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from segcore.data.crops import CropPolicy, RecordInstances, crop_sample
from segcore.data.transforms import (
    D2_PIXEL_MEAN_RGB,
    Sample,
    drop_small_boxes,
    hflip_sample,
    pad_images,
    resize_sample,
    resize_short_side,
    ssd_augment,
)

__all__ = ["InstanceDataset", "collate", "read_image_rgb", "decode_segmentation", "decode_cutout"]

#: Decoded images a crop-mode dataset keeps per process (bytes; 256 MB = 85 images of 1000 x 1000).
IMAGE_CACHE_BYTES = 256 * 2**20


def read_image_rgb(path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 with OpenCV, EXIF orientation applied.

    The one image reader of the project (the annotator's ``annotator.project.images.load_rgb``
    calls it). The file's bytes are read by Python and decoded by ``cv2.imdecode`` (so any path
    the OS accepts works, non-ASCII included); OpenCV applies the EXIF orientation, as
    ``cv2.imread`` does. When that makes the shape disagree with ``expected_hw`` (the
    annotation's height / width, e.g. a COCO file made from the raw pixel order) the raw pixel
    order is used instead.

    Args:
        path: image file (``str`` or ``os.PathLike``).
        expected_hw: ``(H, W)`` the annotations refer to, or None.

    Returns:
        ``[H, W, 3]`` uint8 RGB.

    Raises:
        FileNotFoundError: the file does not exist, cannot be read, or cannot be decoded.
        ValueError: the decoded size is not ``expected_hw`` (message names the file).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise FileNotFoundError(f"{path}: cannot read image: not a valid image file (corrupt or unsupported)")
    if expected_hw is not None and bgr.shape[:2] != tuple(expected_hw):
        raw = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if raw is not None and raw.shape[:2] == tuple(expected_hw):
            bgr = raw
        else:
            raise ValueError(f"{path}: image is {bgr.shape[1]}x{bgr.shape[0]} (WxH) but the record says "
                             f"width {expected_hw[1]}, height {expected_hw[0]}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: one H x W x 3 array at a time


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation with pycocotools.

    Args:
        segmentation: polygon list ``[[x1, y1, x2, y2, ...], ...]`` (pixels), uncompressed RLE
            ``{"size": [H, W], "counts": [int, ...]}`` or compressed RLE (``counts`` str/bytes).
        height, width: image size H, W.

    Returns:
        ``[H, W]`` uint8 {0, 1}; all zeros for a polygon list without any valid polygon
        (fewer than 3 points).

    Raises:
        ValueError: unsupported segmentation type.
    """
    if isinstance(segmentation, list):
        polys = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not polys:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in polys], height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, *segmentation["size"])
        else:
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword DeprecationWarning, once per mask
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = mask_utils.decode(rle)
    if mask.shape != (height, width):
        raise ValueError(f"segmentation size {mask.shape} does not match the image {(height, width)}")
    return mask


def decode_cutout(segmentation, bbox, height: int, width: int) -> tuple[int, int, np.ndarray]:
    """An annotation's mask cut to its box: ``(x0, y0, mask [h, w] uint8 {0, 1})`` with the mask's
    top-left pixel at ``(x0, y0)`` of the image. A polygon is rasterised (pycocotools) in the
    box's window only, so a small object in a big image costs its own size; an RLE is decoded
    whole and cut. ``bbox``: COCO XYWH pixels (the window is the box grown by 1 px, clipped).

    Raises:
        ValueError: unsupported segmentation, or an RLE of another size than the image.
    """
    x, y, bw, bh = (float(v) for v in bbox)
    x0, y0 = max(0, int(np.floor(x)) - 1), max(0, int(np.floor(y)) - 1)
    x1, y1 = min(width, int(np.ceil(x + bw)) + 1), min(height, int(np.ceil(y + bh)) + 1)
    if isinstance(segmentation, list) and x1 > x0 and y1 > y0:
        shifted = [[float(v) - (x0 if k % 2 == 0 else y0) for k, v in enumerate(p)] for p in segmentation]
        return x0, y0, decode_segmentation(shifted, y1 - y0, x1 - x0)
    full = decode_segmentation(segmentation, height, width)
    return x0, y0, np.ascontiguousarray(full[y0:y1, x0:x1]) if x1 > x0 and y1 > y0 else full


class InstanceDataset(Dataset):
    """Records -> ``(image, target, record)`` training items.

    Args:
        records: segcore records (``docs/INTERFACES.md``, ``segcore.data``).
        categories: ``[{"id", "name"}, ...]``; a COCO ``category_id`` maps to its position in
            this list (the contiguous class index 0..K-1).
        input_size: S, the square network input side.
        augment: apply the SSD augmentation of :func:`segcore.data.transforms.ssd_augment`
            (official YOLACT training); False = square resize only.
        min_box_size: instances whose box side at S is ``<= min_box_size`` px are dropped (4).
        max_aug_tries: when augmentation leaves no non-crowd instance in an image that had some,
            it is redrawn up to this many times, then the image is used un-augmented (the
            official loader instead draws another image).
        input_policy: ``"square"`` (default, YOLACT: everything above) or ``"short_side"``
            (detectron2 / AdelaiDet, BlendMask): resize keeping the aspect ratio so the short side
            is S (augment: drawn from ``train_sizes``) and the long side at most ``max_size``,
            horizontal flip with p 0.5 when augmenting; items are ``[3, h, w]`` (not padded:
            :func:`collate` with ``size_divisibility=32`` pads) and the target also has
            ``"input_hw": (h, w)``.
        max_size, train_sizes: for ``"short_side"`` (default ``max_size`` = S * 1333 / 800,
            ``train_sizes`` = (S,)).
        crop: a :class:`~segcore.data.crops.CropPolicy`: train on ``C x C`` crops of the image
            scaled by its ``scale`` instead (any input policy; ``augment`` is then the policy's
            preset: ``augment=False`` turns it off). Masks are decoded once per record and kept
            as box cut-outs (per DataLoader worker); items are ``[3, C, C]`` and the target has
            ``"input_hw": (C, C)``.
        seed: with the epoch and the item index, the seed of the item's augmentation
            (``numpy.random.default_rng((seed, epoch, item))``): DataLoader workers and this
            process give the same items.

    Items:
        ``image``: ``[3, S, S]`` float32 RGB 0..255; ``target``: ``{"gt_boxes": [N, 4] float32
        XYXY pixels at S, "gt_classes": [N] int64, "gt_masks": [N, S, S] uint8 {0, 1},
        "gt_crowd_boxes": [M, 4] float32}``; ``record``: the input record.

    Raises (from ``__getitem__``):
        FileNotFoundError / ValueError: unreadable image, size mismatch, or a category id not in
            ``categories`` (messages name the file).
    """

    def __init__(self, records: list[dict], categories: list[dict], *, input_size: int, augment: bool,
                 min_box_size: float = 4.0, max_aug_tries: int = 10, input_policy: str = "square",
                 max_size: int | None = None, train_sizes=None, crop: CropPolicy | None = None, seed: int = 0):
        self.records = list(records)
        self.categories = list(categories)
        self.input_size = int(input_size)
        self.augment = bool(augment)
        self.min_box_size = float(min_box_size)
        self.max_aug_tries = int(max_aug_tries)
        self.cat_to_index = {int(c["id"]): i for i, c in enumerate(self.categories)}
        if input_policy not in ("square", "short_side"):
            raise ValueError(f"input_policy must be 'square' or 'short_side', got {input_policy!r}")
        self.input_policy = input_policy
        self.max_size = int(max_size) if max_size else int(round(self.input_size * 1333 / 800))
        self.train_sizes = tuple(int(s) for s in train_sizes) if train_sizes else (self.input_size,)
        if crop is not None and not self.augment and crop.augment is not None:
            from dataclasses import replace

            crop = replace(crop, augment=None)
        self.crop = crop
        self.seed = int(seed)
        # crop mode: an epoch visits each image about as often as crops tile its scaled area
        self._item_record = list(range(len(self.records))) if crop is None else [
            i for i, r in enumerate(self.records)
            for _ in range(max(1, round(int(r["height"]) * int(r["width"]) * crop.scale ** 2 / crop.size ** 2)))]
        self._instances: dict[int, RecordInstances] = {}
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()  # crop mode: decoded images, LRU

    def __len__(self) -> int:
        """Items per epoch: the records, or in crop mode about ``H W s^2 / C^2`` crops per record."""
        return len(self._item_record)

    def load_sample(self, record: dict) -> Sample:
        """Read the image and decode the annotations of ``record`` at source resolution.

        Annotations with a non-positive box size or an empty mask are skipped."""
        h, w = int(record["height"]), int(record["width"])
        image = read_image_rgb(record["file_name"], (h, w)).astype(np.float32)
        masks, boxes, classes, crowd = [], [], [], []
        for ann in record.get("annotations", []):
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if bw <= 0 or bh <= 0:
                continue
            is_crowd = bool(ann.get("iscrowd", 0))
            if is_crowd:
                cls = -1
            else:
                cid = int(ann["category_id"])
                if cid not in self.cat_to_index:
                    raise ValueError(f"{record['file_name']}: category_id {cid} is not in the categories")
                cls = self.cat_to_index[cid]
            try:
                m = decode_segmentation(ann["segmentation"], h, w)
            except ValueError as exc:
                raise ValueError(f"{record['file_name']}: annotation segmentation: {exc}") from exc
            if not is_crowd and not m.any():
                continue
            masks.append(m)
            boxes.append([x, y, x + bw, y + bh])
            classes.append(cls)
            crowd.append(is_crowd)
        return Sample(
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=np.uint8),
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            classes=np.asarray(classes, dtype=np.int64),
            is_crowd=np.asarray(crowd, dtype=bool),
        )

    def record_instances(self, index: int) -> RecordInstances:
        """The record's instances as box cut-outs, decoded on first use (cached in this process)."""
        if index not in self._instances:
            record = self.records[index]
            h, w = int(record["height"]), int(record["width"])
            pieces, classes, crowd = [], [], []
            for ann in record.get("annotations", []):
                if float(ann["bbox"][2]) <= 0 or float(ann["bbox"][3]) <= 0:
                    continue
                is_crowd = bool(ann.get("iscrowd", 0))
                cid = int(ann["category_id"])
                if not is_crowd and cid not in self.cat_to_index:
                    raise ValueError(f"{record['file_name']}: category_id {cid} is not in the categories")
                try:
                    pieces.append(decode_cutout(ann["segmentation"], ann["bbox"], h, w))
                except ValueError as exc:
                    raise ValueError(f"{record['file_name']}: annotation segmentation: {exc}") from exc
                classes.append(-1 if is_crowd else self.cat_to_index[cid])
                crowd.append(is_crowd)
            self._instances[index] = RecordInstances.from_cutouts(pieces, classes, crowd)
        return self._instances[index]

    def _cached_image(self, index: int) -> np.ndarray:
        """The record's image, decoded once and kept while the images kept stay under
        :data:`IMAGE_CACHE_BYTES` (least recently used dropped first): crops revisit images."""
        if index in self._images:
            self._images.move_to_end(index)
            return self._images[index]
        record = self.records[index]
        image = read_image_rgb(record["file_name"], (int(record["height"]), int(record["width"])))
        self._images[index] = image
        while sum(im.nbytes for im in self._images.values()) > IMAGE_CACHE_BYTES and len(self._images) > 1:
            self._images.popitem(last=False)
        return image

    def _rng(self, epoch: int, item: int) -> np.random.Generator:
        """The item's own generator: a function of (seed, epoch, item) only, so augmentation and
        crops are the same in this process and in any DataLoader worker (and after a resume)."""
        return np.random.default_rng((self.seed, int(epoch), int(item)))

    def transform(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        """Augment (if enabled, with ``rng``; default the item 0 generator) and resize ``sample``
        to S, then drop small boxes."""
        size = self.input_size
        rng = rng if rng is not None else self._rng(0, 0)
        if self.input_policy == "short_side":
            if self.augment:
                short = int(self.train_sizes[int(rng.integers(len(self.train_sizes)))])
                out = resize_short_side(sample, short, self.max_size)
                if rng.integers(2):
                    out = hflip_sample(out)
            else:
                out = resize_short_side(sample, size, self.max_size)
            return drop_small_boxes(out, 0.0)
        if self.augment:
            had_regular = bool((~sample.is_crowd).any())
            for _ in range(self.max_aug_tries):
                out = drop_small_boxes(ssd_augment(sample, size, rng), self.min_box_size)
                if (~out.is_crowd).any() or not had_regular:
                    return out
        return drop_small_boxes(resize_sample(sample, size), self.min_box_size)

    def __getitem__(self, key):
        """``key``: an item index, or ``(item, epoch)`` (the trainer's sampler): the augmentation
        of an item depends on (seed, epoch, item) only."""
        item, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        index = self._item_record[item]
        record = self.records[index]
        rng = self._rng(epoch, item)
        if self.crop is not None:
            image = self._cached_image(index)
            out = drop_small_boxes(crop_sample(image, self.record_instances(index), self.crop, rng), 1.0)
        else:
            out = self.transform(self.load_sample(record), rng)
        image = torch.from_numpy(np.ascontiguousarray(out.image.transpose(2, 0, 1), dtype=np.float32))
        regular = ~out.is_crowd
        target = {
            "gt_boxes": torch.from_numpy(out.boxes[regular].astype(np.float32)).reshape(-1, 4),
            "gt_classes": torch.from_numpy(out.classes[regular].astype(np.int64)),
            "gt_masks": torch.from_numpy(np.ascontiguousarray(out.masks[regular], dtype=np.uint8)),
            "gt_crowd_boxes": torch.from_numpy(out.boxes[out.is_crowd].astype(np.float32)).reshape(-1, 4),
        }
        if self.input_policy == "short_side" or self.crop is not None:
            target["input_hw"] = (int(image.shape[1]), int(image.shape[2]))
        return image, target, record


def collate(batch: list, size_divisibility: int = 0, pad_value=D2_PIXEL_MEAN_RGB
            ) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Collate ``InstanceDataset`` items.

    Args:
        batch: items ``(image, target, record)``.
        size_divisibility: 0 (square policy) stacks equal-size images; > 0 pads every image at
            the bottom / right with ``pad_value`` (RGB) to the batch's largest H, W rounded up to
            this multiple (``"short_side"`` policy, 32).

    Returns:
        ``(images [B, 3, S, S] float32 (padded [B, 3, H, W] with size_divisibility), targets
        list of B dicts, records list of B dicts)``.
    """
    if size_divisibility > 0:
        images = pad_images([item[0] for item in batch], int(size_divisibility), pad_value)
        return images, [item[1] for item in batch], [item[2] for item in batch]
    images = torch.stack([item[0] for item in batch])
    return images, [item[1] for item in batch], [item[2] for item in batch]
