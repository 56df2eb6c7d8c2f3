"""Registered YOLACT / YOLACT++ builders, one per official configuration (+ two tiny test configs).

| name | official config (dbolya/yolact ``data/config.py``) | backbone | S |
|---|---|---|---|
| ``yolact_r101_550`` | ``yolact_base_config`` | ResNet-101 | 550 |
| ``yolact_r50_550`` | ``yolact_resnet50_config`` | ResNet-50 | 550 |
| ``yolact_darknet53_550`` | ``yolact_darknet53_config`` | DarkNet-53 (RGB / 255 input) | 550 |
| ``yolact_r101_700`` | ``yolact_im700_config`` | ResNet-101 | 700 |
| ``yolact_plus_r101_550`` | ``yolact_plus_base_config`` | ResNet-101 + DCNv2 every 3rd block of C3-C5 | 550 |
| ``yolact_plus_r50_550`` | ``yolact_plus_resnet50_config`` | ResNet-50 + DCNv2 in every C3-C5 block | 550 |
| ``yolact_tiny`` | none (tests, CPU experiments) | ResNet-18 | 320 |
| ``yolact_plus_tiny`` | none (tests) | ResNet-18 + DCNv2 in C3-C5, MaskIoU net | 320 |

All builders take keyword arguments only (``num_classes`` required) and return a
:class:`~.model.Yolact` in training mode, randomly initialised unless ``backbone_weights`` names a
local torchvision ResNet state_dict file (nothing is downloaded, nothing is printed).

Priors: v1 configs use one scale per level and the official square-prior quirk
(``use_square_anchors=True``); YOLACT++ configs three scales per level ``s * 2 ** (j / 3)``,
j = 0, 1, 2, three true aspect ratios (``use_square_anchors=False``), so A = 9.
``pred_scales=None`` means the official 550 scales (24, 48, 96, 192, 384 px) scaled to the input
side and truncated, ``int(s / 550 * input_size)``, the rule of the official
``yolact_im700_config`` (30, 61, 122, 244, 488 px at 700).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..backbones import resnet_backbone
from ..darknet import DARKNET_PIXEL_MEAN, DARKNET_PIXEL_STD, darknet53_backbone
from ..registry import ModelInfo, register
from .model import PIXEL_MEAN_RGB, PIXEL_STD_RGB, Yolact
from .priors import YOLACT_ASPECT_RATIOS, scaled_pred_scales

__all__ = ["yolact_r50_550", "yolact_r101_550", "yolact_tiny", "yolact_darknet53_550", "yolact_r101_700",
           "yolact_plus_r50_550", "yolact_plus_r101_550", "yolact_plus_tiny", "plus_pred_scales"]

#: DCNv2 placement ``(dcn_layers, dcn_interval)`` of the official YOLACT++ backbones.
_DCN = {
    "resnet101": ([0, 4, 23, 3], 3),  # resnet101_dcn_inter3_backbone: 11 blocks
    "resnet50": ([0, 4, 6, 3], 1),  # resnet50_dcnv2_backbone: all 13 blocks of C3-C5
    "resnet18": ([0, 1, 1, 1], 1),  # yolact_plus_tiny: last block of C3, C4, C5
}


def plus_pred_scales(input_size: int) -> list[list[float]]:
    """YOLACT++ prior scales: ``[[s * 2 ** (j / 3) for j in (0, 1, 2)] for s in scaled_pred_scales(S)]``
    (official ``yolact_plus_base_config``: ``[[i * 2 ** (j / 3.0) for j in range(3)] for i in [24, ..., 384]]``)."""
    return [[s * 2 ** (j / 3.0) for j in range(3)] for s in scaled_pred_scales(input_size)]


def _build(arch_name: str, backbone_kind: str, *, plus: bool, num_classes: int, input_size: int,
           fpn_channels: int, num_prototypes: int, pred_scales: Sequence | None,
           aspect_ratios: Sequence[float], backbone_weights: str | Path | None) -> Yolact:
    if input_size < 32:
        raise ValueError(f"{arch_name}: input_size must be >= 32, got {input_size}")
    if plus:
        side = 2 * math.ceil(input_size / 8)  # prototype map side
        for _ in range(5):  # the MaskIoU net's five unpadded stride-2 3x3 convs
            side = (side - 3) // 2 + 1
        if side < 1:
            raise ValueError(f"{arch_name}: input_size {input_size} is too small for the MaskIoU net (>= 256 needed)")
    if backbone_kind == "darknet53":
        if backbone_weights is not None:
            raise ValueError(f"{arch_name}: backbone_weights is only supported for ResNet backbones")
        backbone = darknet53_backbone()
        mean, std = DARKNET_PIXEL_MEAN, DARKNET_PIXEL_STD
    else:
        dcn_layers, dcn_interval = _DCN[backbone_kind] if plus else (None, 1)
        backbone = resnet_backbone(backbone_kind, backbone_weights, dcn_layers=dcn_layers, dcn_interval=dcn_interval)
        mean, std = PIXEL_MEAN_RGB, PIXEL_STD_RGB
    if pred_scales is None:
        scales = plus_pred_scales(input_size) if plus else scaled_pred_scales(input_size)
    else:
        scales = [list(s) if isinstance(s, (list, tuple)) else s for s in pred_scales]
    model = Yolact(
        backbone,
        num_classes=num_classes,
        input_size=input_size,
        fpn_channels=fpn_channels,
        num_prototypes=num_prototypes,
        pred_scales=scales,
        aspect_ratios=aspect_ratios,
        square_anchors=not plus,
        use_maskiou=plus,
        pixel_mean=mean,
        pixel_std=std,
    )
    # backbone_weights is deliberately left out: a rebuilt model gets its weights from a checkpoint
    arch_kwargs = {
        "input_size": int(input_size),
        "fpn_channels": int(fpn_channels),
        "num_prototypes": int(num_prototypes),
        "pred_scales": None if pred_scales is None else [
            [float(x) for x in s] if isinstance(s, (list, tuple)) else float(s) for s in pred_scales],
        "aspect_ratios": [float(r) for r in aspect_ratios],
    }
    model.info = ModelInfo(arch=arch_name, family="yolact", num_classes=int(num_classes), input_size=int(input_size),
                           arch_kwargs=arch_kwargs, input_policy="square")
    return model


def _make_builder(arch_name: str, backbone_kind: str, plus: bool, default_size: int, default_fpn: int,
                  default_protos: int, doc: str):
    def builder(
        *,
        num_classes: int,
        input_size: int = default_size,
        fpn_channels: int = default_fpn,
        num_prototypes: int = default_protos,
        pred_scales: Sequence | None = None,
        aspect_ratios: Sequence[float] = YOLACT_ASPECT_RATIOS,
        backbone_weights: str | Path | None = None,
    ) -> Yolact:
        return _build(arch_name, backbone_kind, plus=plus, num_classes=num_classes, input_size=input_size,
                      fpn_channels=fpn_channels, num_prototypes=num_prototypes, pred_scales=pred_scales,
                      aspect_ratios=aspect_ratios, backbone_weights=backbone_weights)

    builder.__name__ = builder.__qualname__ = arch_name
    builder.__doc__ = doc + (
        "\n\n    Keyword args: ``num_classes`` (K), ``input_size`` (S), ``fpn_channels``, ``num_prototypes``"
        " (k), ``pred_scales`` (None = official rule), ``aspect_ratios``, ``backbone_weights`` (local"
        " torchvision ResNet file or None).\n\n    Raises:\n        ValueError: ``input_size < 32`` or"
        " unusable ``backbone_weights``; YOLACT++ also needs ``input_size >= 256`` (MaskIoU net).")
    return register(arch_name, family="yolact")(builder)


yolact_r50_550 = _make_builder(
    "yolact_r50_550", "resnet50", False, 550, 256, 32,
    "YOLACT-550 with ResNet-50-FPN (paper Table 4, official ``yolact_resnet50_config``).")
yolact_r101_550 = _make_builder(
    "yolact_r101_550", "resnet101", False, 550, 256, 32,
    "YOLACT-550 with ResNet-101-FPN (paper's base model, official ``yolact_base_config``).")
yolact_darknet53_550 = _make_builder(
    "yolact_darknet53_550", "darknet53", False, 550, 256, 32,
    "YOLACT-550 with DarkNet-53-FPN (paper Table 4, official ``yolact_darknet53_config``); input RGB / 255.")
yolact_r101_700 = _make_builder(
    "yolact_r101_700", "resnet101", False, 700, 256, 32,
    "YOLACT-700 with ResNet-101-FPN (paper Table 4, official ``yolact_im700_config``: 700 input, scales"
    " 30, 61, 122, 244, 488 px; the official config also trains ``masks_to_train=300``).")
yolact_plus_r50_550 = _make_builder(
    "yolact_plus_r50_550", "resnet50", True, 550, 256, 32,
    "YOLACT++-550 with ResNet-50-DCN-FPN (YOLACT++ paper Table 6, official ``yolact_plus_resnet50_config``).")
yolact_plus_r101_550 = _make_builder(
    "yolact_plus_r101_550", "resnet101", True, 550, 256, 32,
    "YOLACT++-550 with ResNet-101-DCN-FPN, DCN every 3rd block (YOLACT++ paper, official"
    " ``yolact_plus_base_config``).")
yolact_tiny = _make_builder(
    "yolact_tiny", "resnet18", False, 320, 64, 16,
    "Small YOLACT for tests and CPU experiments: ResNet-18 (BasicBlock) backbone, 64-channel"
    " FPN/protonet/head, 16 prototypes, input 320 (not a paper configuration).")
yolact_plus_tiny = _make_builder(
    "yolact_plus_tiny", "resnet18", True, 320, 64, 16,
    "Small YOLACT++ for tests: ResNet-18 with DCNv2 in the last block of C3, C4, C5, 3 x 3 priors, MaskIoU net,"
    " 64-channel FPN, 16 prototypes, input 320 (not a paper configuration).")
