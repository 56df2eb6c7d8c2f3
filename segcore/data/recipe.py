"""Training defaults made from the project's data: input scale, crops, detections per image.

A person labelling cells, parts or materials rarely has objects the size COCO photos have. The
rules (each decision is returned with a one-line reason for the job's log):

* **Input scale.** The mask heads need objects of at least :data:`MIN_OBJECT_PX` px at the input
  (YOLACT's prototypes are 1/4 of the input, CenterMask's and BlendMask's masks are pooled from
  stride-8 features). Under the architecture's own input policy (square S, or short side S) the
  median labelled object (``sqrt`` of its box area) becomes ``median x S / image side``. When that
  is at least 32 px the policy stays as it is. Otherwise the images are used at the input scale
  ``s = 32 / median`` (image pixels x s; at most :data:`MAX_SCALE`) and the model trains on
  ``C x C`` crops (:mod:`segcore.data.crops`, ``C`` = :data:`CROP_SIZE`) instead of squeezed
  whole images; it predicts on whole images at that scale.
* **Detections per image**: at least 1.5 x the largest number of instances in a labelled image
  (dense sets have 300-1,900 per image; the official caps of 50-100 would cap what can be
  accepted), and never fewer than the architecture's own default.
* **Augmentation**: ``"photo"`` (flips left / right, scale jitter, colour) unless the caller asks
  for ``"topdown"`` (also flips up / down and 90-degree rotations: microscopy, aerial, documents),
  which the user picks in the Train dialog / ``--augment``.

Symbols: s input scale, C crop side, S the architecture's input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DataStats", "Recipe", "data_stats", "recipe_for", "MIN_OBJECT_PX", "MAX_SCALE", "CROP_SIZE",
           "DETECTIONS_MARGIN"]

MIN_OBJECT_PX = 32
MAX_SCALE = 4.0
CROP_SIZE = 256
DETECTIONS_MARGIN = 1.5


@dataclass(frozen=True)
class DataStats:
    """What the labelled data look like.

    Attributes:
        images: labelled images; instances: non-crowd instances.
        median_side: median ``sqrt(box area)`` of the instances, image pixels (0 without any).
        max_per_image: most instances in one image.
        median_image_side: median of the images' shorter sides, pixels.
    """

    images: int
    instances: int
    median_side: float
    max_per_image: int
    median_image_side: float


@dataclass(frozen=True)
class Recipe:
    """The data-driven training / inference settings (see the module docstring).

    Attributes:
        input_scale: s (0: the architecture's own input policy).
        crop_size: C when training on crops, else None.
        max_detections: detections kept per image.
        augment: ``"photo"`` or ``"topdown"``.
        notes: one line per decision, with the figures it rests on.
    """

    input_scale: float
    crop_size: int | None
    max_detections: int
    augment: str
    notes: list[str] = field(default_factory=list)


def data_stats(records: list[dict]) -> DataStats:
    """:class:`DataStats` of segcore records (``docs/INTERFACES.md``)."""
    sides, counts, image_sides = [], [], []
    for r in records:
        n = 0
        for a in r.get("annotations", []):
            if a.get("iscrowd"):
                continue
            w, h = float(a["bbox"][2]), float(a["bbox"][3])
            if w > 0 and h > 0:
                sides.append(math.sqrt(w * h))
                n += 1
        counts.append(n)
        image_sides.append(min(int(r["height"]), int(r["width"])))
    return DataStats(images=len(records), instances=len(sides),
                     median_side=float(np.median(sides)) if sides else 0.0,
                     max_per_image=max(counts, default=0),
                     median_image_side=float(np.median(image_sides)) if image_sides else 0.0)


def recipe_for(stats: DataStats, *, input_policy: str, input_size: int, default_max_detections: int,
               augment: str | None = None, max_detections: int | None = None) -> Recipe:
    """The recipe for data ``stats`` and an architecture's input policy (``ModelInfo``).

    Args:
        stats: :func:`data_stats` of the training records.
        input_policy, input_size: the architecture's ``"square"`` / ``"short_side"`` and S.
        default_max_detections: the architecture's own cap.
        augment: ``"photo"`` / ``"topdown"`` (None: ``"photo"``).
        max_detections: an explicit cap (None: from the data).

    Raises:
        ValueError: an unknown ``augment``.
    """
    if augment not in (None, "photo", "topdown"):
        raise ValueError(f"augment must be 'photo' or 'topdown', got {augment!r}")
    notes = []
    scale, crop = 0.0, None
    if stats.instances and stats.median_side > 0 and stats.median_image_side > 0:
        at_input = stats.median_side * input_size / stats.median_image_side
        if at_input >= MIN_OBJECT_PX:
            notes.append(f"median object {stats.median_side:.0f} px is {at_input:.0f} px at the {input_policy} "
                         f"input {input_size}: the architecture's own input policy")
        else:
            scale = min(MAX_SCALE, MIN_OBJECT_PX / stats.median_side)
            crop = CROP_SIZE
            notes.append(f"median object {stats.median_side:.0f} px would be {at_input:.0f} px at the "
                         f"{input_policy} input {input_size}: images at scale {scale:.2f} "
                         f"(median object {stats.median_side * scale:.0f} px), training on {crop} px crops")
    if max_detections is None:
        max_detections = max(int(default_max_detections), int(math.ceil(DETECTIONS_MARGIN * stats.max_per_image)))
        notes.append(f"up to {stats.max_per_image} instances in a labelled image: {max_detections} detections "
                     "per image")
    return Recipe(input_scale=float(scale), crop_size=crop, max_detections=int(max_detections),
                  augment=augment or "photo", notes=notes)
