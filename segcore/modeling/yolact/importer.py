"""Importer of official YOLACT / YOLACT++ checkpoints (dbolya/yolact) into segcore models.

The official files are plain state_dicts (``Yolact.save_weights`` = ``torch.save(state_dict())``),
e.g. ``yolact_resnet50_54_800000.pth`` (-> ``yolact_r50_550``), ``yolact_base_54_800000.pth``
(``yolact_r101_550``), ``yolact_darknet53_54_800000.pth`` (``yolact_darknet53_550``),
``yolact_im700_54_800000.pth`` (``yolact_r101_700``), ``yolact_plus_resnet50_54_800000.pth``
(``yolact_plus_r50_550``), ``yolact_plus_base_54_800000.pth`` (``yolact_plus_r101_550``).
segcore's module names equal the official ones, so the mapping is the identity on every key;
the importer checks that every key of the file is understood and every tensor fits.

Ignored (documented legacy keys, dropped by the official ``Yolact.load_weights`` in ``yolact.py``):
``fpn.downsample_layers.{i}.*`` with i >= 2 (v1.0 files carry a third downsample conv) and
``backbone.layer*`` keys that are not ``backbone.layers.*``. Missing ``*.num_batches_tracked``
buffers (files from old PyTorch) keep their value 0 and are not reported missing.
Anything else unknown is refused with one line listing the keys; shape mismatches are refused
naming key and both shapes.

mmdetection YOLACT checkpoints (keys ``neck.lateral_convs.*``, ``bbox_head.*``,
``mask_head.protonet.*``) are refused with a one-line reason: their network differs in ways
segcore's YOLACT does not represent (P6 from C5 instead of P5, no ReLU on the FPN outputs,
true-ratio anchors, background as the last class logit, separately trained weights), so a
key renaming would load them into a different network.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from ...importers import ImportReport, WeightImportError

__all__ = ["import_yolact", "is_legacy_key", "MMDET_REFUSAL"]

_LIST_MAX = 20

MMDET_REFUSAL = (
    "mmdetection YOLACT checkpoint (neck.* / bbox_head.* keys): not supported, its network differs from the "
    "official YOLACT that segcore implements (P6 from C5, no ReLU on FPN outputs, true-ratio anchors, background "
    "logit last); use the official dbolya/yolact weights")


def is_legacy_key(key: str) -> bool:
    """True for the keys the official ``Yolact.load_weights`` drops (see the module docstring)."""
    m = re.match(r"fpn\.downsample_layers\.(\d+)\.", key)
    if m and int(m.group(1)) >= 2:
        return True
    return key.startswith("backbone.layer") and not key.startswith("backbone.layers.")


def _listing(keys: list[str]) -> str:
    more = f", ... and {len(keys) - _LIST_MAX} more" if len(keys) > _LIST_MAX else ""
    return ", ".join(keys[:_LIST_MAX]) + more


def _num_classes(state_dict: dict, source: Path) -> int:
    """K from the class-dependent tensors: ``conf_layer`` has A * (K + 1) outputs, ``bbox_layer`` A * 4."""
    try:
        conf = state_dict["prediction_layers.0.conf_layer.weight"]
        box = state_dict["prediction_layers.0.bbox_layer.weight"]
    except KeyError as exc:
        raise WeightImportError(f"{source}: not a YOLACT checkpoint (no {exc.args[0]})") from None
    a = box.shape[0] // 4
    if a < 1 or box.shape[0] % 4 or conf.shape[0] % a or conf.shape[0] // a < 2:
        raise WeightImportError(f"{source}: prediction_layers.0.conf_layer.weight {tuple(conf.shape)} does not fit "
                                f"bbox_layer {tuple(box.shape)}")
    return conf.shape[0] // a - 1


def import_yolact(state_dict: dict, arch: str, *, source: Path) -> tuple[nn.Module, ImportReport]:
    """Build ``arch`` (K read off ``conf_layer``) and fill it from an official YOLACT state_dict.

    Args:
        state_dict: key -> tensor, as read by :func:`segcore.importers.read_state_dict`.
        arch: a registered YOLACT architecture, e.g. ``"yolact_plus_r50_550"``.
        source: the file (for messages).

    Returns:
        ``(model, report)``: the model in eval mode, every tensor copied (cast to the model's
        dtype); ``report.mapped`` tensors, ``report.ignored`` legacy keys, ``report.missing``
        keys of the model the file lacks (non-empty -> the caller refuses the import).

    Raises:
        WeightImportError: mmdetection checkpoint, unknown keys (listed), shape mismatches
            (key and shapes), or an unknown ``arch``.
    """
    from ..registry import build_model

    source = Path(source)
    if any(k.startswith(("neck.", "bbox_head.", "mask_head.", "segm_head.")) for k in state_dict):
        raise WeightImportError(f"{source}: {MMDET_REFUSAL}")
    num_classes = _num_classes(state_dict, source)
    try:
        model = build_model(arch, num_classes=num_classes)
    except ValueError as exc:
        raise WeightImportError(f"{source}: --arch {arch}: {exc}") from None
    target = model.state_dict()

    ignored = sorted(k for k in state_dict if is_legacy_key(k))
    unknown = sorted(k for k in state_dict if k not in target and not is_legacy_key(k))
    if unknown:
        raise WeightImportError(f"{source}: {len(unknown)} keys unknown to {arch}: {_listing(unknown)}")
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
             for k, v in target.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if wrong:
        raise WeightImportError(f"{source}: shape mismatch for {arch}: {_listing(wrong)}")
    missing = [k for k in target if k not in state_dict and not k.endswith("num_batches_tracked")]

    filled = {k: (state_dict[k].to(dtype=v.dtype) if k in state_dict else v) for k, v in target.items()}
    model.load_state_dict(filled, strict=True)
    report = ImportReport(mapped=sum(1 for k in target if k in state_dict), ignored=ignored, missing=missing,
                          source_format="dbolya/yolact state_dict")
    return model.eval(), report
