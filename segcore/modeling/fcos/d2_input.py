"""detectron2-style input handling shared by the FCOS-based models (BlendMask, CenterMask).

The models take RGB 0..255 float images ``[B, 3, H, W]`` with H and W multiples of 32 (the
dataset / predictor pad them) and feed the backbone BGR minus the detectron2 pixel mean with
std 1 (detectron2 ``configs/Base-RCNN-FPN.yaml`` ``PIXEL_MEAN``; AdelaiDet and centermask2 keep it).
"""

from __future__ import annotations

import torch

D2_PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
SIZE_DIVISIBILITY = 32


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
