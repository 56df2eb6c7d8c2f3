"""Training-time augmentation (SSD style, as in official YOLACT) and the square resize.

Reproduces ``SSDAugmentation`` of dbolya/yolact ``utils/augmentations.py`` (YOLACT paper
Sec. 6, "we use the same data augmentation as SSD"): photometric distortion, expand (zoom out
onto a mean-filled canvas, ratio 1..4), random sample crop with the SSD min-IoU choices,
horizontal mirror, square resize to S x S without keeping the aspect ratio, and dropping boxes
whose side is at most 4 px at S (official ``discard_box_width = 4 / 550``).

Differences from the official code, all deliberate:

* The image is RGB (official works on BGR); the expand fill is the RGB mean.
* After the photometric distortion the image is clipped to 0..255 (official leaves it
  unclipped) so the dataset contract "float32 RGB 0..255" holds.
* Expand, crop, mirror and resize are composed into one affine map and applied once with
  ``cv2.warpAffine`` (bilinear for the image, bilinear + threshold 0.5 for the masks), so the up
  to 16x larger expand canvas is never allocated. The result equals expand -> crop -> mirror ->
  resize up to interpolation rounding.
* The crop keeps the official acceptance test verbatim, including its no-op min-IoU check
  (``overlap.min() < min_iou and max_iou < overlap.max()``; the official comment says fixing it
  halved the mAP), and its rule that the crop must keep the centre of at least one non-crowd box.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a seed reproduces it.
Symbols: N instances (crowd regions included), H x W source image, S network input side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "PIXEL_MEAN_RGB",
    "Sample",
    "photometric_distort",
    "ssd_augment",
    "resize_sample",
    "drop_small_boxes",
    "resize_masks",
    "short_side_size",
    "resize_short_side",
    "hflip_sample",
    "pad_images",
    "D2_PIXEL_MEAN_RGB",
    "network_input_hw",
    "MAX_SCALED_SIDE",
]

#: ImageNet mean in RGB, 0..255 (official ``MEANS`` is the same in BGR order).
PIXEL_MEAN_RGB = (123.68, 116.78, 103.94)

#: ``RandomSampleCrop.sample_options`` of the official code (None = keep the whole image).
_CROP_OPTIONS = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))

_CV_CHUNK = 128  # channels per cv2 call (OpenCV rejects >= 256 channels in warpAffine / resize)


@dataclass
class Sample:
    """One image with its instances, in the coordinates of ``image``.

    Attributes:
        image: ``[H, W, 3]`` float32 RGB, 0..255.
        masks: ``[N, H, W]`` uint8 {0, 1}, aligned with ``boxes``.
        boxes: ``[N, 4]`` float32 XYXY absolute pixels.
        classes: ``[N]`` int64 contiguous class index, -1 for crowd regions.
        is_crowd: ``[N]`` bool.
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    is_crowd: np.ndarray

    def select(self, keep: np.ndarray) -> "Sample":
        """The same sample with only the instances where ``keep`` (bool ``[N]``) is True."""
        return Sample(self.image, self.masks[keep], self.boxes[keep], self.classes[keep], self.is_crowd[keep])


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (official ``PhotometricDistort``).

    Brightness +-32 (p 0.5); then either contrast [0.5, 1.5] before or after the HSV step
    (each p 0.5); saturation x[0.5, 1.5] (p 0.5) and hue +-18 degrees (p 0.5) in HSV. The channel
    shuffle of SSD is disabled, as in the official code. Output clipped to 0..255.

    Args:
        image: ``[H, W, 3]`` float32 RGB 0..255 (not modified).
        rng: random generator.

    Returns:
        ``[H, W, 3]`` float32 RGB 0..255.
    """
    im = image.astype(np.float32, copy=True)
    if rng.integers(2):
        im += rng.uniform(-32.0, 32.0)
    contrast_first = bool(rng.integers(2))

    def contrast(x: np.ndarray) -> np.ndarray:
        if rng.integers(2):
            x *= rng.uniform(0.5, 1.5)
        return x

    if contrast_first:
        im = contrast(im)
    hsv = cv2.cvtColor(im, cv2.COLOR_RGB2HSV)  # float32: H in degrees 0..360, S 0..1, V as input
    if rng.integers(2):
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
    if rng.integers(2):
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-18.0, 18.0), 360.0)
    im = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first:
        im = contrast(im)
    np.clip(im, 0.0, 255.0, out=im)
    return im


def _box_iou_one(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """IoU of ``boxes`` ``[N, 4]`` XYXY with one box ``rect`` ``[4]`` (official ``jaccard_numpy``)."""
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_b = (rect[2] - rect[0]) * (rect[3] - rect[1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def _sample_crop(boxes: np.ndarray, is_crowd: np.ndarray, height: int, width: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Official ``RandomSampleCrop`` decision. Returns ``(rect int [4] XYXY, keep bool [N])`` or
    None for "keep the whole image"."""
    if len(boxes) == 0 or not (~is_crowd).any():
        return None
    while True:
        mode = _CROP_OPTIONS[int(rng.integers(len(_CROP_OPTIONS)))]
        if mode is None:
            return None
        min_iou = -np.inf if mode[0] is None else mode[0]
        max_iou = np.inf if mode[1] is None else mode[1]
        for _ in range(50):
            w = rng.uniform(0.3 * width, width)
            h = rng.uniform(0.3 * height, height)
            if h / w < 0.5 or h / w > 2:
                continue
            left = rng.uniform(0, width - w)
            top = rng.uniform(0, height - h)
            rect = np.array([int(left), int(top), int(left + w), int(top + h)], dtype=np.int64)
            overlap = _box_iou_one(boxes, rect.astype(np.float32))
            if overlap.min() < min_iou and max_iou < overlap.max():  # official (no-op) test
                continue
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
            keep = ((rect[0] < centers[:, 0]) & (rect[1] < centers[:, 1])
                    & (rect[2] > centers[:, 0]) & (rect[3] > centers[:, 1]))
            if not keep.any() or not (keep & ~is_crowd).any():
                continue
            return rect, keep


def _warp(arr: np.ndarray, matrix: np.ndarray, size: int, flags: int, border_value) -> np.ndarray:
    """``cv2.warpAffine`` of an ``[H, W, C]`` array to ``[size, size, C]`` (C may be large)."""
    out = []
    for c0 in range(0, arr.shape[2], _CV_CHUNK):
        part = np.ascontiguousarray(arr[:, :, c0:c0 + _CV_CHUNK])
        res = cv2.warpAffine(part, matrix, (size, size), flags=flags,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
        out.append(res.reshape(size, size, -1))
    return np.concatenate(out, axis=2) if len(out) > 1 else out[0]


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Resize binary masks to ``size x size`` (bilinear on 0/255, then > 127, i.e. "area > 0.5").

    Args:
        masks: ``[N, H, W]`` uint8 {0, 1}.
        size: S.

    Returns:
        ``[N, S, S]`` uint8 {0, 1}.
    """
    n = masks.shape[0]
    if n == 0:
        return np.zeros((0, size, size), dtype=np.uint8)
    hwc = np.ascontiguousarray(masks.transpose(1, 2, 0)) * np.uint8(255)
    out = []
    for c0 in range(0, n, _CV_CHUNK):
        res = cv2.resize(np.ascontiguousarray(hwc[:, :, c0:c0 + _CV_CHUNK]), (size, size),
                         interpolation=cv2.INTER_LINEAR)
        out.append(res.reshape(size, size, -1))
    res = np.concatenate(out, axis=2)
    return (res.transpose(2, 0, 1) > 127).astype(np.uint8)


def resize_sample(sample: Sample, size: int) -> Sample:
    """Square resize to ``size x size`` without keeping the aspect ratio (official ``Resize``
    with ``preserve_aspect_ratio False``): image ``cv2.INTER_LINEAR`` (the predictor uses the
    same call), masks via :func:`resize_masks`, boxes scaled and clipped to [0, S]."""
    h, w = sample.image.shape[:2]
    image = cv2.resize(sample.image, (size, size), interpolation=cv2.INTER_LINEAR)
    boxes = sample.boxes.astype(np.float32, copy=True)
    boxes[:, 0::2] *= size / w
    boxes[:, 1::2] *= size / h
    np.clip(boxes, 0, size, out=boxes)
    return Sample(image, resize_masks(sample.masks, size), boxes, sample.classes, sample.is_crowd)


def drop_small_boxes(sample: Sample, min_size: float = 4.0) -> Sample:
    """Drop instances whose box width or height is ``<= min_size`` pixels (official: keep
    ``w > discard_box_width * max_size``, 4 px at any S; 0-area boxes gave inf losses, YOLACT
    CHANGELOG 2019-12-06)."""
    wh = sample.boxes[:, 2:] - sample.boxes[:, :2]
    return sample.select((wh[:, 0] > min_size) & (wh[:, 1] > min_size))


def ssd_augment(sample: Sample, size: int, rng: np.random.Generator, *, photometric: bool = True,
                expand: bool = True, crop: bool = True, mirror: bool = True,
                max_expand_ratio: float = 4.0, fill=PIXEL_MEAN_RGB) -> Sample:
    """SSD augmentation + square resize (official ``SSDAugmentation`` up to ``Resize``).

    Args:
        sample: source image ``[H, W, 3]`` float32 RGB 0..255 with masks / boxes in its pixels.
        size: S, the output side.
        rng: random generator (all randomness).
        photometric, expand, crop, mirror: switch the individual steps (each random, p 0.5 for
            expand and mirror; crop picks "whole image" with p 1/6 per round as official).
        max_expand_ratio: largest canvas / image side ratio for expand (official 4).
        fill: RGB value of the expand canvas.

    Returns:
        A :class:`Sample` at ``[S, S]``: image float32 RGB 0..255, masks uint8 ``[N', S, S]``,
        boxes float32 XYXY pixels at S clipped to [0, S]; small boxes are not dropped here
        (see :func:`drop_small_boxes`).
    """
    image = photometric_distort(sample.image, rng) if photometric else sample.image
    h, w = image.shape[:2]
    boxes = sample.boxes.astype(np.float64, copy=True)
    # Affine map (continuous pixel-edge coordinates) from source image to current canvas.
    ox = oy = 0.0
    cw, ch = float(w), float(h)
    if expand and rng.integers(2) == 0:  # official: `if random.randint(2): return`
        ratio = rng.uniform(1.0, max_expand_ratio)
        left = rng.uniform(0, w * ratio - w)
        top = rng.uniform(0, h * ratio - h)
        ox, oy = float(int(left)), float(int(top))
        cw, ch = float(int(w * ratio)), float(int(h * ratio))
        boxes[:, 0::2] += ox
        boxes[:, 1::2] += oy
    keep = np.ones(len(boxes), dtype=bool)
    x0 = y0 = 0.0
    if crop:
        res = _sample_crop(boxes, sample.is_crowd, int(ch), int(cw), rng)
        if res is not None:
            rect, keep = res
            boxes[:, :2] = np.maximum(boxes[:, :2], rect[:2])
            boxes[:, 2:] = np.minimum(boxes[:, 2:], rect[2:])
            boxes -= np.tile(rect[:2], 2)
            x0, y0 = float(rect[0]), float(rect[1])
            cw, ch = float(rect[2] - rect[0]), float(rect[3] - rect[1])
    flip = bool(mirror and rng.integers(2))
    sx, sy = size / cw, size / ch
    # continuous map: u = sx * (x + ox - x0) [mirrored: size - u], v = sy * (y + oy - y0)
    a = np.array([[sx, 0.0, sx * (ox - x0)], [0.0, sy, sy * (oy - y0)]], dtype=np.float64)
    boxes[:, 0::2] *= sx
    boxes[:, 1::2] *= sy
    if flip:
        a[0] = -a[0]
        a[0, 2] += size
        boxes[:, 0::2] = size - boxes[:, 2::-2]
    np.clip(boxes, 0, size, out=boxes)
    # pixel-index matrix for cv2 (pixel centres at +0.5): t' = t + A_lin @ [0.5, 0.5] - 0.5
    m = a.copy()
    m[:, 2] += a[:, :2] @ np.array([0.5, 0.5]) - 0.5
    m = m.astype(np.float32)
    out_img = _warp(image, m, size, cv2.INTER_LINEAR, tuple(float(v) for v in fill))
    masks = sample.masks[keep]
    if len(masks):
        hwc = np.ascontiguousarray(masks.transpose(1, 2, 0)) * np.uint8(255)
        out_masks = (_warp(hwc, m, size, cv2.INTER_LINEAR, 0).transpose(2, 0, 1) > 127).astype(np.uint8)
    else:
        out_masks = np.zeros((0, size, size), dtype=np.uint8)
    return Sample(out_img.astype(np.float32, copy=False), out_masks, boxes[keep].astype(np.float32),
                  sample.classes[keep], sample.is_crowd[keep])


# ------------------------------------------------------------------------------------------
# detectron2-style input policy (BlendMask / FCOS family): short side S, long side <= max_size.


def short_side_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``: scale so the short side is ``short``,
    then shrink so the long side is at most ``max_size``; sides rounded half up.

    Returns:
        ``(h, w)`` of the resized image."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


#: Longest side of an image used at a data-driven input scale (``ModelInfo.input_scale``): bigger
#: inputs are shrunk to it (a 9000 px photo at scale 1 would not fit a laptop's memory).
MAX_SCALED_SIDE = 4096


def network_input_hw(info, height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` an image of ``height x width`` is resized to for a model (its ``ModelInfo``),
    before padding: ``input_scale`` > 0: ``round(side x s)``, the long side at most
    :data:`MAX_SCALED_SIDE`; ``"short_side"``: :func:`short_side_size` with S and ``max_size``;
    ``"square"``: ``(S, S)``."""
    if info.input_scale > 0:
        scale = min(float(info.input_scale), MAX_SCALED_SIDE / max(height, width))
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    if info.input_policy == "short_side":
        return short_side_size(height, width, info.input_size, info.max_size or info.input_size)
    return info.input_size, info.input_size


def resize_short_side(sample: Sample, short: int, max_size: int) -> Sample:
    """Resize ``sample`` keeping the aspect ratio (:func:`short_side_size`): image bilinear
    (``cv2.INTER_LINEAR``), masks bilinear on 0/255 then > 127, boxes scaled and clipped."""
    h, w = sample.image.shape[:2]
    nh, nw = short_side_size(h, w, short, max_size)
    image = cv2.resize(sample.image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    boxes = sample.boxes.astype(np.float32, copy=True)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2] * (nw / w), 0, nw)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2] * (nh / h), 0, nh)
    n = sample.masks.shape[0]
    if n:
        hwc = np.ascontiguousarray(sample.masks.transpose(1, 2, 0)) * np.uint8(255)
        parts = [cv2.resize(np.ascontiguousarray(hwc[:, :, c:c + _CV_CHUNK]), (nw, nh),
                            interpolation=cv2.INTER_LINEAR).reshape(nh, nw, -1) for c in range(0, n, _CV_CHUNK)]
        masks = (np.concatenate(parts, axis=2).transpose(2, 0, 1) > 127).astype(np.uint8)
    else:
        masks = np.zeros((0, nh, nw), dtype=np.uint8)
    return Sample(image, masks, boxes, sample.classes, sample.is_crowd)


def hflip_sample(sample: Sample) -> Sample:
    """Horizontal flip of image, masks and boxes (detectron2 ``RandomFlip``)."""
    w = sample.image.shape[1]
    boxes = sample.boxes.copy()
    boxes[:, 0], boxes[:, 2] = w - sample.boxes[:, 2], w - sample.boxes[:, 0]
    return Sample(np.ascontiguousarray(sample.image[:, ::-1]), np.ascontiguousarray(sample.masks[:, :, ::-1]),
                  boxes, sample.classes, sample.is_crowd)


#: detectron2 ``MODEL.PIXEL_MEAN`` in RGB order (BlendMask pads with it).
D2_PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)


def pad_images(images: list, divisor: int, fill=D2_PIXEL_MEAN_RGB):
    """Pad ``[3, h_i, w_i]`` float tensors at the bottom / right to one ``[B, 3, H, W]`` batch,
    H and W the largest sizes rounded up to ``divisor`` (0 = no rounding), filled with ``fill``
    (RGB; the pixel mean, so the normalised padding is 0 as in detectron2 ``ImageList``)."""
    import torch

    hmax = max(int(im.shape[1]) for im in images)
    wmax = max(int(im.shape[2]) for im in images)
    if divisor > 0:
        hmax = -(-hmax // divisor) * divisor
        wmax = -(-wmax // divisor) * divisor
    out = torch.empty((len(images), 3, hmax, wmax), dtype=images[0].dtype, device=images[0].device)
    out[:] = torch.tensor(fill, dtype=images[0].dtype, device=images[0].device).view(1, 3, 1, 1)
    for i, im in enumerate(images):
        out[i, :, :im.shape[1], :im.shape[2]] = im
    return out
