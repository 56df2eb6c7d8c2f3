"""Importers of official (third-party) checkpoints into segcore models.

Each model family's :class:`segcore.modeling.registry.Family` carries its importer,
``import_weights(state_dict, arch, *, source) -> (nn.Module, ImportReport)`` (it lives in the
family's package, ``segcore/modeling/<family>/importer.py``). The importer builds the
architecture itself (it knows how to read the number of classes off the class-dependent
tensors), recognises the checkpoint layouts it can and cannot map, and returns the filled model
in eval mode. This module holds what every importer shares.

:func:`import_official_weights` reads the file safely (``torch.load(weights_only=True)``; a
``.pkl`` is read as numpy arrays without executing code), unwraps ``{"model": sd}`` /
``{"state_dict": sd}`` containers, builds the architecture and hands both to the importer,
which maps every key, ignores only documented legacy keys and refuses anything else with a
:class:`WeightImportError` listing the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


class WeightImportError(ValueError):
    """The file is not a checkpoint this importer understands; the message names file and keys."""


@dataclass
class ImportReport:
    """What an import did. ``missing`` must be empty for a successful import."""

    mapped: int = 0
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    source_format: str = ""

    def summary(self) -> str:
        return (f"{self.source_format}: mapped {self.mapped}, ignored {len(self.ignored)}, "
                f"missing {len(self.missing)}")


def read_state_dict(path: Path) -> dict:
    """Read a ``.pth`` / ``.pkl`` checkpoint without executing code and return its state_dict.

    ``.pth``: ``torch.load(weights_only=True)``; a ``{"model": ...}`` or ``{"state_dict": ...}``
    wrapper is unwrapped. Raises :class:`WeightImportError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"{path}: file not found")
    if path.suffix == ".pkl":
        from segcore.importers._pickle import load_numpy_pickle

        obj = load_numpy_pickle(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - anything unsafe or corrupt is refused
            raise WeightImportError(f"{path}: not a loadable weights-only checkpoint "
                                    f"({exc.__class__.__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise WeightImportError(f"{path}: no state_dict found")
    return {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in obj.items()}


def import_official_weights(path: Path, arch: str) -> tuple[torch.nn.Module, ImportReport, list[dict]]:
    """Read an official checkpoint and return ``(model, report, categories)``.

    Args:
        path: a ``.pth`` (plain state_dict, or ``{"model": ...}`` / ``{"state_dict": ...}``) or
            a detectron2 ``.pkl``. A file holding only ImageNet backbone weights (detectron2's
            MSRA ``R-50.pkl`` / ``R-101.pkl`` with Caffe2 names, or detectron2-named ResNet /
            VoVNet backbones) fills the backbone of a BlendMask / CenterMask ``arch`` and leaves
            FPN and heads at random init (80 COCO classes); the report says so
            (:mod:`segcore.importers.backbone`).
        arch: a registry name, e.g. ``yolact_r50_550``.

    Returns:
        The filled model (eval mode), the import report (``missing`` is empty), and the
        categories in class-index order: the 80 COCO categories when the model has 80 classes,
        else ``{"id": i + 1, "name": f"class_{i + 1}"}`` placeholders.

    Raises:
        WeightImportError: unreadable file, unknown or missing keys, shape mismatch.
    """
    from segcore.data.coco_categories import COCO_CATEGORIES

    from segcore.modeling.registry import family_of_arch

    try:
        importer = family_of_arch(arch).import_weights
    except ValueError as exc:
        raise WeightImportError(f"--arch {arch}: {exc}") from None
    if importer is None:
        raise WeightImportError(f"--arch {arch}: no importer of official weights for this architecture")
    state_dict = read_state_dict(path)
    from segcore.importers.backbone import is_backbone_file, load_backbone_weights

    if is_backbone_file(state_dict):
        # an ImageNet backbone (e.g. detectron2's MSRA R-50.pkl): backbone loaded, FPN and heads
        # random init with the 80 COCO classes; useful as training start weights (--init)
        from segcore.modeling.registry import build_model

        model = build_model(arch, num_classes=len(COCO_CATEGORIES))
        report = load_backbone_weights(model, state_dict, source=path)
    else:
        model, report = importer(state_dict, arch, source=Path(path))
    if report.missing:
        more = f" (+{len(report.missing) - 10} more)" if len(report.missing) > 10 else ""
        raise WeightImportError(f"{path}: {len(report.missing)} keys missing for --arch {arch} (another "
                                f"architecture?): {', '.join(report.missing[:10])}{more}")
    k = int(model.info.num_classes)
    categories = ([{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES] if k == len(COCO_CATEGORIES)
                  else [{"id": i + 1, "name": f"class_{i + 1}"} for i in range(k)])
    return model.eval(), report, categories
