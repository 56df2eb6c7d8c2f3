"""MaskIoU head (Mask Scoring R-CNN style), its targets, ``loss_maskiou`` and mask scores.

Symbol legend: R RoIs, C channels, K classes, M = 28 mask side, S = 14 pooled side.

Source: CenterMask paper section 2.3 (mask scoring, following Huang et al., "Mask Scoring R-CNN",
CVPR 2019) and centermask2 ``centermask/modeling/centermask/maskiou_head.py`` (``MaskIoUHead``:
``maskiou_fcn1..4`` 3x3 convs with bias + ReLU, the last with stride 2, ``maskiou_fc1``,
``maskiou_fc2`` (1024) and ``maskiou`` (K); ``mask_iou_loss``; ``mask_iou_inference``) and
``mask_head.py`` (IoU targets against the full gt mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaskIoUHead", "maskiou_targets", "maskiou_loss", "mask_scores"]


class MaskIoUHead(nn.Module):
    """Predicts the IoU of each RoI's mask with its gt, per class.

    Args:
        in_channels: C of the pooled RoI features (256; Lite 128); the head sees C + 1 channels.
        conv_dims: conv width (256; Lite 128).
        num_convs: 4 (Lite 2); the last has stride 2 (S -> S / 2).
        num_classes: K.
        resolution: S of the pooled features (14).

    ``forward(features, mask_probs)``: ``features [R, C, S, S]``, ``mask_probs [R, 1, 2S, 2S]``
    (sigmoid of the selected class's mask logits) -> ``[R, K]`` predicted IoUs (unbounded, the
    official head has no final activation). Input = concat(features, maxpool2x2(mask_probs)).
    """

    def __init__(self, in_channels: int = 256, conv_dims: int = 256, num_convs: int = 4, num_classes: int = 80,
                 resolution: int = 14):
        super().__init__()
        self.num_convs = int(num_convs)
        for k in range(self.num_convs):
            conv = nn.Conv2d(in_channels + 1 if k == 0 else conv_dims, conv_dims, 3,
                             stride=2 if k + 1 == num_convs else 1, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            self.add_module(f"maskiou_fcn{k + 1}", conv)
        self.maskiou_fc1 = nn.Linear(conv_dims * (resolution // 2) ** 2, 1024)
        self.maskiou_fc2 = nn.Linear(1024, 1024)
        self.maskiou = nn.Linear(1024, num_classes)
        for fc in (self.maskiou_fc1, self.maskiou_fc2):
            nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.maskiou.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.maskiou.bias)

    def forward(self, features: Tensor, mask_probs: Tensor) -> Tensor:
        x = torch.cat([features, F.max_pool2d(mask_probs.to(features.dtype), kernel_size=2, stride=2)], dim=1)
        for k in range(self.num_convs):
            x = F.relu(getattr(self, f"maskiou_fcn{k + 1}")(x))
        x = torch.flatten(x, 1)
        x = F.relu(self.maskiou_fc1(x))
        x = F.relu(self.maskiou_fc2(x))
        return self.maskiou(x)


def maskiou_targets(selected_logits: Tensor, mask_targets: Tensor, mask_ratios: Tensor) -> Tensor:
    """IoU of the predicted mask (logit > 0) with the *full* gt mask, at M x M (centermask2
    ``mask_rcnn_loss`` with ``maskiou_on``).

    Args: ``selected_logits [R, M, M]`` (gt-class logits), ``mask_targets [R, M, M]`` {0, 1} (gt
    cropped by the RoI), ``mask_ratios [R]`` (fraction of the gt area inside the RoI, from
    :func:`~segcore.modeling.centermask.mask_head.mask_rcnn_targets`). The gt's full area at this
    scale is ``sum(targets) / ratio``, so a RoI that cuts the object gets a lower target.
    Returns ``[R]`` float32 in [0, 1], detached.
    """
    with torch.no_grad():
        pred = (selected_logits > 0).float()
        gt = mask_targets.float()
        full_area = gt.sum(dim=(1, 2)) / mask_ratios.float().clamp(min=1e-10)
        overlap = (pred * gt).sum(dim=(1, 2))
        union = (pred.sum(dim=(1, 2)) + full_area - overlap).clamp(min=1.0)
        return overlap / union


def maskiou_loss(pred_maskiou: Tensor, gt_classes: Tensor, targets: Tensor, loss_weight: float = 1.0) -> Tensor:
    """``loss_maskiou``: L2 ``0.5 * (pred - target)^2`` on the gt class, summed over the RoIs with
    target > 0 and divided by their number, times ``loss_weight`` (centermask2 ``mask_iou_loss``,
    ``MASKIOU_LOSS_WEIGHT`` 1.0). ``pred_maskiou [R, K]``, ``gt_classes [R]`` int64, ``targets [R]``.
    Returns a scalar; 0 (graph-connected) when no RoI has a positive target."""
    if pred_maskiou.shape[0] == 0:
        return pred_maskiou.sum() * 0.0
    idx = torch.arange(pred_maskiou.shape[0], device=pred_maskiou.device)
    pred = pred_maskiou[idx, gt_classes.to(pred_maskiou.device)].float()
    pos = targets > 0
    if not bool(pos.any()):
        return pred.sum() * 0.0
    return loss_weight * 0.5 * ((pred[pos] - targets[pos].float()) ** 2).sum() / pos.sum()


def mask_scores(scores: Tensor, pred_maskiou: Tensor, classes: Tensor) -> Tensor:
    """Mask score = class score x predicted IoU of the predicted class (``mask_iou_inference``).
    ``scores [R]``, ``pred_maskiou [R, K]``, ``classes [R]`` int64 -> ``[R]``."""
    idx = torch.arange(pred_maskiou.shape[0], device=pred_maskiou.device)
    return scores * pred_maskiou[idx, classes.to(pred_maskiou.device)].to(scores.dtype)
