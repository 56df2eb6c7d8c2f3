"""YOLACT's official test-time input path (dbolya/yolact ``utils/augmentations.py``
``FastBaseTransform``, used by ``eval.py`` for ``--image`` / ``--images`` / ``--video``).

``eval.py`` reads the image with ``cv2.imread`` (BGR uint8), converts it to a float32 tensor and
``FastBaseTransform`` resizes it with ``F.interpolate(..., (S, S), mode="bilinear",
align_corners=False)`` (no antialiasing, aspect ratio not kept), then normalises with the
official ``MEANS`` / ``STD`` and flips BGR -> RGB. Interpolation acts on each channel alone, so
resizing the RGB image gives the same values in the flipped channel order, and the model's
normalisation (``(x - pixel_mean) / pixel_std``, RGB) is the same element-wise arithmetic.

The COCO benchmark path of ``eval.py`` (``COCODetection`` with ``BaseTransform``) resizes the
float32 image with ``cv2.resize`` (``INTER_LINEAR``) instead; it differs from ``F.interpolate``
by OpenCV's coefficient rounding only (at most 0.01 grey levels on 20 coco-tiny images at S =
320 / 550 / 700). Resizing the uint8 image with OpenCV, as training (``segcore.data``) does and
as segcore's predictor did before issue 14, differs by up to 0.8 grey levels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["yolact_test_resize"]


def yolact_test_resize(image: np.ndarray, input_size: int) -> torch.Tensor:
    """``[H, W, 3]`` uint8 (any channel order) -> ``[3, S, S]`` float32 CPU tensor, 0..255, as
    ``FastBaseTransform`` resizes it (module docstring).

    One channel at a time: the interpolation is per channel, so the values are those of the
    3-channel call, while the float32 copy of the image is ``H x W x 4`` bytes instead of
    ``H x W x 12`` (400 MB instead of 1.2 GB for a 100 MP photo)."""
    s = int(input_size)
    planes = []
    for c in range(image.shape[2]):
        plane = torch.from_numpy(np.ascontiguousarray(image[:, :, c])).float()[None, None]
        planes.append(F.interpolate(plane, (s, s), mode="bilinear", align_corners=False)[0, 0])
        del plane
    return torch.stack(planes)
