"""detectron2-style input and output handling shared by the FCOS-based models (BlendMask, CenterMask).

The models take RGB 0..255 float images ``[B, 3, H, W]`` with H and W multiples of 32 (the
dataset / predictor pad them) and feed the backbone BGR minus the detectron2 pixel mean with
std 1 (detectron2 ``configs/Base-RCNN-FPN.yaml`` ``PIXEL_MEAN``; AdelaiDet and centermask2 keep it).

The official test-time path these families' weights were evaluated with (detectron2
``DefaultPredictor`` / the COCO evaluation data loader), reproduced by :func:`d2_test_resize`
(the Predictor's resize for these families) and :func:`scale_and_clip_boxes`:

1. ``ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST)``: output size from
   ``ResizeShortestEdge.get_output_shape`` (:func:`d2_output_shape`), image resized by
   ``ResizeTransform.apply_image``: Pillow ``Image.resize(..., Image.BILINEAR)`` on the uint8
   image (``detectron2/data/transforms/augmentation_impl.py``, ``transform.py``). Pillow's
   bilinear filter widens its support when shrinking, i.e. it antialiases; OpenCV's
   ``INTER_LINEAR`` does not, so the two differ by several grey levels on a downscaled photo.
2. float32 BGR, ``(x - PIXEL_MEAN) / PIXEL_STD``, ``ImageList.from_tensors`` padding with 0
   to a multiple of 32 (the model's :meth:`D2InputMixin.normalize` of an RGB image padded with
   the pixel mean gives exactly that).
3. ``detector_postprocess`` (``detectron2/modeling/postprocessing.py``): boxes scaled by
   ``(W / w, H / h)``, clipped to the original image, empty ones dropped, masks pasted at the
   clipped boxes.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["D2_PIXEL_MEAN_BGR", "SIZE_DIVISIBILITY", "D2InputMixin", "d2_output_shape", "d2_test_resize",
           "scale_and_clip_boxes"]

D2_PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
SIZE_DIVISIBILITY = 32


def d2_output_shape(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape`` with its float operations in its order:
    short side ``short``, then both sides shrunk so that the long side is at most ``max_size``,
    each rounded with ``int(v + 0.5)``. Returns ``(h, w)``.

    (``segcore.data.transforms.short_side_size``, used in training, computes one scale and
    multiplies each side by it; for some sizes its rounding gives one pixel more or less.)"""
    size = short * 1.0
    scale = size / min(height, width)
    if height < width:
        newh, neww = size, scale * width
    else:
        newh, neww = scale * height, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def d2_test_resize(image: np.ndarray, short: int, max_size: int) -> torch.Tensor:
    """The official test-time resize of one ``[H, W, 3]`` uint8 image (step 1 of the module
    docstring): ``[3, h, w]`` uint8 tensor on the CPU, channels as given (Pillow resizes each
    channel alone, so RGB in gives the official BGR result's channels flipped)."""
    from PIL import Image

    h, w = d2_output_shape(int(image.shape[0]), int(image.shape[1]), int(short), int(max_size))
    if (h, w) == tuple(image.shape[:2]):
        small = np.ascontiguousarray(image)  # detectron2 resizes to the same size: Pillow returns a copy
    else:
        small = np.array(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR))
    return torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)


def scale_and_clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int], input_hw: tuple[int, int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2 ``detector_postprocess`` on boxes (``Boxes.scale``, ``Boxes.clip``,
    ``Boxes.nonempty``): ``[N, 4]`` XYXY network-input pixels -> ``(boxes [M, 4]`` XYXY original
    pixels clipped to ``image_hw`` ``(H, W)``, ``keep [N]`` bool, the non-empty ones``)``;
    ``input_hw`` is the resized image's ``(h, w)``."""
    h, w = int(image_hw[0]), int(image_hw[1])
    hi, wi = int(input_hw[0]), int(input_hw[1])
    b = boxes.float().clone()
    b[:, 0::2] *= w / wi
    b[:, 1::2] *= h / hi
    b[:, 0::2] = b[:, 0::2].clamp(min=0, max=w)
    b[:, 1::2] = b[:, 1::2].clamp(min=0, max=h)
    keep = (b[:, 2] - b[:, 0] > 0) & (b[:, 3] - b[:, 1] > 0)
    return b[keep], keep


class D2InputMixin:
    """Adds ``pixel_mean`` / ``pixel_std`` buffers, :meth:`normalize` and :meth:`check_input`."""

    size_divisibility = SIZE_DIVISIBILITY

    def _init_d2_input(self) -> None:
        self.register_buffer("pixel_mean", torch.tensor(D2_PIXEL_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 -> detectron2 input (BGR minus the mean, std 1)."""
        return (images.flip(1) - self.pixel_mean) / self.pixel_std

    def check_input(self, images: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``images`` is ``[B, 3, H, W]`` with H, W multiples of 32."""
        name = type(self).__name__
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{name} expects [B, 3, H, W] RGB images, got {list(images.shape)}")
        h, w = images.shape[2:]
        if h % self.size_divisibility or w % self.size_divisibility:
            raise ValueError(f"{name} input H, W must be multiples of {self.size_divisibility}, got {h}x{w}")
