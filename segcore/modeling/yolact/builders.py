"""Registered YOLACT builders: ``yolact_r50_550``, ``yolact_r101_550``, ``yolact_tiny``.

All builders take keyword arguments only (``num_classes`` required) and return a
:class:`~.model.Yolact` in training mode, randomly initialised unless ``backbone_weights`` names a
local torchvision ResNet state_dict file (nothing is downloaded, nothing is printed).

Prior scales: ``pred_scales=None`` means the official 550 scales (24, 48, 96, 192, 384 px)
scaled to the input side and truncated, ``int(s / 550 * input_size)``, the rule of the official
``yolact_im700_config`` / ``yolact_im400_config`` (``data/config.py``); e.g. 13, 27, 55, 111, 223 px
at 320.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..backbones import resnet_backbone
from ..registry import register
from .model import Yolact
from .priors import YOLACT_ASPECT_RATIOS, scaled_pred_scales

__all__ = ["yolact_r50_550", "yolact_r101_550", "yolact_tiny"]


def _build(
    arch_name: str,
    depth: str,
    *,
    num_classes: int,
    input_size: int,
    fpn_channels: int,
    num_prototypes: int,
    pred_scales: Sequence[float] | None,
    aspect_ratios: Sequence[float],
    backbone_weights: str | Path | None,
) -> Yolact:
    if input_size < 32:
        raise ValueError(f"{arch_name}: input_size must be >= 32, got {input_size}")
    scales = scaled_pred_scales(input_size) if pred_scales is None else list(pred_scales)
    model = Yolact(
        resnet_backbone(depth, backbone_weights),
        num_classes=num_classes,
        input_size=input_size,
        fpn_channels=fpn_channels,
        num_prototypes=num_prototypes,
        pred_scales=scales,
        aspect_ratios=aspect_ratios,
    )
    model.arch_name = arch_name
    # backbone_weights is deliberately left out: a rebuilt model gets its weights from a checkpoint
    model.arch_kwargs = {
        "input_size": int(input_size),
        "fpn_channels": int(fpn_channels),
        "num_prototypes": int(num_prototypes),
        "pred_scales": None if pred_scales is None else [float(s) for s in pred_scales],
        "aspect_ratios": [float(r) for r in aspect_ratios],
    }
    return model


@register("yolact_r50_550")
def yolact_r50_550(
    *,
    num_classes: int,
    input_size: int = 550,
    fpn_channels: int = 256,
    num_prototypes: int = 32,
    pred_scales: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = YOLACT_ASPECT_RATIOS,
    backbone_weights: str | Path | None = None,
) -> Yolact:
    """YOLACT-550 with ResNet-50-FPN (paper Table 4, official ``yolact_resnet50_config``)."""
    return _build("yolact_r50_550", "resnet50", num_classes=num_classes, input_size=input_size,
                  fpn_channels=fpn_channels, num_prototypes=num_prototypes, pred_scales=pred_scales,
                  aspect_ratios=aspect_ratios, backbone_weights=backbone_weights)


@register("yolact_r101_550")
def yolact_r101_550(
    *,
    num_classes: int,
    input_size: int = 550,
    fpn_channels: int = 256,
    num_prototypes: int = 32,
    pred_scales: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = YOLACT_ASPECT_RATIOS,
    backbone_weights: str | Path | None = None,
) -> Yolact:
    """YOLACT-550 with ResNet-101-FPN (paper's base model, official ``yolact_base_config``)."""
    return _build("yolact_r101_550", "resnet101", num_classes=num_classes, input_size=input_size,
                  fpn_channels=fpn_channels, num_prototypes=num_prototypes, pred_scales=pred_scales,
                  aspect_ratios=aspect_ratios, backbone_weights=backbone_weights)


@register("yolact_tiny")
def yolact_tiny(
    *,
    num_classes: int,
    input_size: int = 320,
    fpn_channels: int = 64,
    num_prototypes: int = 16,
    pred_scales: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = YOLACT_ASPECT_RATIOS,
    backbone_weights: str | Path | None = None,
) -> Yolact:
    """Small YOLACT for tests and CPU experiments: ResNet-18 (BasicBlock) backbone, 64-channel
    FPN/protonet/head, 16 prototypes, input 320 (not a paper configuration)."""
    return _build("yolact_tiny", "resnet18", num_classes=num_classes, input_size=input_size,
                  fpn_channels=fpn_channels, num_prototypes=num_prototypes, pred_scales=pred_scales,
                  aspect_ratios=aspect_ratios, backbone_weights=backbone_weights)
