"""SAG-Mask: spatial attention-guided mask head, mask targets, ``loss_mask``.

Symbol legend: R RoIs, C channels, K classes (no background), G ground-truth instances of one
image batch, M = 28 mask side, H x W image (network input) size. Boxes are XYXY absolute pixels.

Source: CenterMask paper section 2.3 "Spatial Attention-Guided Mask" (SAM, Eq. 3-4) and Figure 2;
centermask2 ``centermask/modeling/centermask/sam.py`` (``SpatialAttention``,
``SpatialAttentionMaskHead``: module names ``mask_fcn1..4``, ``spatialAtt.conv``, ``deconv``,
``predictor``) and ``mask_head.py`` (``mask_rcnn_loss``, ``mask_rcnn_inference``). Mask targets as
Mask R-CNN / detectron2 ``BitMasks.crop_and_resize`` (RoIAlign ``aligned=True`` on the bitmask,
threshold 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["SpatialAttention", "SAGMaskHead", "mask_rcnn_targets", "mask_rcnn_loss", "select_class_masks"]


def _msra_fill(conv: nn.Module) -> None:
    """detectron2 / fvcore ``c2_msra_fill``: kaiming normal (fan_out, relu), bias 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)


class SpatialAttention(nn.Module):
    """Spatial attention module (paper Eq. 3-4): ``x * sigmoid(conv3x3([mean_c(x), max_c(x)]))``.

    ``conv``: 2 -> 1 channels, 3x3, padding 1, no bias. ``[R, C, h, w] -> [R, C, h, w]``; works
    for R = 0.
    """

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f"kernel_size: expected 3 or 7, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        _msra_fill(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class SAGMaskHead(nn.Module):
    """SAG-Mask head: ``num_convs`` x (3x3 conv with bias + ReLU) -> SAM -> 2x2 stride-2 deconv +
    ReLU -> 1x1 ``predictor`` (one mask per class, or one if ``class_agnostic``).

    Args:
        in_channels: C of the pooled RoI features (FPN channels: 256; Lite 128).
        conv_dims: width of the convs and deconv (256; Lite 128).
        num_convs: 4 (Lite 2).
        num_classes: K.
        class_agnostic: predict one mask for every class (``CLS_AGNOSTIC_MASK``).

    ``forward(x)``: ``[R, in_channels, 14, 14]`` -> logits ``[R, K (or 1), 28, 28]``, x's dtype.
    Init as centermask2: MSRA fill for convs / deconv / SAM conv, predictor normal(std 0.001).
    """

    def __init__(self, in_channels: int = 256, conv_dims: int = 256, num_convs: int = 4, num_classes: int = 80,
                 class_agnostic: bool = False):
        super().__init__()
        self.num_convs = int(num_convs)
        for k in range(self.num_convs):
            conv = nn.Conv2d(in_channels if k == 0 else conv_dims, conv_dims, 3, padding=1)
            _msra_fill(conv)
            self.add_module(f"mask_fcn{k + 1}", conv)
        self.spatialAtt = SpatialAttention()
        self.deconv = nn.ConvTranspose2d(conv_dims if num_convs > 0 else in_channels, conv_dims, 2, stride=2)
        _msra_fill(self.deconv)
        self.predictor = nn.Conv2d(conv_dims, 1 if class_agnostic else num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        for k in range(self.num_convs):
            x = F.relu(getattr(self, f"mask_fcn{k + 1}")(x))
        x = self.spatialAtt(x)
        x = F.relu(self.deconv(x))
        return self.predictor(x)


def mask_rcnn_targets(gt_masks: Tensor, boxes: Tensor, gt_index: Tensor, mask_size: int = 28) -> tuple[Tensor, Tensor]:
    """Crop each matched gt mask by its RoI and resize to ``mask_size`` (Mask R-CNN targets).

    Args:
        gt_masks: ``[G, H, W]`` uint8 / bool {0, 1} (every gt of the batch, one image's size each
            call; call per image).
        boxes: ``[R, 4]`` float XYXY pixels of the same image (the positive RoIs).
        gt_index: ``[R]`` int64 index into ``gt_masks`` of each RoI's matched gt.
        mask_size: M.

    Returns:
        targets ``[R, M, M]`` float32 {0, 1} (RoIAlign ``aligned=True``, adaptive sampling, >= 0.5,
        as detectron2 ``BitMasks.crop_and_resize``);
        ratios ``[R]`` float32 in [0, 1]: the fraction of the gt mask's area inside the RoI (mean of
        the un-thresholded crop x RoI area / gt area), which the MaskIoU target uses to recover the
        full-mask union (centermask2 computes it from polygon areas).
    """
    r = boxes.shape[0]
    if r == 0:
        empty = torch.zeros(0, mask_size, mask_size, device=boxes.device)
        return empty, torch.zeros(0, device=boxes.device)
    masks = gt_masks.to(device=boxes.device, dtype=torch.float32)
    rois = torch.cat([gt_index.to(boxes.device, torch.float32)[:, None], boxes.float()], dim=1)
    soft = roi_align(masks[:, None], rois, (mask_size, mask_size), spatial_scale=1.0, sampling_ratio=0,
                     aligned=True)[:, 0]
    targets = (soft >= 0.5).float()
    wh = (boxes[:, 2:] - boxes[:, :2]).float().clamp(min=0)
    inside = soft.mean(dim=(1, 2)) * wh[:, 0] * wh[:, 1]
    full = masks.sum(dim=(1, 2))[gt_index.to(boxes.device)].clamp(min=1.0)
    return targets, (inside / full).clamp(0.0, 1.0)


def select_class_masks(mask_logits: Tensor, classes: Tensor) -> Tensor:
    """``[R, K, M, M]`` logits, ``[R]`` int64 classes -> ``[R, M, M]`` (the class's channel; channel
    0 for a class-agnostic ``[R, 1, M, M]`` head)."""
    if mask_logits.shape[1] == 1:
        return mask_logits[:, 0]
    return mask_logits[torch.arange(mask_logits.shape[0], device=mask_logits.device), classes.to(mask_logits.device)]


def mask_rcnn_loss(mask_logits: Tensor, gt_classes: Tensor, mask_targets: Tensor) -> Tensor:
    """``loss_mask``: mean binary cross-entropy with logits on the gt-class mask of each positive
    RoI (Mask R-CNN; centermask2 ``mask_rcnn_loss``).

    Args: ``mask_logits [R, K, M, M]`` (any float dtype; computed in float32), ``gt_classes [R]``
    int64, ``mask_targets [R, M, M]`` {0, 1}. Returns a scalar; with R = 0 it is 0 and still
    connected to the graph (``mask_logits.sum() * 0``).
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    logits = select_class_masks(mask_logits, gt_classes).float()
    return F.binary_cross_entropy_with_logits(logits, mask_targets.to(logits), reduction="mean")
