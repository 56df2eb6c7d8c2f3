"""detectron2 FPN over a bottom-up network, with AdelaiDet's P6/P7 top block.

Reproduces ``detectron2/modeling/backbone/fpn.py`` (``FPN``: 1x1 ``fpn_lateral{k}`` and 3x3
``fpn_output{k}`` convs with bias, top-down nearest x2 upsampling, no ReLU) and AdelaiDet
``adet/modeling/backbone/fpn.py`` ``LastLevelP6P7`` / ``LastLevelP6`` (``top_block.p6`` 3x3
stride 2 on P5, ``top_block.p7`` 3x3 stride 2 on ReLU(P6); ``in_features="p5"``).
Weights: detectron2 ``c2_xavier_fill`` (kaiming uniform a=1, bias 0).

Keys: ``bottom_up.*`` (the backbone), ``fpn_lateral{3,4,5}``, ``fpn_output{3,4,5}``,
``top_block.p6``, ``top_block.p7`` (with ``top_levels`` 2 / 1 / 0).

Input ``[B, 3, H, W]`` with H, W multiples of 32 (the nearest x2 top-down needs exact halving);
output list ``[P3, .., P{5 + top_levels}]`` of ``[B, C, H / s, W / s]``, s = 8, 16, ...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["D2FPN", "c2_xavier_fill"]


def c2_xavier_fill(module: nn.Conv2d) -> None:
    """detectron2 ``weight_init.c2_xavier_fill``: kaiming uniform (a = 1), bias 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class _TopBlock(nn.Module):
    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        c2_xavier_fill(self.p6)
        if levels >= 2:
            self.p7 = nn.Conv2d(channels, channels, 3, 2, 1)
            c2_xavier_fill(self.p7)
        else:
            self.p7 = None

    def forward(self, p5: torch.Tensor) -> list[torch.Tensor]:
        p6 = self.p6(p5)
        return [p6] if self.p7 is None else [p6, self.p7(F.relu(p6))]


class D2FPN(nn.Module):
    """FPN P3-P5 (+ P6, P7) on ``bottom_up`` features ``in_features`` (strides 8, 16, 32).

    Args:
        bottom_up: module returning a dict with ``in_features`` and having ``out_channels``
            (dict name -> channels), e.g. :class:`segcore.modeling.d2_resnet.D2ResNet`.
        in_features: three names of strides 8, 16, 32 (``("res3", "res4", "res5")``).
        out_channels: FPN width C (256).
        top_levels: extra levels from P5: 2 = P6, P7 (FCOS default), 1 = P6 (BlendMask 550),
            0 = none (BlendMask RT).
    """

    def __init__(self, bottom_up: nn.Module, *, in_features=("res3", "res4", "res5"), out_channels: int = 256,
                 top_levels: int = 2):
        super().__init__()
        self.in_features = tuple(in_features)
        self.out_channels = int(out_channels)
        for k, name in zip((3, 4, 5), self.in_features):
            lat = nn.Conv2d(bottom_up.out_channels[name], out_channels, 1)
            out = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
            c2_xavier_fill(lat)
            c2_xavier_fill(out)
            self.add_module(f"fpn_lateral{k}", lat)
            self.add_module(f"fpn_output{k}", out)
        self.top_block = _TopBlock(out_channels, top_levels) if top_levels > 0 else None
        self.bottom_up = bottom_up
        self.strides = [8, 16, 32] + [64, 128][:max(0, int(top_levels))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.bottom_up(x)
        c3, c4, c5 = (feats[n] for n in self.in_features)
        prev = self.fpn_lateral5(c5)
        p5 = self.fpn_output5(prev)
        prev = self.fpn_lateral4(c4) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p4 = self.fpn_output4(prev)
        prev = self.fpn_lateral3(c3) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p3 = self.fpn_output3(prev)
        outs = [p3, p4, p5]
        if self.top_block is not None:
            outs.extend(self.top_block(p5))
        return outs
