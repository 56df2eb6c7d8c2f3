"""ResNet backbones returning C3, C4, C5 (strides 8, 16, 32).

Module names follow the official YOLACT ``backbone.py`` ``ResNetBackbone`` (``conv1``, ``bn1``,
``layers.{0..3}.{i}.conv1/bn1/.../downsample.{0,1}``) so official checkpoints load by name;
blocks are torchvision's (``Bottleneck`` puts the stride on the 3x3 ``conv2``).

YOLACT++ (Bolya et al., TPAMI 2020, section 3.2): ``dcn_layers`` / ``dcn_interval`` replace the 3x3
``conv2`` of selected blocks by a DCNv2 layer (:class:`segcore.ops.dcn.ModulatedDeformConv2d`),
with the official placement rule of ``backbone.py`` ``ResNetBackbone._make_layer``: in a stage of
n blocks with d DCN layers, block i uses DCN when ``i + d >= n`` and ``i % dcn_interval == 0``
(block 0 when ``d >= n``). ``resnet101_dcn_inter3_backbone`` = ``([3,4,23,3], [0,4,23,3], 3)``,
``resnet50_dcnv2_backbone`` = ``([3,4,6,3], [0,4,6,3], 1)`` (``data/config.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..ops.dcn import ModulatedDeformConv2d

__all__ = ["ResNetBackbone", "resnet_backbone", "load_torchvision_resnet_weights"]

_DEPTHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class ResNetBackbone(nn.Module):
    """ResNet trunk without the classifier; ``forward`` returns ``[C3, C4, C5]``.

    Args:
        block: torchvision ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        dcn_layers: per stage, how many of the last blocks may use DCNv2 (0 = none).
        dcn_interval: every ``dcn_interval``-th block of those uses DCNv2.

    Attributes:
        out_channels: channels of C3, C4, C5 (``[512, 1024, 2048]`` for Bottleneck,
            ``[128, 256, 512]`` for BasicBlock).
    """

    def __init__(self, block: type[nn.Module], layers: list[int], dcn_layers: list[int] | None = None,
                 dcn_interval: int = 1):
        super().__init__()
        dcn_layers = list(dcn_layers) if dcn_layers is not None else [0] * len(layers)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(
            [self._make_layer(block, planes, n, stride=1 if i == 0 else 2, dcn_layers=d, dcn_interval=dcn_interval)
             for i, (planes, n, d) in enumerate(zip((64, 128, 256, 512), layers, dcn_layers))]
        )
        self.out_channels = [p * block.expansion for p in (128, 256, 512)]
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and not name.endswith("conv_offset_mask"):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int, dcn_layers: int = 0,
                    dcn_interval: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        modules += [block(self.inplanes, planes) for _ in range(1, blocks)]
        for i, m in enumerate(modules):
            if (i == 0 and dcn_layers >= blocks) or (i > 0 and i + dcn_layers >= blocks and i % dcn_interval == 0):
                conv = m.conv2
                m.conv2 = ModulatedDeformConv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                                stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        return nn.Sequential(*modules)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``[B, 3, S, S]`` normalised image -> ``[C3, C4, C5]`` with sides ceil(S/8), ceil(S/16), ceil(S/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats[1:]


def load_torchvision_resnet_weights(backbone: ResNetBackbone, path: str | Path) -> None:
    """Load a torchvision ResNet ``state_dict`` file (e.g. ``resnet50-19c8e357.pth``) into ``backbone``.

    Keys ``layerN.*`` map to ``layers.{N-1}.*``; ``fc.*`` is dropped.

    Raises:
        ValueError: the file is not a state_dict or its keys/shapes do not match (the message
            names the file and the first offending keys).
    """
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    renamed = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        renamed[re.sub(r"^layer(\d)\.", lambda m: f"layers.{int(m.group(1)) - 1}.", key)] = value
    try:
        missing, unexpected = backbone.load_state_dict(renamed, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"{path}: backbone weights do not fit: {str(exc).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if ".conv_offset_mask." not in k and not (k.endswith(".conv2.bias"))]
    if missing or unexpected:
        raise ValueError(f"{path}: backbone keys mismatch, missing {missing[:5]}, unexpected {unexpected[:5]}")


def resnet_backbone(depth: str, weights: str | Path | None = None, *, dcn_layers: list[int] | None = None,
                    dcn_interval: int = 1) -> ResNetBackbone:
    """Build ``resnet18|34|50|101``; ``weights`` = local torchvision state_dict path or None (random init).

    ``dcn_layers`` / ``dcn_interval``: DCNv2 placement (see the module docstring); a torchvision
    file then fills every tensor but the DCN offset convs (``conv2.conv_offset_mask``) and the DCN
    biases, which keep their zero init (official ``init_backbone`` loads with ``strict=False``).

    Raises:
        ValueError: unknown depth or unusable weights file.
    """
    if depth not in _DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth!r}; known: {', '.join(_DEPTHS)}")
    block, layers = _DEPTHS[depth]
    backbone = ResNetBackbone(block, layers, dcn_layers, dcn_interval)
    if weights is not None:
        load_torchvision_resnet_weights(backbone, weights)
    return backbone
