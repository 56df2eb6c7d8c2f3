"""Training on crops at (near) native resolution: the data path for small objects and big images.

Squeezing a 1000 x 1000 microscopy tile into a 320 x 320 square makes a 19 px nucleus 6 px at
the input and 1.5 px on YOLACT's prototypes; no training recovers that. Instead, each training
item is a ``C x C`` crop of the image scaled by ``s`` (the input scale: input pixels per image
pixel, chosen from the labelled objects' sizes, ``segcore.data.recipe``), centred near a random
labelled object, with augmentation suited to the imagery:

* ``"photo"``: horizontal flip, scale jitter, photometric distortion (brightness, contrast,
  saturation, hue: :func:`segcore.data.transforms.photometric_distort`);
* ``"topdown"`` (microscopy, aerial, documents: no "up"): additionally vertical flip and 90-degree
  rotations;
* ``None``: the crop only.

One affine map per item (scale, jitter, rotation, flips, crop) is applied once with
``cv2.warpAffine`` to the image and to each instance's mask. Masks are decoded once per record and
kept as their box's cut-out (:class:`RecordInstances`), and each instance is warped only into its
own box at the output, so a crop of a 1,900-instance image costs what its few dozen instances
cost, never N x H x W.

Symbols: C crop side (output pixels), s input scale, N instances, H x W source image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segcore.data.transforms import Sample, photometric_distort

__all__ = ["CropPolicy", "RecordInstances", "crop_sample", "AUGMENTATIONS"]

#: Augmentation presets of :class:`CropPolicy` (``None`` = no augmentation).
AUGMENTATIONS = ("photo", "topdown", None)


@dataclass(frozen=True)
class CropPolicy:
    """How training crops are made.

    Attributes:
        size: C, the crop side in input pixels (a multiple of 32 for the FCOS families).
        scale: s, input pixels per image pixel (>1 enlarges small objects).
        augment: ``"photo"``, ``"topdown"`` or None (see the module docstring).
        scale_jitter: the scale is multiplied by a log-uniform factor in this range when augmenting.
        object_centred: probability that a crop is centred near a labelled object (else anywhere).
        min_visible: an instance cut by the crop border is kept when at least this share of its
            mask area is inside the crop (else dropped: a sliver teaches nothing).
        fill: RGB value outside the image (the pixel mean).
    """

    size: int = 320
    scale: float = 1.0
    augment: str | None = "photo"
    scale_jitter: tuple[float, float] = (0.8, 1.25)
    object_centred: float = 0.9
    min_visible: float = 0.3
    fill: tuple[float, float, float] = (123.675, 116.28, 103.53)

    def __post_init__(self):
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.size < 32 or self.scale <= 0:
            raise ValueError(f"crop size must be >= 32 and scale > 0, got {self.size}, {self.scale}")


@dataclass
class RecordInstances:
    """A record's instances decoded once: ``boxes`` ``[N, 4]`` int XYXY (exclusive) windows of
    the source image, ``cutouts`` N uint8 {0, 1} masks of those windows, ``classes`` ``[N]``
    int64 (-1 crowd), ``is_crowd`` ``[N]`` bool, ``areas`` ``[N]`` mask pixels."""

    boxes: np.ndarray
    cutouts: list
    classes: np.ndarray
    is_crowd: np.ndarray
    areas: np.ndarray

    @classmethod
    def from_cutouts(cls, cutouts, classes, is_crowd) -> "RecordInstances":
        """From ``(x0, y0, mask)`` pieces: each instance's mask (uint8 {0, 1}) placed at ``(x0, y0)``
        of the source image (trimmed here to its tight box; an empty mask keeps area 0)."""
        boxes, pieces, areas = [], [], []
        for x0, y0, m in cutouts:
            ys, xs = np.nonzero(m)
            if len(ys) == 0:
                boxes.append((0, 0, 0, 0))
                pieces.append(np.zeros((0, 0), np.uint8))
                areas.append(0)
                continue
            a0, b0, a1, b1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            boxes.append((x0 + a0, y0 + b0, x0 + a1, y0 + b1))
            pieces.append(np.ascontiguousarray(m[b0:b1, a0:a1], dtype=np.uint8))
            areas.append(len(ys))
        return cls(np.asarray(boxes, np.int64).reshape(-1, 4), pieces, np.asarray(classes, np.int64),
                   np.asarray(is_crowd, bool), np.asarray(areas, np.int64))


def _affine(center: np.ndarray, scale: float, size: int, k_rot: int, hflip: bool, vflip: bool) -> np.ndarray:
    """2 x 3 map from source pixel-edge coordinates to output coordinates: scale about ``center``
    to the middle of a ``size`` square, then rotate by ``k_rot`` x 90 degrees and flip."""
    half = size / 2.0
    a = np.array([[scale, 0.0, half - scale * center[0]], [0.0, scale, half - scale * center[1]]])
    for _ in range(k_rot % 4):  # (u, v) -> (v, size - u): 90 degrees
        a = np.array([a[1], [-a[0, 0], -a[0, 1], size - a[0, 2]]])
    if hflip:
        a[0] = -a[0]
        a[0, 2] += size
    if vflip:
        a[1] = -a[1]
        a[1, 2] += size
    return a


def _pixel_matrix(a: np.ndarray) -> np.ndarray:
    """The cv2 (pixel-centre) matrix of an edge-coordinate affine map."""
    m = a.copy()
    m[:, 2] += a[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return m.astype(np.float32)


def crop_sample(image: np.ndarray, inst: RecordInstances, policy: CropPolicy, rng: np.random.Generator) -> Sample:
    """One training crop (see the module docstring).

    Args:
        image: ``[H, W, 3]`` float32 or uint8 RGB.
        inst: the record's instances (:class:`RecordInstances`).
        policy: the :class:`CropPolicy`.
        rng: all randomness.

    Returns:
        A :class:`~segcore.data.transforms.Sample` at ``[C, C]``: image float32 RGB 0..255 (clipped),
        masks ``[N', C, C]`` uint8, boxes ``[N', 4]`` float32 XYXY of the visible masks, classes,
        is_crowd. Instances mostly outside the crop are dropped.
    """
    h, w = image.shape[:2]
    size = int(policy.size)
    scale = float(policy.scale)
    aug = policy.augment
    if aug is not None:
        lo, hi = policy.scale_jitter
        scale *= float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    window = size / scale  # source pixels across the crop
    regular = np.flatnonzero(~inst.is_crowd & (inst.areas > 0))
    if len(regular) and rng.random() < policy.object_centred:
        x0, y0, x1, y1 = inst.boxes[int(rng.choice(regular))]
        centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]) + rng.uniform(-0.35, 0.35, 2) * window
    else:
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    # keep the crop inside the image where it fits (less padding to learn nothing from)
    for axis, extent in ((0, w), (1, h)):
        if window <= extent:
            centre[axis] = float(np.clip(centre[axis], window / 2.0, extent - window / 2.0))
        else:
            centre[axis] = extent / 2.0
    k_rot = int(rng.integers(4)) if aug == "topdown" else 0
    hflip = bool(aug in ("photo", "topdown") and rng.integers(2))
    vflip = bool(aug == "topdown" and rng.integers(2))
    a = _affine(centre, scale, size, k_rot, hflip, vflip)
    m = _pixel_matrix(a)
    out = cv2.warpAffine(np.ascontiguousarray(image, dtype=np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in policy.fill))
    if aug is not None:
        out = photometric_distort(out, rng)
    # instances whose source window meets the crop's source window
    half = window / 2.0 + 2
    near = np.flatnonzero((inst.boxes[:, 2] > centre[0] - half) & (inst.boxes[:, 0] < centre[0] + half)
                          & (inst.boxes[:, 3] > centre[1] - half) & (inst.boxes[:, 1] < centre[1] + half)
                          & (inst.areas > 0))
    masks, boxes, classes, crowd = [], [], [], []
    for i in near:
        bx0, by0, bx1, by1 = (int(v) for v in inst.boxes[i])
        corners = np.array([[bx0, by0, 1.0], [bx1, by0, 1.0], [bx0, by1, 1.0], [bx1, by1, 1.0]]) @ a.T
        ox0, oy0 = np.floor(corners.min(axis=0)).astype(int) - 1
        ox1, oy1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        cx0, cy0, cx1, cy1 = max(ox0, 0), max(oy0, 0), min(ox1, size), min(oy1, size)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        # map from the cut-out's pixels to the visible part of its output box
        local = a.copy()
        local[:, 2] += a[:, :2] @ np.array([bx0, by0], float) - np.array([cx0, cy0], float)
        part = cv2.warpAffine(inst.cutouts[i] * np.uint8(255), _pixel_matrix(local), (cx1 - cx0, cy1 - cy0),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 127
        visible = int(part.sum())
        if visible == 0:
            continue
        if not inst.is_crowd[i] and visible < policy.min_visible * inst.areas[i] * scale * scale:
            continue
        full = np.zeros((size, size), np.uint8)
        full[cy0:cy1, cx0:cx1] = part
        ys, xs = np.nonzero(part)
        masks.append(full)
        boxes.append([cx0 + xs.min(), cy0 + ys.min(), cx0 + xs.max() + 1, cy0 + ys.max() + 1])
        classes.append(inst.classes[i])
        crowd.append(inst.is_crowd[i])
    return Sample(image=out.astype(np.float32, copy=False),
                  masks=np.stack(masks) if masks else np.zeros((0, size, size), np.uint8),
                  boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                  classes=np.asarray(classes, np.int64), is_crowd=np.asarray(crowd, bool))
