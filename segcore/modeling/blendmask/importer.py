"""Importer of official BlendMask checkpoints (aim-uofa/AdelaiDet, detectron2 format).

Files: ``R_50_1x.pth`` / ``R_50_3x.pth`` (-> ``blendmask_r50``), ``R_101_3x.pth``
(``blendmask_r101``), ``550_R_50_3x.pth`` (``blendmask_550_r50``),
``RT_R_50_4x_bn-head_syncbn_shtw.pth`` (``blendmask_rt_r50``),
``RT_R_50_4x_syncbn_shtw.pth`` (``blendmask_rt_r50`` with ``head_norm="GN"``, detected from the
file). detectron2 saves ``{"model": state_dict, ...}``; AdelaiDet's ``tools/rename_blendmask.py``
saves a bare state_dict: :func:`segcore.importers.read_state_dict` accepts both.

segcore's module names equal AdelaiDet's (``backbone.bottom_up.*``, ``backbone.fpn_*``,
``backbone.top_block.*``, ``proposal_generator.fcos_head.*``, ``basis_module.{refine, tower,
seg_head}.*``, ``top_layer.*``), so the mapping is the identity except:

* ``proposal_generator.fcos_head.centerness.*`` (files from before AdelaiDet commit 281ee24) ->
  ``...ctrness.*``;
* ``*.num_batches_tracked`` is optional (missing ones stay 0; extra ones on FrozenBN layers are
  dropped, as torchvision's FrozenBatchNorm2d does);
* ``pixel_mean`` / ``pixel_std`` (detectron2 v0.1.2-v0.3 files) are ignored: the model's own
  detectron2 mean / std are the same values.

Anything else unknown is refused with one line listing the keys; shape mismatches name key and
both shapes. K (classes) is read from ``cls_logits.weight``; the ``seg_head`` is built when the
file has one.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...importers import ImportReport, WeightImportError
from ...importers._detectron2 import load_by_name, num_classes_of, rename_key

__all__ = ["import_blendmask", "rename_key"]


def import_blendmask(state_dict: dict, arch: str, *, source: Path | str = "<state_dict>"
                     ) -> tuple[nn.Module, ImportReport]:
    """Build ``arch`` with the file's class count and copy every tensor into it.

    Args:
        state_dict: AdelaiDet BlendMask state_dict (tensors).
        arch: a ``blendmask_*`` registry name.
        source: file name for messages.

    Returns:
        ``(model in eval mode, ImportReport)``; ``report.missing`` lists model keys the file
        lacks (``num_batches_tracked`` excepted).

    Raises:
        WeightImportError: no ``cls_logits.weight``, unknown keys, or a shape mismatch.
    """
    from ..registry import build_model

    sd = {rename_key(k): v for k, v in state_dict.items()}
    num_classes = num_classes_of(sd, source, "BlendMask")
    kwargs = {}
    if arch == "blendmask_rt_r50" and any(k.startswith("proposal_generator.fcos_head.share_tower.1.")
                                          and k.endswith(".weight") and k.count(".") == 4 for k in sd):
        kwargs["head_norm"] = "GN"
    try:
        model = build_model(arch, num_classes=num_classes, **kwargs)
    except ValueError as exc:
        raise WeightImportError(f"{source}: --arch {arch}: {exc}") from None
    return load_by_name(sd, model, arch=arch, source=source, source_format="AdelaiDet BlendMask (detectron2)")
