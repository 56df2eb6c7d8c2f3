"""Importer of official CenterMask / CenterMask-Lite checkpoints: youngwanLEE/centermask2 (detectron2
format, loaded) and the original youngwanLEE/CenterMask (maskrcnn-benchmark format, mapped, then refused).

**centermask2** files (model zoo): ``centermask2-V-39-eSE-FPN-ms-3x.pth`` (-> ``centermask_v39``),
``-V-57-`` / ``-V-99-`` (``centermask_v57`` / ``centermask_v99``), ``centermask2-lite-V-19-eSE-FPN-ms-4x.pth``
(``centermask_lite_v19``), ``-lite-V-39-`` (``centermask_lite_v39``), R-50 (``centermask_r50``).
detectron2 saves ``{"model": state_dict, ...}``; a bare state_dict is accepted too
(:func:`segcore.importers.read_state_dict` unwraps both).

segcore's module names equal centermask2's (``backbone.bottom_up.*`` with the VoVNet ``'/'``
names such as ``backbone.bottom_up.stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight``,
``backbone.fpn_*``, ``backbone.top_block.p6/p7``, ``proposal_generator.fcos_head.*``,
``roi_heads.mask_head.*``, ``roi_heads.maskiou_head.*``), so the mapping is the identity except:

* ``proposal_generator.fcos_head.centerness.*`` -> ``...ctrness.*`` (AdelaiDet's short-lived name);
* ``*.num_batches_tracked`` is optional (FrozenBN layers have none; extra ones are dropped);
* ``pixel_mean`` / ``pixel_std`` (detectron2 v0.1.2-v0.3 saved them) are ignored: the model's own
  detectron2 mean / std are the defaults the centermask2 configs use.

The model is built with ``norm="FrozenBN"`` (the official backbone norm; recorded in
``arch_kwargs``, so a segcore checkpoint saved from it rebuilds the same way). Anything else unknown
is refused with one line listing the keys; a shape mismatch names key and both shapes. K (classes)
is read from ``proposal_generator.fcos_head.cls_logits.weight``.

**maskrcnn-benchmark** files (youngwanLEE/CenterMask @72147e8, the paper's code base): its
``DetectronCheckpointer`` saves ``{"model": state_dict, "optimizer", "scheduler", "iteration"}``,
with every key prefixed ``module.`` when trained with DistributedDataParallel
(``tools/train_net.py``). A file is taken for this format when a key starts with ``module.``,
``backbone.body.``, ``backbone.fpn.``, ``rpn.head.``, ``roi_heads.mask.`` or ``roi_heads.maskiou.``.
:func:`convert_maskrcnn_benchmark_state_dict` drops ``module.`` and renames by the table
:data:`MRCNN_RULES` (first full match wins; key sets and shapes checked against the models built
from ``configs/centermask/centermask_V_39_eSE_FPN_ms_3x.yaml``,
``centermask_V_19_eSE_FPN_lite_res600_ms_bs16_4x.yaml`` and ``centermask_R_50_FPN_ms_3x.yaml``,
lists in ``tests/fixtures/keys_centermask_mrcnn_*.txt``):

| maskrcnn-benchmark key | segcore / centermask2 key |
|---|---|
| ``backbone.body.{stem,stage2..5}.*`` (VoVNet: same names) | ``backbone.bottom_up.*`` |
| ``backbone.body.stem.conv1`` / ``stem.bn1.*`` (ResNet) | ``backbone.bottom_up.stem.conv1`` / ``.conv1.norm.*`` |
| ``backbone.body.layer{s}.{b}.conv{c}`` / ``bn{c}.*`` | ``backbone.bottom_up.res{s+1}.{b}.conv{c}`` / ``.norm.*`` |
| ``backbone.body.layer{s}.{b}.downsample.0`` / ``.1.*`` | ``...res{s+1}.{b}.shortcut`` / ``shortcut.norm.*`` |
| ``backbone.fpn.fpn_inner{i}`` / ``fpn_layer{i}``, i = 2..4 | ``backbone.fpn_lateral{i+1}`` / ``fpn_output{i+1}`` |
| ``backbone.fpn.top_blocks.p6`` / ``p7`` | ``backbone.top_block.p6`` / ``p7`` |
| ``rpn.head.{cls_tower,bbox_tower,cls_logits,bbox_pred,scales}.*`` | ``proposal_generator.fcos_head.*`` |
| ``rpn.head.centerness`` | ``proposal_generator.fcos_head.ctrness`` |
| ``roi_heads.mask.feature_extractor.mask_fcn{k}`` / ``spatialAtt.conv`` | ``roi_heads.mask_head.*`` (same names) |
| ``roi_heads.mask.predictor.conv5_mask`` / ``mask_fcn_logits`` (K + 1) | ``roi_heads.mask_head.deconv`` / ``predictor`` |
| ``roi_heads.maskiou.feature_extractor.{maskiou_fcn{k},maskiou_fc1,maskiou_fc2}`` | ``roi_heads.maskiou_head.*`` |
| ``roi_heads.maskiou.predictor.maskiou`` (K + 1 rows) | ``roi_heads.maskiou_head.maskiou`` (K) |

Sources (under ``maskrcnn_benchmark/modeling/``): ``backbone/vovnet.py`` (``VoVNet``, ``_OSA_module``,
``eSEModule``: the module names, layout and eSE of centermask2), ``backbone/resnet.py`` (``STRIDE_IN_1X1``
True as detectron2's MSRA layout), ``backbone/backbone.py`` + ``backbone/fpn.py`` (``FPN`` numbers its
inputs 1..4 = C2..C5 with ``in_channels_list [0, C3, C4, C5]``, so C2 has no convs and input i is level
i + 1; ``LastLevelP6P7`` with ``RETINANET.USE_C5 False``: P6 from P5, P7 from ReLU(P6), as centermask2),
``rpn/fcos/fcos_head.py`` (``FCOSHead``: GN towers, centerness on the box tower, K =
``FCOS.NUM_CLASSES`` - 1), ``roi_heads/mask_head/roi_mask_feature_extractors.py``
(``MaskRCNNFPNSpatialAttentionFeatureExtractor``: convs + ReLU then ``make_layers.SpatialAttention``),
``roi_heads/mask_head/roi_mask_predictors.py`` (``MaskRCNNC4Predictor``: deconv + ReLU, 1x1 logits over
``ROI_BOX_HEAD.NUM_CLASSES`` = K + 1, background row 0 dropped), ``roi_heads/maskiou_head/`` (same layout
as centermask2's ``MaskIoUHead``, K + 1 outputs, row 0 dropped).

maskrcnn-benchmark's ``FrozenBatchNorm2d`` (``layers/batch_norm.py``) divides by
``sqrt(running_var)`` without eps, segcore's (torchvision / detectron2) by ``sqrt(running_var + 1e-5)``:
the backbone norm weights are multiplied by ``sqrt((running_var + 1e-5) / running_var)`` so both compute
the same (a ``running_var <= 0`` is refused). Refused with one line naming the difference, before
anything is loaded: deformable VoVNet convs (``*_dconv_*`` configs, ``/conv.offset``), ``FCOSSharedHead``
(``rpn.head.shared_tower``), GroupNorm in the FPN or the mask heads (``fpn_inner{i}.0``,
``mask_fcn{k}.0``), a box head (``roi_heads.box``); other unknown keys are listed.

**Every maskrcnn-benchmark file is then refused** (after the keys, shapes and completeness are
checked): that code's ``FCOSHead.forward`` decodes box distances as ``exp(scale * bbox_pred)`` in
input pixels, centermask2's and segcore's as ``relu(scale * bbox_pred) * stride``. No choice of
weights makes one equal the other, so segcore cannot represent the trained FCOS box branch and
loading would give wrong boxes (and masks). Smaller inference differences that would remain were
this lifted (no parameters involved): pixel mean ``[102.98, 115.95, 122.77]`` vs detectron2's
``[103.53, 116.28, 123.675]``, legacy RoIAlign (``aligned=False``, sampling ratio 2), FCOS score
``cls * ctr`` vs ``sqrt(cls * ctr)``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ...importers import ImportReport, WeightImportError
from ...importers._detectron2 import listing, load_by_name, num_classes_of, rename_key

__all__ = ["import_centermask", "rename_key", "is_maskrcnn_benchmark", "convert_maskrcnn_benchmark_state_dict",
           "MRCNN_RULES", "MRCNN_UNSUPPORTED"]

_MRCNN_PREFIXES = ("module.", "backbone.body.", "backbone.fpn.", "rpn.head.", "roi_heads.mask.",
                   "roi_heads.maskiou.")
_FROZEN_BN_EPS = 1e-5  # segcore's FrozenBN (torchvision / detectron2); maskrcnn-benchmark's has none

#: maskrcnn-benchmark key (``module.`` already dropped) -> segcore key: ``(regex, template)``, the
#: first regex that fully matches wins; the template is ``str.format``-ed with the named groups,
#: and ``{x1}`` stands for group ``x`` plus one (ResNet ``layer1`` = ``res2``, FPN input 2 = C3 = level 3).
MRCNN_RULES: tuple[tuple[str, str], ...] = (
    # backbone/resnet.py (CenterMask-R configs) -> detectron2 ResNet (STRIDE_IN_1X1 True in both)
    (r"backbone\.body\.stem\.conv1\.weight", "backbone.bottom_up.stem.conv1.weight"),
    (r"backbone\.body\.stem\.bn1\.(?P<p>\w+)", "backbone.bottom_up.stem.conv1.norm.{p}"),
    (r"backbone\.body\.layer(?P<s>[1-4])\.(?P<b>\d+)\.conv(?P<c>[123])\.weight",
     "backbone.bottom_up.res{s1}.{b}.conv{c}.weight"),
    (r"backbone\.body\.layer(?P<s>[1-4])\.(?P<b>\d+)\.bn(?P<c>[123])\.(?P<p>\w+)",
     "backbone.bottom_up.res{s1}.{b}.conv{c}.norm.{p}"),
    (r"backbone\.body\.layer(?P<s>[1-4])\.(?P<b>\d+)\.downsample\.0\.weight",
     "backbone.bottom_up.res{s1}.{b}.shortcut.weight"),
    (r"backbone\.body\.layer(?P<s>[1-4])\.(?P<b>\d+)\.downsample\.1\.(?P<p>\w+)",
     "backbone.bottom_up.res{s1}.{b}.shortcut.norm.{p}"),
    # backbone/vovnet.py: the same module names as centermask2 (and segcore's VoVNet)
    (r"backbone\.body\.(?P<rest>(stem|stage[2-5])\..+)", "backbone.bottom_up.{rest}"),
    # backbone/fpn.py: fpn_inner{i} / fpn_layer{i} for input i of [C2 (skipped), C3, C4, C5]
    (r"backbone\.fpn\.fpn_inner(?P<i>[234])\.(?P<p>weight|bias)", "backbone.fpn_lateral{i1}.{p}"),
    (r"backbone\.fpn\.fpn_layer(?P<i>[234])\.(?P<p>weight|bias)", "backbone.fpn_output{i1}.{p}"),
    (r"backbone\.fpn\.top_blocks\.(?P<rest>p[67]\.(weight|bias))", "backbone.top_block.{rest}"),
    # rpn/fcos/fcos_head.py FCOSHead
    (r"rpn\.head\.(?P<rest>(cls_tower|bbox_tower)\.\d+\.(weight|bias))", "proposal_generator.fcos_head.{rest}"),
    (r"rpn\.head\.(?P<rest>(cls_logits|bbox_pred)\.(weight|bias))", "proposal_generator.fcos_head.{rest}"),
    (r"rpn\.head\.centerness\.(?P<p>weight|bias)", "proposal_generator.fcos_head.ctrness.{p}"),
    (r"rpn\.head\.scales\.(?P<l>\d+)\.scale", "proposal_generator.fcos_head.scales.{l}.scale"),
    # roi_heads/mask_head: MaskRCNNFPNSpatialAttentionFeatureExtractor + MaskRCNNC4Predictor
    (r"roi_heads\.mask\.feature_extractor\.(?P<rest>mask_fcn\d+\.(weight|bias)|spatialAtt\.conv\.weight)",
     "roi_heads.mask_head.{rest}"),
    (r"roi_heads\.mask\.predictor\.conv5_mask\.(?P<p>weight|bias)", "roi_heads.mask_head.deconv.{p}"),
    (r"roi_heads\.mask\.predictor\.mask_fcn_logits\.(?P<p>weight|bias)", "roi_heads.mask_head.predictor.{p}"),
    # roi_heads/maskiou_head: MaskIoUFeatureExtractor + MaskIoUPredictor
    (r"roi_heads\.maskiou\.feature_extractor\.(?P<rest>(maskiou_fcn\d+|maskiou_fc[12])\.(weight|bias))",
     "roi_heads.maskiou_head.{rest}"),
    (r"roi_heads\.maskiou\.predictor\.maskiou\.(?P<p>weight|bias)", "roi_heads.maskiou_head.maskiou.{p}"),
)

#: Mapped keys whose first row is maskrcnn-benchmark's background class (``ROI_BOX_HEAD.NUM_CLASSES`` 81).
_BACKGROUND_FIRST = ("roi_heads.mask_head.predictor.", "roi_heads.maskiou_head.maskiou.")

#: ``(regex searched in the key, the difference)``: layouts segcore's CenterMask cannot hold.
MRCNN_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    (r"/conv\.(offset|conv)\.", "deformable convolutions in the VoVNet (MODEL.VOVNET.STAGE_WITH_DCN, the *_dconv_* "
                                "configs): no segcore CenterMask architecture has DCN"),
    (r"^rpn\.head\.shared_tower\.", "FCOSSharedHead (MODEL.FCOS.HEAD): segcore's CenterMask has separate cls / "
                                    "bbox towers"),
    (r"^backbone\.fpn\.fpn_(inner|layer)\d\.\d+\.", "GroupNorm in the FPN (MODEL.FPN.USE_GN): segcore's FPN has "
                                                    "plain convs"),
    (r"^roi_heads\.(mask|maskiou)\.feature_extractor\.\w+\.\d+\.",
     "GroupNorm in the SAG-Mask / MaskIoU convs (ROI_MASK_HEAD.USE_GN): segcore's heads have plain convs"),
    (r"^roi_heads\.box\.", "a box head (roi_heads.box, two-stage Mask R-CNN): segcore's CenterMask takes FCOS boxes"),
)

_FCOS_REGRESSION = (
    "its FCOS head decodes rpn.head.bbox_pred / rpn.head.scales as exp(scale * x) pixels "
    "(youngwanLEE/CenterMask maskrcnn_benchmark/modeling/rpn/fcos/fcos_head.py), segcore's as "
    "relu(scale * x) * stride (centermask2); segcore cannot represent that box regression, so the boxes "
    "and masks would be wrong: use the centermask2 release of the model")


def is_maskrcnn_benchmark(state_dict: dict) -> bool:
    """Whether ``state_dict`` has maskrcnn-benchmark names (a key starting with ``module.``,
    ``backbone.body.``, ``backbone.fpn.``, ``rpn.head.``, ``roi_heads.mask.`` or ``roi_heads.maskiou.``)."""
    return any(k.startswith(_MRCNN_PREFIXES) for k in state_dict)


_COMPILED_RULES = tuple((re.compile(p), t) for p, t in MRCNN_RULES)


def _rename(key: str) -> str | None:
    for pattern, template in _COMPILED_RULES:
        m = pattern.fullmatch(key)
        if m:
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            fields.update({k + "1": str(int(v) + 1) for k, v in list(fields.items()) if v.isdigit()})
            return template.format(**fields)
    return None


def convert_maskrcnn_benchmark_state_dict(state_dict: dict, *, source: Path | str = "<state_dict>") -> dict:
    """Rename a youngwanLEE/CenterMask (maskrcnn-benchmark) state_dict to centermask2 / segcore keys.

    Drops the ``module.`` prefix, renames by :data:`MRCNN_RULES`, drops the background row 0 of
    ``mask_fcn_logits`` and ``maskiou`` (K + 1 -> K, K from ``rpn.head.cls_logits``), and folds the
    eps-free maskrcnn-benchmark FrozenBN into segcore's (``weight *= sqrt((running_var + 1e-5) /
    running_var)`` for each ``backbone.bottom_up`` norm). Other values are unchanged.

    Returns:
        ``{segcore key: tensor}``; ``num_batches_tracked`` keys are passed through renamed.

    Raises:
        WeightImportError: (one line naming ``source``) a layout of :data:`MRCNN_UNSUPPORTED`,
            keys no rule maps (listed), duplicate targets, a predictor whose rows are not K + 1,
            a ``running_var <= 0``.
    """
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    for pattern, difference in MRCNN_UNSUPPORTED:
        hits = [k for k in sd if re.search(pattern, k)]
        if hits:
            raise WeightImportError(f"{source}: maskrcnn-benchmark CenterMask with {difference}: {listing(hits)}")
    out: dict = {}
    unknown, origin = [], {}
    for key, value in sd.items():
        new = _rename(key)
        if new is None:
            unknown.append(key)
            continue
        if new in out:
            raise WeightImportError(f"{source}: keys {origin[new]} and {key} both map to {new}")
        out[new], origin[new] = value, key
    if unknown:
        raise WeightImportError(f"{source}: maskrcnn-benchmark CenterMask keys with no segcore counterpart: "
                                f"{listing(unknown)}")
    k = num_classes_of(out, source, "CenterMask")
    for prefix in _BACKGROUND_FIRST:
        for key in [n for n in out if n.startswith(prefix)]:
            rows = int(out[key].shape[0]) if out[key].dim() else -1
            if rows != k + 1:
                raise WeightImportError(f"{source}: {origin[key]} has {rows} rows, expected {k + 1} (background "
                                        f"first, then the {k} classes of rpn.head.cls_logits)")
            out[key] = out[key][1:].clone()
    bad = []
    for key in [n for n in out if n.startswith("backbone.bottom_up.") and n.endswith("running_var")]:
        wkey = key[: -len("running_var")] + "weight"
        var = out[key].double()
        if wkey not in out:
            continue
        if not bool((var > 0).all()):
            bad.append(origin[key])
            continue
        w = out[wkey]
        out[wkey] = (w.double() * torch.sqrt((var + _FROZEN_BN_EPS) / var)).to(w.dtype)
    if bad:
        raise WeightImportError(f"{source}: FrozenBN running_var <= 0 (maskrcnn-benchmark divides by "
                                f"sqrt(running_var), no eps): {listing(bad)}")
    return out


def import_centermask(state_dict: dict, arch: str, *, source: Path | str = "<state_dict>"
                      ) -> tuple[nn.Module, ImportReport]:
    """Build ``arch`` (FrozenBN) with the file's class count and copy every tensor into it.

    Args:
        state_dict: centermask2 state_dict (tensors), or a youngwanLEE/CenterMask
            (maskrcnn-benchmark) one, which is mapped and checked, then refused (see the module
            docstring: its FCOS box regression differs).
        arch: a ``centermask_*`` registry name.
        source: file name for messages.

    Returns:
        ``(model in eval mode, ImportReport)``; ``report.missing`` lists model keys the file lacks
        (``num_batches_tracked`` excepted).

    Raises:
        WeightImportError: no ``cls_logits.weight``, unknown keys, a shape mismatch; for a
            maskrcnn-benchmark file also missing keys, the layouts of :data:`MRCNN_UNSUPPORTED`,
            and finally the FCOS box regression.
    """
    from ..registry import build_model

    mrcnn = is_maskrcnn_benchmark(state_dict)
    if mrcnn:
        sd = convert_maskrcnn_benchmark_state_dict(state_dict, source=source)
    else:
        sd = {rename_key(k): v for k, v in state_dict.items()}
    num_classes = num_classes_of(sd, source, "CenterMask")
    try:
        model = build_model(arch, num_classes=num_classes, norm="FrozenBN")
    except (ValueError, TypeError) as exc:
        raise WeightImportError(f"{source}: --arch {arch}: {exc}") from None
    if not mrcnn:
        return load_by_name(sd, model, arch=arch, source=source,
                            source_format="centermask2 CenterMask (detectron2)")
    model, report = load_by_name(sd, model, arch=arch, source=source,
                                 source_format="youngwanLEE/CenterMask (maskrcnn-benchmark)")
    if report.missing:
        raise WeightImportError(f"{source}: {len(report.missing)} keys missing for --arch {arch} (another "
                                f"architecture?): {listing(report.missing)}")
    raise WeightImportError(f"{source}: maskrcnn-benchmark CenterMask checkpoint refused: {_FCOS_REGRESSION}")
