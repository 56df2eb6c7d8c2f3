"""Shared pieces of the detectron2-format importers (AdelaiDet BlendMask, centermask2 CenterMask).

Both official codebases save plain detectron2 state_dicts whose module names segcore reproduces,
so a checkpoint loads by name: old ``fcos_head.centerness`` keys are renamed to ``ctrness``
(AdelaiDet commit 281ee24), ``pixel_mean`` / ``pixel_std`` and surplus ``num_batches_tracked``
are ignored, anything else unknown or mis-shaped is refused with the list.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import ImportReport, WeightImportError

LIST_MAX = 20
IGNORED = ("pixel_mean", "pixel_std")
CLS_KEY = "proposal_generator.fcos_head.cls_logits.weight"


def rename_key(key: str) -> str:
    """detectron2 FCOS key -> segcore key (``centerness`` -> ``ctrness``; else unchanged)."""
    return key.replace("proposal_generator.fcos_head.centerness.", "proposal_generator.fcos_head.ctrness.")


def listing(keys: list[str]) -> str:
    """At most ``LIST_MAX`` keys, comma-separated, with the count of the rest."""
    more = f", ... and {len(keys) - LIST_MAX} more" if len(keys) > LIST_MAX else ""
    return ", ".join(keys[:LIST_MAX]) + more


def num_classes_of(sd: dict, source: Path | str, family: str) -> int:
    """Class count K from ``cls_logits.weight`` ``[K, C, 3, 3]``; refuses a file without it."""
    if CLS_KEY not in sd:
        raise WeightImportError(f"{source}: key {CLS_KEY!r} not found: not a {family} / FCOS checkpoint")
    return int(sd[CLS_KEY].shape[0])


def load_by_name(sd: dict, model: nn.Module, *, arch: str, source: Path | str,
                 source_format: str) -> tuple[nn.Module, ImportReport]:
    """Copy every tensor of ``sd`` (keys already renamed) into ``model`` by name.

    Raises:
        WeightImportError: keys the model does not have (listed) or shape mismatches (key and
            both shapes).
    """
    own = model.state_dict()
    ignored = [k for k in sd if k in IGNORED or (k.endswith("num_batches_tracked") and k not in own)]
    unknown = [k for k in sd if k not in own and k not in ignored]
    if unknown:
        raise WeightImportError(f"{source}: keys not in {arch}: {listing(unknown)}")
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightImportError(f"{source}: shape mismatch for {arch}: {listing(bad)}")
    load = {k: v.to(own[k].dtype) for k, v in sd.items() if k in own}
    missing = [k for k in own if k not in load and not k.endswith("num_batches_tracked")]
    model.load_state_dict(load, strict=False)
    return model.eval(), ImportReport(mapped=len(load), ignored=ignored, missing=missing,
                                      source_format=source_format)
