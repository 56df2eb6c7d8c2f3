"""ONNX export of a segcore model, whichever family it is: the family's own exporter
(:attr:`segcore.modeling.registry.Family.onnx`) does the work; this module dispatches to it and
holds what every exporter shares.

Each family that supports ONNX gives ``OnnxSupport(export, runner)``: ``export(model, out_path, *,
categories, opset, **options) -> report`` (the report has ``.line()``, one summary line) and
``runner(path, **options)`` (an onnxruntime runner with ``.predict(image) -> Prediction``). The
exported files carry ``metadata_props`` ``segcore.arch`` (JSON string), which
:func:`open_onnx` reads to find the family again.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

__all__ = ["DEFAULT_OPSET", "OnnxExportError", "export_onnx", "open_onnx", "supports_onnx"]

#: Opset used by default (19: the lowest with ``DeformConv``, which YOLACT++'s DCNv2 becomes).
DEFAULT_OPSET = 19


class OnnxExportError(ValueError):
    """The model cannot be exported or the ONNX file cannot be read; one-line message."""


def supports_onnx(arch: str) -> bool:
    """Whether the family of the registered architecture ``arch`` can be exported.

    Raises:
        ValueError: unknown architecture.
    """
    from segcore.modeling.registry import family_of_arch

    return family_of_arch(arch).onnx is not None


def export_onnx(model: nn.Module, out_path: str | Path, *, categories: list[dict], opset: int = DEFAULT_OPSET,
                **options):
    """Export ``model``'s inference to ``out_path`` with its family's exporter.

    Args:
        model: a model built by ``segcore.modeling.build_model`` / ``load_checkpoint``.
        out_path: the ``.onnx`` file (written to a temporary name, checked, then renamed).
        categories: ``[{"id", "name"}]`` of length K (index = class index), stored in the file.
        opset: ONNX opset.
        **options: the family exporter's options (e.g. ``score_threshold``, ``max_detections``).

    Returns:
        The family exporter's report (``.line()``: one summary line).

    Raises:
        OnnxExportError: the family has no ONNX export, or the exporter failed.
    """
    from segcore.modeling.registry import family_of

    try:
        family = family_of(model)
    except ValueError as exc:
        raise OnnxExportError(str(exc)) from None
    if family.onnx is None:
        with_onnx = ", ".join(_families_with_onnx())
        raise OnnxExportError(f"{model.info.arch}: the {family.name} family has no ONNX export "
                              f"(supported: {with_onnx or 'none'})")
    return family.onnx.export(model, out_path, categories=categories, opset=opset, **options)


def open_onnx(path: str | Path, **options):
    """An onnxruntime runner for a file written by :func:`export_onnx` (the family is read from
    the file's ``segcore.arch`` metadata).

    Raises:
        OnnxExportError: missing / unreadable file, no segcore metadata, or an unknown architecture.
    """
    import onnx

    from segcore.modeling.registry import family_of_arch

    path = Path(path)
    if not path.is_file():
        raise OnnxExportError(f"{path}: ONNX file not found")
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        arch = json.loads(meta["segcore.arch"])
        family = family_of_arch(arch)
    except Exception as exc:  # noqa: BLE001 - protobuf / onnx / JSON errors alike: not our file
        raise OnnxExportError(f"{path}: not an ONNX file exported by segcore ({type(exc).__name__}: {exc})") from None
    if family.onnx is None:
        raise OnnxExportError(f"{path}: the {family.name} family has no ONNX runner")
    return family.onnx.runner(path, **options)


def _families_with_onnx() -> list[str]:
    from segcore.modeling.registry import FAMILIES

    return [name for name, fam in FAMILIES.items() if fam.onnx is not None]
