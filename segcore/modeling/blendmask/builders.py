"""Registered BlendMask builders, one per official AdelaiDet configuration (+ a tiny test config).

| name | AdelaiDet ``configs/BlendMask/`` | backbone norm | FPN | FCOS head (cls/box/share, norm) | basis convs | short side (max) train / test | SOI |
|---|---|---|---|---|---|---|---|
| ``blendmask_r50`` | ``R_50_1x`` / ``R_50_3x`` | R-50 FrozenBN, freeze_at 2 | P3-P7 | 4/4/0 GN | 3 | 640-800 (1333) / 800 | 64,128,256,512 |
| ``blendmask_r101`` | ``R_101_3x`` | R-101 FrozenBN | P3-P7 | 4/4/0 GN | 3 | 640-800 (1333) / 800 | 64,128,256,512 |
| ``blendmask_550_r50`` | ``550_R_50_3x`` | R-50 FrozenBN | P3-P6 | 0/0/3 GN | 2 | 440-550 (916) / 550 | 64,128,256 |
| ``blendmask_rt_r50`` | ``RT_R_50_4x_bn-head_syncbn_shtw`` | R-50 BN, freeze_at 0 | P3-P5 | 0/0/3 per-level BN | 2 | 256-608 (900) / 512 (736) | 64,128 |
| ``blendmask_r50_deeplab`` | none (paper Sec. 4 main results) | as ``blendmask_r50``, DeepLabV3+ bottom (width 256, P3 + P5) | P3-P7 | 4/4/0 GN | decoder | 640-800 (1333) / 800 | 64,128,256,512 |
| ``blendmask_tiny`` | none (tests, CPU; M = 7) | 4-block R, BN | P3-P5, 64 ch | 0/0/2 GN | 1 (32 ch) | 192-256 / 256 (416) | 64,128 |

``blendmask_rt_r50(head_norm="GN")`` is ``RT_R_50_4x_syncbn_shtw``. All: K = 4 bases, M = 14,
R = 56, ``USE_SCALE`` False, ``THRESH_WITH_CTR`` True, centre sampling 1.5 (``Base-BlendMask.yaml``);
the official configs train with the auxiliary "thing" semantic loss (``BASIS_MODULE.LOSS_ON``
True, weight 0.3), so ``semantic_loss`` defaults to True for them (targets are made from the
instance masks, see :mod:`.loss`) and to False for ``blendmask_tiny``;
SyncBN is ``nn.BatchNorm2d`` in the model (same keys); ``blendmask_rt_r50`` (a ``syncbn`` config)
has ``ModelInfo.sync_bn`` and the engine converts its BatchNorm to ``nn.SyncBatchNorm`` when
several CUDA processes train. Models start from random init (nothing is downloaded);
``annotator import-weights`` loads the official files (:mod:`.importer`).

Every model has ``info`` (:class:`segcore.modeling.registry.ModelInfo`: ``input_size`` = the test
short side S, ``max_size``, ``train_sizes``, ``input_policy="short_side"``).
"""

from __future__ import annotations

from ..d2_resnet import RESNET_BLOCKS, D2ResNet
from ..fcos import D2FPN, FCOSProposalGenerator
from ..registry import ModelInfo, register
from .basis import BasisModule, DeepLabV3PlusBasis
from .model import BlendMask

__all__ = ["build_blendmask", "blendmask_r50", "blendmask_r101", "blendmask_550_r50", "blendmask_rt_r50",
           "blendmask_r50_deeplab", "blendmask_tiny"]


def build_blendmask(arch_name: str, arch_kwargs: dict, *, num_classes: int, input_size: int, max_size: int,
                    train_sizes, blocks, backbone_norm: str = "FrozenBN", freeze_at: int = 2, stem_channels: int = 64,
                    res2_out: int = 256, bottleneck_channels: int = 64, fpn_channels: int = 256, top_levels: int = 2,
                    sizes_of_interest=(64, 128, 256, 512), num_cls_convs: int = 4, num_box_convs: int = 4,
                    num_share_convs: int = 0, head_norm: str | None = "GN", use_scale: bool = False,
                    basis_channels: int = 128, basis_num_convs: int = 3, num_bases: int = 4, attn_size: int = 14,
                    bottom_resolution: int = 56, semantic_loss: bool = False, seg_head: bool | None = None,
                    bottom: str = "protofpn", sync_bn: bool = False) -> BlendMask:
    """Assemble a :class:`.model.BlendMask` (all sizes explicit; see the table above).

    ``bottom``: ``"protofpn"`` (:class:`.basis.BasisModule`, every official AdelaiDet config) or
    ``"deeplabv3plus"`` (:class:`.basis.DeepLabV3PlusBasis`, the paper's default, width
    ``basis_channels``). ``seg_head`` None = built when ``semantic_loss`` is on (its only user).
    ``sync_bn``: the official config trains with SyncBN (``ModelInfo.sync_bn``)."""
    if seg_head is None:
        seg_head = semantic_loss
    if input_size < 32 or max_size < input_size:
        raise ValueError(f"{arch_name}: need 32 <= input_size <= max_size, got {input_size}, {max_size}")
    bottom_up = D2ResNet(blocks, stem_channels=stem_channels, res2_out=res2_out,
                         bottleneck_channels=bottleneck_channels, norm=backbone_norm, freeze_at=freeze_at)
    backbone = D2FPN(bottom_up, out_channels=fpn_channels, top_levels=top_levels)
    if len(sizes_of_interest) != len(backbone.strides) - 1:
        raise ValueError(f"{arch_name}: {len(backbone.strides)} levels need {len(backbone.strides) - 1} "
                         "sizes_of_interest")
    gen = FCOSProposalGenerator(backbone.strides, in_channels=fpn_channels, num_classes=num_classes,
                                num_cls_convs=num_cls_convs, num_box_convs=num_box_convs,
                                num_share_convs=num_share_convs, norm=head_norm, use_scale=use_scale)
    if bottom == "protofpn":
        basis = BasisModule(fpn_channels, channels=basis_channels, num_bases=num_bases, num_convs=basis_num_convs,
                            num_classes=num_classes if seg_head else None)
    elif bottom == "deeplabv3plus":
        basis = DeepLabV3PlusBasis(fpn_channels, channels=basis_channels, num_bases=num_bases,
                                   num_classes=num_classes if seg_head else None)
    else:
        raise ValueError(f"{arch_name}: bottom must be 'protofpn' or 'deeplabv3plus', got {bottom!r}")
    model = BlendMask(backbone, gen, basis, num_bases=num_bases, attn_size=attn_size,
                      bottom_resolution=bottom_resolution, semantic_loss=semantic_loss,
                      sizes_of_interest=sizes_of_interest, center_sample_radius=1.5, thresh_with_ctr=True)
    model.info = ModelInfo(arch=arch_name, family="blendmask", num_classes=int(num_classes), input_size=int(input_size),
                           arch_kwargs=dict(arch_kwargs), input_policy="short_side", max_size=int(max_size),
                           train_sizes=tuple(int(s) for s in train_sizes),
                           size_divisibility=model.size_divisibility, sync_bn=bool(sync_bn))
    return model


def _kw(input_size, max_size, **extra) -> dict:
    return {"input_size": int(input_size), "max_size": int(max_size), **extra}


@register("blendmask_r50", family="blendmask")
def blendmask_r50(*, num_classes: int, input_size: int = 800, max_size: int = 1333, semantic_loss: bool = True):
    """BlendMask R-50-FPN (AdelaiDet ``R_50_1x``/``R_50_3x``), test short side 800."""
    kw = _kw(input_size, max_size, semantic_loss=semantic_loss)
    return build_blendmask("blendmask_r50", kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                           train_sizes=range(640, 801, 32), blocks=RESNET_BLOCKS[50], semantic_loss=semantic_loss)


@register("blendmask_r101", family="blendmask")
def blendmask_r101(*, num_classes: int, input_size: int = 800, max_size: int = 1333, semantic_loss: bool = True):
    """BlendMask R-101-FPN (AdelaiDet ``R_101_3x``), test short side 800."""
    kw = _kw(input_size, max_size, semantic_loss=semantic_loss)
    return build_blendmask("blendmask_r101", kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                           train_sizes=range(640, 801, 32), blocks=RESNET_BLOCKS[101], semantic_loss=semantic_loss)


@register("blendmask_550_r50", family="blendmask")
def blendmask_550_r50(*, num_classes: int, input_size: int = 550, max_size: int = 916, semantic_loss: bool = True):
    """BlendMask 550 R-50 (AdelaiDet ``550_R_50_3x``): P3-P6, 3 shared GN head convs, 2 basis convs."""
    kw = _kw(input_size, max_size, semantic_loss=semantic_loss)
    return build_blendmask("blendmask_550_r50", kw, num_classes=num_classes, input_size=input_size,
                           max_size=max_size, train_sizes=range(440, 551, 32), blocks=RESNET_BLOCKS[50],
                           top_levels=1, sizes_of_interest=(64, 128, 256), num_cls_convs=0, num_box_convs=0,
                           num_share_convs=3, basis_num_convs=2, semantic_loss=semantic_loss)


@register("blendmask_rt_r50", family="blendmask")
def blendmask_rt_r50(*, num_classes: int, input_size: int = 512, max_size: int = 736, head_norm: str = "BN",
                     semantic_loss: bool = True):
    """BlendMask-RT R-50 (AdelaiDet ``RT_R_50_4x_bn-head_syncbn_shtw``; ``head_norm="GN"`` =
    ``RT_R_50_4x_syncbn_shtw``): BN backbone trained from the stem, P3-P5, 3 shared head convs."""
    kw = _kw(input_size, max_size, head_norm=head_norm, semantic_loss=semantic_loss)
    return build_blendmask("blendmask_rt_r50", kw, num_classes=num_classes, input_size=input_size,
                           max_size=max_size, train_sizes=range(256, 609, 32), blocks=RESNET_BLOCKS[50],
                           backbone_norm="BN", freeze_at=0, top_levels=0, sizes_of_interest=(64, 128),
                           num_cls_convs=0, num_box_convs=0, num_share_convs=3, head_norm=head_norm,
                           basis_num_convs=2, semantic_loss=semantic_loss, sync_bn=True)


@register("blendmask_r50_deeplab", family="blendmask")
def blendmask_r50_deeplab(*, num_classes: int, input_size: int = 800, max_size: int = 1333, semantic_loss: bool = True):
    """BlendMask R-50-FPN with the paper's DeepLabV3+ bottom module (Sec. 4 main results: decoder
    width 256, P3 and P5 input); otherwise as ``blendmask_r50``. No official checkpoint exists."""
    kw = _kw(input_size, max_size, semantic_loss=semantic_loss)
    return build_blendmask("blendmask_r50_deeplab", kw, num_classes=num_classes, input_size=input_size,
                           max_size=max_size, train_sizes=range(640, 801, 32), blocks=RESNET_BLOCKS[50],
                           semantic_loss=semantic_loss, bottom="deeplabv3plus", basis_channels=256)


@register("blendmask_tiny", family="blendmask")
def blendmask_tiny(*, num_classes: int, input_size: int = 256, max_size: int = 416, semantic_loss: bool = False,
                   bottom: str = "protofpn"):
    """Small BlendMask for tests and CPU experiments (not an official config); ``bottom`` as in
    :func:`build_blendmask`."""
    kw = _kw(input_size, max_size, semantic_loss=semantic_loss, bottom=bottom)
    return build_blendmask("blendmask_tiny", kw, num_classes=num_classes, input_size=input_size, max_size=max_size,
                           train_sizes=range(192, 257, 32), blocks=(1, 1, 1, 1), backbone_norm="BN", freeze_at=0,
                           stem_channels=32, res2_out=64, bottleneck_channels=16, fpn_channels=64, top_levels=0,
                           sizes_of_interest=(64, 128), num_cls_convs=0, num_box_convs=0, num_share_convs=2,
                           basis_channels=32, basis_num_convs=1, attn_size=7, semantic_loss=semantic_loss,
                           bottom=bottom)
