"""detectron2-style ResNet (the backbone of AdelaiDet's BlendMask and of CenterMask's R-FPN).

Reproduces ``detectron2/modeling/backbone/resnet.py`` (``BasicStem``, ``BottleneckBlock``,
``ResNet``) so official checkpoints load key for key: ``stem.conv1.{weight, norm.*}``,
``res{2..5}.{i}.{conv1, conv2, conv3, shortcut}.{weight, norm.*}``. Each conv owns its norm as
the child ``norm`` (detectron2 ``layers.Conv2d(norm=...)``), convs have no bias.

* ``stride_in_1x1=True`` (MSRA ``R-50.pkl`` weights, ``RESNETS.STRIDE_IN_1X1``): the stride of
  a stage's first block sits on the 1x1 ``conv1``; False puts it on the 3x3 ``conv2``
  (torchvision layout).
* ``norm``: ``"FrozenBN"`` (torchvision ``FrozenBatchNorm2d``: buffers weight / bias /
  running_mean / running_var, eps 1e-5, no ``num_batches_tracked``), ``"BN"``
  (``nn.BatchNorm2d``; the official SyncBN checkpoints load into it) or ``"GN"`` (32 groups).
* ``freeze_at``: detectron2 ``BACKBONE.FREEZE_AT``: 0 none, 1 the stem, k >= 2 the stem and
  res2..res{k} (their parameters get ``requires_grad=False``; BN in them is converted to
  FrozenBN as detectron2 does).

Symbols: B batch, C channels, H x W input (any size; strides 4, 8, 16, 32 for res2..res5).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["NormConv2d", "make_norm", "D2ResNet", "RESNET_BLOCKS", "c2_msra_fill"]

#: blocks per stage res2..res5 (detectron2 ``RESNETS.DEPTH``).
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def make_norm(kind: str | None, channels: int) -> nn.Module | None:
    """``"FrozenBN"`` | ``"BN"`` | ``"SyncBN"`` (= ``nn.BatchNorm2d``) | ``"GN"`` (32 groups) | None / ``""``."""
    if not kind:
        return None
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=1e-5)
    if kind in ("BN", "SyncBN"):
        return nn.BatchNorm2d(channels)
    if kind == "GN":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"unknown norm {kind!r}; use FrozenBN, BN, SyncBN, GN or None")


def c2_msra_fill(module: nn.Conv2d) -> None:
    """detectron2 ``weight_init.c2_msra_fill``: kaiming normal (fan_out, ReLU), bias 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class NormConv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` child (detectron2 ``layers.Conv2d``)."""

    def __init__(self, *args, norm: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.norm(x) if self.norm is not None else x


class _Stem(nn.Module):
    def __init__(self, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = NormConv2d(3, out_channels, 7, stride=2, padding=3, bias=False,
                                norm=make_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class _Bottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, mid_ch: int, stride: int, norm: str, stride_in_1x1: bool):
        super().__init__()
        if in_ch != out_ch:
            self.shortcut = NormConv2d(in_ch, out_ch, 1, stride=stride, bias=False, norm=make_norm(norm, out_ch))
        else:
            self.shortcut = None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = NormConv2d(in_ch, mid_ch, 1, stride=s1, bias=False, norm=make_norm(norm, mid_ch))
        self.conv2 = NormConv2d(mid_ch, mid_ch, 3, stride=s3, padding=1, bias=False, norm=make_norm(norm, mid_ch))
        self.conv3 = NormConv2d(mid_ch, out_ch, 1, bias=False, norm=make_norm(norm, out_ch))
        for m in (self.shortcut, self.conv1, self.conv2, self.conv3):
            if m is not None:
                c2_msra_fill(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        short = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + short)


def _freeze(module: nn.Module) -> nn.Module:
    """Parameters off and every BatchNorm replaced by FrozenBatchNorm2d (detectron2 ``freeze()``)."""
    for p in module.parameters():
        p.requires_grad_(False)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            setattr(module, name, frozen)
        else:
            _freeze(child)
    return module


class D2ResNet(nn.Module):
    """detectron2 bottleneck ResNet returning ``{"res2": .., "res5": ..}`` (those in ``out_features``).

    Args:
        blocks: blocks per stage res2..res5, e.g. ``RESNET_BLOCKS[50]``.
        stem_channels: stem output (64).
        res2_out: res2 output channels (256); doubled per later stage.
        bottleneck_channels: res2 bottleneck width (64); doubled per later stage.
        norm: see the module docstring (official R_50_1x: ``"FrozenBN"``, RT: SyncBN -> ``"BN"``).
        stride_in_1x1: MSRA layout (True, official).
        freeze_at: detectron2 ``FREEZE_AT`` (official 2; RT -1 = 0 here).
        out_features: which stages to return.

    Input ``[B, 3, H, W]`` float32 (already normalised); outputs ``[B, C_k, H / s_k, W / s_k]``.
    """

    def __init__(self, blocks=RESNET_BLOCKS[50], *, stem_channels: int = 64, res2_out: int = 256,
                 bottleneck_channels: int = 64, norm: str = "FrozenBN", stride_in_1x1: bool = True,
                 freeze_at: int = 2, out_features=("res3", "res4", "res5")):
        super().__init__()
        self.stem = _Stem(stem_channels, norm)
        self.out_features = tuple(out_features)
        self.out_channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        in_ch, out_ch, mid = stem_channels, res2_out, bottleneck_channels
        self.stage_names = []
        for i, n in enumerate(blocks):
            name = f"res{i + 2}"
            layers = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                layers.append(_Bottleneck(in_ch, out_ch, mid, stride, norm, stride_in_1x1))
                in_ch = out_ch
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            self.out_channels[name] = out_ch
            self.strides[name] = 2 ** (i + 2)
            out_ch, mid = out_ch * 2, mid * 2
        if freeze_at >= 1:
            _freeze(self.stem)
        for i in range(2, int(freeze_at) + 1):
            if f"res{i}" in self.stage_names:
                _freeze(getattr(self, f"res{i}"))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                out[name] = x
        return out
