"""Importers of official (third-party) checkpoints into segcore models.

Each model family registers one importer function for the architecture names it serves::

    @register_importer("yolact_")            # every arch whose name starts with "yolact_"
    def import_yolact(state_dict, arch, *, source) -> tuple[nn.Module, ImportReport]: ...

The importer builds the architecture itself (it knows how to read the number of classes off
the class-dependent tensors) and returns the filled model in eval mode.

:func:`import_official_weights` reads the file safely (``torch.load(weights_only=True)``; a
``.pkl`` is read as numpy arrays without executing code), unwraps ``{"model": sd}`` /
``{"state_dict": sd}`` containers, builds the architecture and hands both to the importer,
which maps every key, ignores only documented legacy keys and refuses anything else with a
:class:`WeightImportError` listing the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


Importer = Callable[..., ImportReport]
IMPORTERS: dict[str, Importer] = {}


def register_importer(prefix: str) -> Callable[[Importer], Importer]:
    """Register ``fn`` for every architecture whose name starts with ``prefix``."""

    def deco(fn: Importer) -> Importer:
        if prefix in IMPORTERS:
            raise ValueError(f"importer for {prefix!r} already registered")
        IMPORTERS[prefix] = fn
        return fn

    return deco


def importer_for(arch: str) -> Importer:
    """The importer whose prefix matches ``arch`` (longest prefix wins)."""
    _load_builtin_importers()
    matches = [p for p in IMPORTERS if arch.startswith(p)]
    if not matches:
        raise WeightImportError(f"--arch {arch}: no importer of official weights for this architecture")
    return IMPORTERS[max(matches, key=len)]


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
            raise WeightImportError(f"{path}: not a loadable weights-only checkpoint ({exc.__class__.__name__})") from None
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

    importer = importer_for(arch)
    state_dict = read_state_dict(path)
    from segcore.importers.backbone import is_backbone_file, load_backbone_weights

    if is_backbone_file(state_dict):
        # an ImageNet backbone (e.g. detectron2's MSRA R-50.pkl): backbone loaded, FPN and heads
        # random init with the 80 COCO classes; useful as training start weights (--init)
        from segcore.modeling.registry import build_model

        import segcore.modeling  # noqa: F401  (registers the architectures)

        model = build_model(arch, num_classes=len(COCO_CATEGORIES))
        report = load_backbone_weights(model, state_dict, source=path)
    else:
        model, report = importer(state_dict, arch, source=Path(path))
    if report.missing:
        more = f" (+{len(report.missing) - 10} more)" if len(report.missing) > 10 else ""
        raise WeightImportError(f"{path}: {len(report.missing)} keys missing for --arch {arch} (another "
                                f"architecture?): {', '.join(report.missing[:10])}{more}")
    k = int(model.num_classes)
    categories = ([{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES] if k == len(COCO_CATEGORIES)
                  else [{"id": i + 1, "name": f"class_{i + 1}"} for i in range(k)])
    return model.eval(), report, categories


def _load_builtin_importers() -> None:
    # Importing the family modules registers their importers.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
