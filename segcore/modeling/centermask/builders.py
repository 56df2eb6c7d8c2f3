"""Registered CenterMask builders, one per centermask2 configuration (+ a tiny test config).

| name | centermask2 ``configs/centermask/`` | backbone | FPN ch | FCOS convs (cls/box) | SAG-Mask / MaskIoU convs x dim | short side train (max) / test (max) |
|---|---|---|---|---|---|---|
| ``centermask_v39`` | ``centermask_V_39_eSE_FPN_ms_3x`` | VoVNetV2-39 eSE | 256 | 4/4 GN | 4 x 256 | 640-800 (1333) / 800 (1333) |
| ``centermask_v57`` | ``centermask_V_57_eSE_FPN_ms_3x`` | VoVNetV2-57 eSE | 256 | 4/4 GN | 4 x 256 | 640-800 (1333) / 800 (1333) |
| ``centermask_v99`` | ``centermask_V_99_eSE_FPN_ms_3x`` | VoVNetV2-99 eSE | 256 | 4/4 GN | 4 x 256 | 640-800 (1333) / 800 (1333) |
| ``centermask_r50`` | ``centermask_R_50_FPN_ms_3x`` | detectron2 R-50 | 256 | 4/4 GN | 4 x 256 | 640-800 (1333) / 800 (1333) |
| ``centermask_lite_v19`` | ``centermask_lite_V_19_eSE_FPN_ms_4x`` | VoVNetV2-19 eSE | 128 | 2/2 GN | 2 x 128 | 580-600 (1000) / 600 (1000) |
| ``centermask_lite_v39`` | ``centermask_lite_V_39_eSE_FPN_ms_4x`` | VoVNetV2-39 eSE | 128 | 2/2 GN | 2 x 128 | 580-600 (1000) / 600 (1000) |
| ``centermask_tiny`` | none (tests, CPU) | slim 2-layer VoVNet | 64 | 2/2 GN | 2 x 64 | 192-256 (416) / 256 (416) |

All: FPN P3-P5 from stages 3-5 (res3-5 for R-50), P6 / P7 from P5; FCOS on P3-P7 with per-level
scales, sizes of interest 64/128/256/512, centre sampling 1.5; RoI heads on P3-P5, RoIAlign 14 x 14
(``aligned=True``, Eq. 2 assignment), masks 28 x 28, MaskIoU on. The paper's 600 px (Lite) and
800 px test short sides are the defaults of ``input_size`` (S).

**Backbone norm.** centermask2 uses FrozenBN with ImageNet-pretrained statistics. segcore models
start from random init (nothing is downloaded), and a FrozenBN layer with untrained statistics is
a fixed identity-like affine map that never adapts, so the network does not train well; the
builders therefore default to trainable ``norm="BN"`` (``nn.BatchNorm2d``, ``freeze_at=0``).
``norm="FrozenBN"`` gives the official layout (R-50 then freezes the stem and res2, detectron2
``FREEZE_AT`` 2; VoVNet ``FREEZE_AT`` 0); the importer of official weights
(:mod:`.importer`) builds with ``norm="FrozenBN"``. Both load the same keys
(BN adds ``num_batches_tracked``, which importers treat as optional).

Every model has ``info`` (:class:`segcore.modeling.registry.ModelInfo`: ``input_size`` = the test
short side S, ``max_size``, ``train_sizes``, ``input_policy="short_side"``) and, as module
settings, ``sizes_of_interest``, ``center_sample_radius``, ``max_detections`` (50).
"""

from __future__ import annotations

from ..d2_resnet import RESNET_BLOCKS, D2ResNet
from ..fcos import D2FPN, FCOSProposalGenerator
from ..registry import ModelInfo, register
from ..vovnet import VoVNet
from .model import CenterMask
from .roi_heads import CenterMaskRoIHeads

__all__ = ["build_centermask", "centermask_v39", "centermask_v57", "centermask_v99", "centermask_r50",
           "centermask_lite_v19", "centermask_lite_v39", "centermask_tiny", "TINY_VOVNET_SPEC"]

#: Slim VoVNet of ``centermask_tiny``: 2 conv layers per OSA module, one module per stage.
TINY_VOVNET_SPEC = dict(stem=(16, 16, 32), stage_conv_ch=(16, 24, 32, 40), stage_out_ch=(32, 64, 96, 128),
                        layer_per_block=2, block_per_stage=(1, 1, 1, 1), dw=False)


def build_centermask(arch_name: str, arch_kwargs: dict, *, num_classes: int, input_size: int, max_size: int,
                     train_sizes, bottom_up, in_features, fpn_channels: int = 256, fcos_convs: int = 4,
                     mask_convs: int = 4, mask_dims: int = 256, maskiou: bool = True,
                     sizes_of_interest=(64, 128, 256, 512), max_detections: int = 50) -> CenterMask:
    """Assemble a :class:`.model.CenterMask` (all sizes explicit; see the table above).

    Args:
        bottom_up: a :class:`segcore.modeling.vovnet.VoVNet` or
            :class:`segcore.modeling.d2_resnet.D2ResNet` returning ``in_features``.
        in_features: its three stride-8/16/32 outputs (``("stage3", "stage4", "stage5")``).

    Raises ``ValueError`` unless ``32 <= input_size <= max_size``.
    """
    if input_size < 32 or max_size < input_size:
        raise ValueError(f"{arch_name}: need 32 <= input_size <= max_size, got {input_size}, {max_size}")
    backbone = D2FPN(bottom_up, in_features=in_features, out_channels=fpn_channels, top_levels=2)
    gen = FCOSProposalGenerator(backbone.strides, in_channels=fpn_channels, num_classes=num_classes,
                                num_cls_convs=fcos_convs, num_box_convs=fcos_convs, num_share_convs=0,
                                norm="GN", use_scale=True)
    heads = CenterMaskRoIHeads(num_classes, in_channels=fpn_channels, conv_dims=mask_dims, num_convs=mask_convs,
                               strides=(8, 16, 32), pooler_resolution=14, maskiou=maskiou)
    model = CenterMask(backbone, gen, heads, sizes_of_interest=sizes_of_interest, center_sample_radius=1.5,
                       max_detections=max_detections)
    model.info = ModelInfo(arch=arch_name, family="centermask", num_classes=int(num_classes),
                           input_size=int(input_size), arch_kwargs=dict(arch_kwargs), input_policy="short_side",
                           max_size=int(max_size), train_sizes=tuple(int(s) for s in train_sizes),
                           size_divisibility=model.size_divisibility)
    return model


_VOV_IN = ("stage3", "stage4", "stage5")
_FULL_TRAIN = range(640, 801, 32)
_LITE_TRAIN = (580, 600)


def _vov(arch, spec, num_classes, input_size, max_size, norm, train_sizes, lite: bool):
    kw = {"input_size": int(input_size), "max_size": int(max_size), "norm": norm}
    ch = 128 if lite else 256
    n = 2 if lite else 4
    return build_centermask(arch, kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                            train_sizes=train_sizes, bottom_up=VoVNet(spec, norm=norm, out_features=_VOV_IN),
                            in_features=_VOV_IN, fpn_channels=ch, fcos_convs=n, mask_convs=n, mask_dims=ch)


@register("centermask_v39", family="centermask")
def centermask_v39(*, num_classes: int, input_size: int = 800, max_size: int = 1333, norm: str = "BN"):
    """CenterMask V-39-eSE-FPN (centermask2 ``centermask_V_39_eSE_FPN_ms_3x``), test short side 800."""
    return _vov("centermask_v39", "V-39-eSE", num_classes, input_size, max_size, norm, _FULL_TRAIN, False)


@register("centermask_v57", family="centermask")
def centermask_v57(*, num_classes: int, input_size: int = 800, max_size: int = 1333, norm: str = "BN"):
    """CenterMask V-57-eSE-FPN (centermask2 ``centermask_V_57_eSE_FPN_ms_3x``), test short side 800."""
    return _vov("centermask_v57", "V-57-eSE", num_classes, input_size, max_size, norm, _FULL_TRAIN, False)


@register("centermask_v99", family="centermask")
def centermask_v99(*, num_classes: int, input_size: int = 800, max_size: int = 1333, norm: str = "BN"):
    """CenterMask V-99-eSE-FPN (centermask2 ``centermask_V_99_eSE_FPN_ms_3x``), test short side 800."""
    return _vov("centermask_v99", "V-99-eSE", num_classes, input_size, max_size, norm, _FULL_TRAIN, False)


@register("centermask_lite_v19", family="centermask")
def centermask_lite_v19(*, num_classes: int, input_size: int = 600, max_size: int = 1000, norm: str = "BN"):
    """CenterMask-Lite V-19-eSE-FPN (centermask2 ``centermask_lite_V_19_eSE_FPN_ms_4x``): FPN 128,
    2 + 2 FCOS convs, SAG-Mask / MaskIoU 2 x 128, test short side 600."""
    return _vov("centermask_lite_v19", "V-19-eSE", num_classes, input_size, max_size, norm, _LITE_TRAIN, True)


@register("centermask_lite_v39", family="centermask")
def centermask_lite_v39(*, num_classes: int, input_size: int = 600, max_size: int = 1000, norm: str = "BN"):
    """CenterMask-Lite V-39-eSE-FPN (centermask2 ``centermask_lite_V_39_eSE_FPN_ms_4x``), test short side 600."""
    return _vov("centermask_lite_v39", "V-39-eSE", num_classes, input_size, max_size, norm, _LITE_TRAIN, True)


@register("centermask_r50", family="centermask")
def centermask_r50(*, num_classes: int, input_size: int = 800, max_size: int = 1333, norm: str = "BN"):
    """CenterMask R-50-FPN (centermask2 ``centermask_R_50_FPN_ms_3x``): detectron2 ResNet-50
    (``FREEZE_AT`` 2 with FrozenBN, 0 with BN), test short side 800."""
    kw = {"input_size": int(input_size), "max_size": int(max_size), "norm": norm}
    bottom_up = D2ResNet(RESNET_BLOCKS[50], norm=norm, freeze_at=2 if norm == "FrozenBN" else 0)
    return build_centermask("centermask_r50", kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                            train_sizes=_FULL_TRAIN, bottom_up=bottom_up, in_features=("res3", "res4", "res5"))


@register("centermask_tiny", family="centermask")
def centermask_tiny(*, num_classes: int, input_size: int = 256, max_size: int = 416, norm: str = "BN"):
    """Small CenterMask for tests and CPU experiments (not an official config): slim VoVNet
    (:data:`TINY_VOVNET_SPEC`), FPN 64, 2 + 2 FCOS convs, SAG-Mask / MaskIoU 2 x 64."""
    kw = {"input_size": int(input_size), "max_size": int(max_size), "norm": norm}
    return build_centermask("centermask_tiny", kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                            train_sizes=range(192, 257, 32),
                            bottom_up=VoVNet(TINY_VOVNET_SPEC, norm=norm, out_features=_VOV_IN),
                            in_features=_VOV_IN, fpn_channels=64, fcos_convs=2, mask_convs=2, mask_dims=64)
