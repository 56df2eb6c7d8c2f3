"""FCOS head (Tian et al., ICCV 2019; "improved FCOS" as in AdelaiDet ``adet/modeling/fcos/fcos.py``).

Per FPN level: optional ``share_tower`` convs, then a ``cls_tower`` and a ``bbox_tower``
(3x3 conv with bias + norm + ReLU each; Sequential indices conv 0, 3, 6, 9 and norm 1, 4, 7, 10
as the official keys), ``cls_logits`` (K), ``bbox_pred`` (4: l, t, r, b in units of the level's
stride, optional per-level learnable ``scales.{l}.scale``, then ReLU) and ``ctrness`` (1) on the
box tower. Init (official): tower and predictor convs N(0, 0.01), bias 0; ``cls_logits`` bias
``-log((1 - p) / p)`` with prior probability p = 0.01.

Norm ``"GN"`` = GroupNorm(32) shared by the levels; ``"BN"`` = one BatchNorm2d per level
(AdelaiDet ``ModuleListDial`` for ``FCOS.NORM SyncBN``: keys ``tower.{i}.{level}.*``).

Precision: under a bf16 / fp16 autocast the towers run in the low precision (they hold most of
the head's work) and the three predictors (``cls_logits``, ``bbox_pred`` with its scale,
``ctrness``) in float32 on the towers' outputs (:func:`segcore.ops.precision.fp32_call`): their
outputs are the box scores and box sides themselves. ``bbox_towers`` keep the autocast dtype.

Symbols: B batch, C channels, K classes, H_l x W_l the size of level l.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...ops.precision import fp32_call

__all__ = ["FCOSHead", "Scale", "PerLevelNorm"]


class Scale(nn.Module):
    """A learnable scalar ``scale`` (shape ``(1,)``), initialised to ``init_value``."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PerLevelNorm(nn.ModuleList):
    """One BatchNorm2d per FPN level; ``forward(x, level)`` uses ``self[level]``."""

    def __init__(self, channels: int, num_levels: int):
        super().__init__([nn.BatchNorm2d(channels) for _ in range(num_levels)])

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:  # type: ignore[override]
        return self[level](x)


def _tower(num_convs: int, channels: int, norm: str | None, num_levels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, 1, 1, bias=True))
        if norm == "GN":
            layers.append(nn.GroupNorm(32, channels))
        elif norm in ("BN", "SyncBN"):
            layers.append(PerLevelNorm(channels, num_levels))
        elif norm:
            raise ValueError(f"FCOS head norm must be GN, BN or None, got {norm!r}")
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _run_tower(tower: nn.Sequential, x: torch.Tensor, level: int) -> torch.Tensor:
    for m in tower:
        x = m(x, level) if isinstance(m, PerLevelNorm) else m(x)
    return x


class FCOSHead(nn.Module):
    """Dense per-location predictions of FCOS.

    Args:
        in_channels: C of the FPN levels (256).
        num_classes: K (no background).
        num_levels: number of FPN levels (5 for P3-P7).
        num_cls_convs, num_box_convs, num_share_convs: tower depths (official 4, 4, 0;
            BlendMask 550 / RT: 0, 0, 3).
        norm: ``"GN"`` (official), ``"BN"`` (per level) or None.
        use_scale: per-level learnable scale on the box regression (FCOS default True;
            Base-BlendMask sets False).
        prior_prob: focal-loss prior for the ``cls_logits`` bias (0.01).

    ``forward(features)`` takes the L levels ``[B, C, H_l, W_l]`` and returns a dict of lists of
    L tensors: ``logits`` ``[B, K, H_l, W_l]``, ``bbox_reg`` ``[B, 4, H_l, W_l]`` (ltrb / stride,
    >= 0), ``ctrness`` ``[B, 1, H_l, W_l]`` (logits), all float32 even under autocast (module
    docstring), ``bbox_towers`` ``[B, C, H_l, W_l]``.
    """

    def __init__(self, in_channels: int, num_classes: int, num_levels: int, *, num_cls_convs: int = 4,
                 num_box_convs: int = 4, num_share_convs: int = 0, norm: str | None = "GN",
                 use_scale: bool = True, prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = int(num_classes)
        self.num_levels = int(num_levels)
        self.cls_tower = _tower(num_cls_convs, in_channels, norm, num_levels)
        self.bbox_tower = _tower(num_box_convs, in_channels, norm, num_levels)
        self.share_tower = _tower(num_share_convs, in_channels, norm, num_levels)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, 1, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, 1, 1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, 1, 1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)]) if use_scale else None
        for seq in (self.cls_tower, self.bbox_tower, self.share_tower):
            for m in seq:
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)
        for m in (self.cls_logits, self.bbox_pred, self.ctrness):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        out: dict[str, list[torch.Tensor]] = {"logits": [], "bbox_reg": [], "ctrness": [], "bbox_towers": []}
        for level, feat in enumerate(features):
            feat = _run_tower(self.share_tower, feat, level)
            cls_t = _run_tower(self.cls_tower, feat, level)
            box_t = _run_tower(self.bbox_tower, feat, level)
            # the three predictors in float32 under autocast (class module docstring)
            logits, reg, ctr = fp32_call(self._predict, cls_t, box_t, level)
            out["logits"].append(logits)
            out["bbox_reg"].append(reg)
            out["ctrness"].append(ctr)
            out["bbox_towers"].append(box_t)
        return out

    def _predict(self, cls_t: torch.Tensor, box_t: torch.Tensor, level: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits ``[B, K, H, W]``, ``relu(scale x bbox_pred)`` ``[B, 4, H, W]`` and
        centerness logits ``[B, 1, H, W]`` of one level from its tower outputs."""
        reg = self.bbox_pred(box_t)
        if self.scales is not None:
            reg = self.scales[level](reg)
        return self.cls_logits(cls_t), F.relu(reg), self.ctrness(box_t)
