"""ImageNet backbone weights for the detectron2-style models (BlendMask, CenterMask-R / -VoVNet).

The official BlendMask and CenterMask-R configs start training from detectron2's MSRA ResNets
(``detectron2://ImageNetPretrained/MSRA/R-50.pkl``, ``R-101.pkl``: Caffe2 blob names, BN
folded into scale / bias, stride on the 1x1 conv, ``RESNETS.STRIDE_IN_1X1 True``), the
CenterMask-VoVNet configs from ``vovnet*_ese_detectron2.pth`` (detectron2 names). This module
loads such a file into a model's ``backbone.bottom_up``; the FPN and heads keep their init.

Caffe2 -> detectron2 names (detectron2 ``checkpoint/c2_model_loading.py``,
``convert_basic_c2_names``): ``conv1_w`` -> ``stem.conv1.weight``, ``res_conv1_bn_{s,b}`` ->
``stem.conv1.norm.{weight,bias}``, ``res{2..5}_{i}_branch2{a,b,c}_w`` ->
``res{2..5}.{i}.conv{1,2,3}.weight``, ``..._branch1_w`` -> ``...shortcut.weight``, ``_bn_s`` /
``_bn_b`` / ``_bn_rm`` / ``_bn_riv`` -> ``.norm.weight`` / ``.bias`` / ``.running_mean`` /
``.running_var``. The classifier (``fc1000_*``, ``pred_*``), the stem's ``conv1_b`` (a
near-zero bias blob the stem conv does not have; Detectron lists it as an orphan too) and
``*_momentum`` blobs are ignored. A FrozenBN without running statistics in the file keeps mean 0 / variance 1, as
detectron2's ``FrozenBatchNorm2d._load_from_state_dict`` sets them for Caffe2 files.

Files with detectron2 names may carry a ``backbone.bottom_up.`` or ``backbone.`` prefix.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from . import ImportReport, WeightImportError, read_state_dict

__all__ = ["c2_resnet_to_d2", "is_backbone_file", "load_backbone_weights", "load_backbone_file", "msra_resnet_file"]

_C2_IGNORED = re.compile(r"^(fc1000_|pred_|conv1_b$)|_momentum$")
_C2_BLOCK = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_(.+)$")
_C2_SUFFIX = {"w": "weight", "b": "bias", "bn_s": "norm.weight", "bn_b": "norm.bias",
              "bn_rm": "norm.running_mean", "bn_riv": "norm.running_var"}
_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_PREFIXES = ("backbone.bottom_up.", "backbone.")


def _arch(model: nn.Module) -> str:
    info = getattr(model, "info", None)  # messages only: a bare module has no ModelInfo
    return info.arch if info is not None else type(model).__name__


def _is_c2(sd: dict) -> bool:
    return "conv1_w" in sd and any(k.startswith("res2_0_branch2a") for k in sd)


def c2_resnet_to_d2(sd: dict, *, source: Path | str = "<state_dict>") -> tuple[dict, list[str]]:
    """Rename a Caffe2 (MSRA) ResNet's blobs to detectron2 ``ResNet`` names.

    Args:
        sd: ``{blob name: tensor}`` as in ``R-50.pkl``.
        source: file name for messages.

    Returns:
        ``(renamed state_dict, ignored blob names)``.

    Raises:
        WeightImportError: a blob name that is neither a ResNet blob nor a documented ignored one.
    """
    out, ignored, unknown = {}, [], []
    for key, value in sd.items():
        if _C2_IGNORED.search(key):
            ignored.append(key)
            continue
        if key == "conv1_w":
            out["stem.conv1.weight"] = value
            continue
        if key.startswith("res_conv1_"):
            suffix = _C2_SUFFIX.get(key[len("res_conv1_"):])
            if suffix is None or not suffix.startswith("norm."):
                unknown.append(key)
                continue
            out[f"stem.conv1.{suffix}"] = value
            continue
        m = _C2_BLOCK.match(key)
        if m is None or m.group(4) not in _C2_SUFFIX:
            unknown.append(key)
            continue
        stage, block, branch, suffix = m.groups()
        out[f"res{stage}.{block}.{_BRANCH[branch]}.{_C2_SUFFIX[suffix]}"] = value
    if unknown:
        raise WeightImportError(f"{source}: Caffe2 blobs that are not ResNet weights: {', '.join(unknown[:20])}")
    return out, ignored


def _strip(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        for p in _PREFIXES:
            if key.startswith(p):
                key = key[len(p):]
                break
        out[key] = value
    return out


def is_backbone_file(sd: dict) -> bool:
    """Whether ``sd`` holds only backbone weights: Caffe2 ResNet blobs, or detectron2 names of a
    ResNet (``stem.*``, ``res2..res5.*``) / VoVNet (``stem.*``, ``stage2..stage5.*``) without
    FPN or head tensors."""
    if _is_c2(sd):
        return True
    keys = list(_strip(sd))
    body = re.compile(r"^(stem\.|res[2-5]\.|stage[2-5]\.)")
    return bool(keys) and all(body.match(k) or k.endswith("num_batches_tracked") for k in keys) \
        and any(k.startswith("stem.") for k in keys)


def load_backbone_weights(model: nn.Module, weights: Path | str | dict, *,
                          source: Path | str | None = None) -> ImportReport:
    """Copy ImageNet backbone weights into ``model.backbone.bottom_up`` by name.

    Args:
        model: a BlendMask / CenterMask model (has ``backbone.bottom_up``: ``D2ResNet`` or
            ``VoVNet``).
        weights: a file (``.pkl`` read as numpy arrays without executing code; ``.pth`` with
            ``torch.load(weights_only=True)``) or a state_dict already read.
        source: file name for messages (default: ``weights`` when it is a path).

    Returns:
        :class:`ImportReport`: ``mapped`` tensors, ``ignored`` (classifier / momentum blobs,
        surplus ``num_batches_tracked``), ``missing`` bottom-up tensors the file lacked other
        than FrozenBN running statistics of Caffe2 files (must be empty for a usable file).

    Raises:
        WeightImportError: the model has no ``backbone.bottom_up``, the file holds keys the
            backbone does not have (listed), or a shape differs (key and both shapes).
    """
    bottom_up = getattr(getattr(model, "backbone", None), "bottom_up", None)
    if bottom_up is None:
        raise WeightImportError(f"{_arch(model)}: no backbone.bottom_up "
                                "to load ImageNet weights into (detectron2-style models only)")
    if isinstance(weights, dict):
        sd, src = dict(weights), source or "<state_dict>"
    else:
        src = source or weights
        sd = read_state_dict(Path(weights))
    ignored: list[str] = []
    c2 = _is_c2(sd)
    if c2:
        sd, ignored = c2_resnet_to_d2(sd, source=src)
        fmt = "MSRA Caffe2 ImageNet ResNet (backbone only; FPN and heads keep their init)"
    else:
        sd = _strip(sd)
        fmt = "detectron2 ImageNet backbone (backbone only; FPN and heads keep their init)"
    own = bottom_up.state_dict()
    ignored += [k for k in sd if k.endswith("num_batches_tracked") and k not in own]
    unknown = [k for k in sd if k not in own and k not in ignored]
    if unknown:
        more = f", ... and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise WeightImportError(f"{src}: keys not in the {type(bottom_up).__name__} backbone of "
                                f"{_arch(model)}: {', '.join(unknown[:20])}{more}")
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightImportError(f"{src}: shape mismatch for the backbone: {', '.join(bad[:20])}")
    load = {k: torch.as_tensor(v).to(own[k].dtype) for k, v in sd.items() if k in own}
    optional = re.compile(r"num_batches_tracked$" + (r"|norm\.running_(mean|var)$" if c2 else ""))
    missing = [k for k in own if k not in load and not optional.search(k)]
    bottom_up.load_state_dict(load, strict=False)
    return ImportReport(mapped=len(load), ignored=ignored, missing=missing, source_format=fmt)


def msra_resnet_file(depth: int) -> Path | None:
    """detectron2's MSRA ImageNet ResNet (``R-50.pkl`` / ``R-101.pkl``) on disk, or None; never
    downloads. Looked for in ``$XDG_CACHE_HOME/annotator/weights`` (default ``~/.cache``) and
    detectron2's own cache ``~/.torch/iopath_cache/detectron2/ImageNetPretrained/MSRA``."""
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    dirs = [cache / "annotator" / "weights",
            Path.home() / ".torch" / "iopath_cache" / "detectron2" / "ImageNetPretrained" / "MSRA"]
    name = f"R-{int(depth)}.pkl"
    return next((d / name for d in dirs if (d / name).is_file()), None)


def load_backbone_file(model: nn.Module, path: Path | str) -> list[str]:
    """:func:`load_backbone_weights` from a file, with the result as notes for the user.

    Raises:
        WeightImportError: the file does not fit (see :func:`load_backbone_weights`) or lacks
            backbone tensors (listed).
    """
    report = load_backbone_weights(model, path)
    if report.missing:
        raise WeightImportError(f"{path}: {len(report.missing)} backbone tensors missing for "
                                f"{_arch(model)}: {', '.join(report.missing[:10])}")
    return [f"{report.summary()} from {path}"]
