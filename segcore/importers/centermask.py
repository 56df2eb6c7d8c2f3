"""Importer of official CenterMask / CenterMask-Lite checkpoints (youngwanLEE/centermask2,
detectron2 format).

Files (centermask2 model zoo): ``centermask2-V-39-eSE-FPN-ms-3x.pth`` (-> ``centermask_v39``),
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
is read from ``proposal_generator.fcos_head.cls_logits.weight``. The original maskrcnn-benchmark
CenterMask names (``module.`` prefix, ``rpn.head.*``) are not mapped: they are refused as unknown.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import ImportReport, WeightImportError, register_importer
from ._detectron2 import load_by_name, num_classes_of, rename_key

__all__ = ["import_centermask", "rename_key"]


@register_importer("centermask_")
def import_centermask(state_dict: dict, arch: str, *, source: Path | str = "<state_dict>"
                      ) -> tuple[nn.Module, ImportReport]:
    """Build ``arch`` (FrozenBN) with the file's class count and copy every tensor into it.

    Args:
        state_dict: centermask2 state_dict (tensors).
        arch: a ``centermask_*`` registry name.
        source: file name for messages.

    Returns:
        ``(model in eval mode, ImportReport)``; ``report.missing`` lists model keys the file lacks
        (``num_batches_tracked`` excepted).

    Raises:
        WeightImportError: no ``cls_logits.weight``, unknown keys, or a shape mismatch.
    """
    from segcore.modeling.registry import build_model

    import segcore.modeling  # noqa: F401  (registers the architectures)

    sd = {rename_key(k): v for k, v in state_dict.items()}
    num_classes = num_classes_of(sd, source, "CenterMask")
    try:
        model = build_model(arch, num_classes=num_classes, norm="FrozenBN")
    except (ValueError, TypeError) as exc:
        raise WeightImportError(f"{source}: --arch {arch}: {exc}") from None
    return load_by_name(sd, model, arch=arch, source=source, source_format="centermask2 CenterMask (detectron2)")
