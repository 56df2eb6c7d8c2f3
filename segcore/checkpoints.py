"""segcore checkpoint files: save, validate, load.

A checkpoint is a ``torch.save``d plain dict, always read back with
``torch.load(weights_only=True)`` (no pickled code is ever executed)::

    {"format": "segcore-checkpoint-v1", "arch": str, "arch_kwargs": dict, "num_classes": int,
     "input_size": int, "categories": [{"id": int (COCO id), "name": str}, ...],
     "model": state_dict, "iteration": int, "optimizer": state_dict | None, "meta": dict}

``categories[i]`` is the COCO category of contiguous class index ``i``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from segcore.device import resolve_device

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "read_checkpoint", "load_checkpoint"]

FORMAT = "segcore-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent; the one-line message names the
    file and the offending key."""


def _plain_categories(categories) -> list[dict]:
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]


def save_checkpoint(path: str | Path, model: nn.Module, *, categories: list[dict], iteration: int = 0,
                    optimizer: torch.optim.Optimizer | None = None, meta: dict | None = None) -> None:
    """Write ``model`` (and optionally the optimizer state) as a segcore checkpoint.

    The file is written to ``path + ".tmp"`` and then renamed, so a crash never leaves a
    half-written checkpoint under ``path``. Tensors are stored on the CPU.

    Args:
        path: output file (``.pth``); parent folders are created.
        model: a model built by ``segcore.modeling.registry.build_model`` (its ``model.info``,
            :class:`segcore.modeling.registry.ModelInfo`, says what to rebuild).
        categories: ``[{"id", "name"}, ...]`` of length ``model.info.num_classes``.
        iteration: completed training iterations.
        optimizer: its ``state_dict()`` is stored for resuming, or None.
        meta: extra plain-Python information (numbers, strings, lists, dicts).

    Raises:
        CheckpointError: the model has no ``ModelInfo`` or ``categories`` has the wrong length.
    """
    from segcore.modeling.registry import ModelInfo

    path = Path(path)
    info = getattr(model, "info", None)
    if not isinstance(info, ModelInfo):
        raise CheckpointError(f"{path}: model has no ModelInfo 'info' (build it with build_model)")
    cats = _plain_categories(categories)
    if len(cats) != info.num_classes:
        raise CheckpointError(f"{path}: key 'categories' has {len(cats)} entries but the model has "
                              f"num_classes={info.num_classes}")
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "arch": info.arch,
        "arch_kwargs": dict(info.arch_kwargs),
        "num_classes": int(info.num_classes),
        "input_size": int(info.input_size),
        "categories": cats,
        "model": state,
        "iteration": int(iteration),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "meta": dict(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint dict without building the model.

    Checks: the file loads with ``weights_only=True``; ``format`` is ``segcore-checkpoint-v1``;
    ``arch`` is registered; ``num_classes`` / ``input_size`` / ``iteration`` are ints;
    ``arch_kwargs`` / ``meta`` are dicts; ``categories`` is a list of ``{"id", "name"}`` of
    length ``num_classes``; ``model`` is a dict of tensors.

    Returns:
        The full checkpoint dict (``model`` included).

    Raises:
        CheckpointError: any check fails (message names the file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors, truncated files, unsafe globals
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {msg}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a segcore checkpoint (top level is {type(ckpt).__name__}, not dict)")
    if "format" not in ckpt:
        hint = (" (looks like a bare state_dict, e.g. an official checkpoint: 'annotator import-weights' "
                "converts it)") if all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else ""
        raise CheckpointError(f"{path}: key 'format' missing: not a segcore checkpoint{hint}")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"{path}: key 'format' is {ckpt['format']!r}, expected {FORMAT!r}")
    from segcore.modeling.registry import ARCHITECTURES, list_architectures  # registers every family

    for key, typ in (("arch", str), ("arch_kwargs", dict), ("num_classes", int), ("input_size", int),
                     ("categories", list), ("model", dict), ("iteration", int), ("meta", dict)):
        if key not in ckpt:
            raise CheckpointError(f"{path}: key '{key}' missing")
        if not isinstance(ckpt[key], typ) or isinstance(ckpt[key], bool):
            raise CheckpointError(f"{path}: key '{key}' must be {typ.__name__}, got {type(ckpt[key]).__name__}")
    if ckpt["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{path}: key 'arch' is {ckpt['arch']!r}, not a known architecture "
                              f"({', '.join(list_architectures())})")
    cats = ckpt["categories"]
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise CheckpointError(f"{path}: key 'categories[{i}]' must be {{'id': int, 'name': str}}")
    if len(cats) != ckpt["num_classes"]:
        raise CheckpointError(f"{path}: key 'categories' has {len(cats)} entries but 'num_classes' is "
                              f"{ckpt['num_classes']}")
    if ckpt.get("optimizer") is not None and not isinstance(ckpt["optimizer"], dict):
        raise CheckpointError(f"{path}: key 'optimizer' must be a dict or None")
    return ckpt


class _SkipInit(TorchFunctionMode):
    """Within this thread, ``torch.nn.init`` functions and ``Tensor.uniform_`` / ``normal_``
    return their tensor untouched: a model built to receive a checkpoint's weights (a strict
    load replaces every parameter and persistent buffer) skips drawing random ones first
    (0.1-0.2 s for a ResNet-50 YOLACT on a 2-core CPU). Other ops run as usual."""

    _SKIPPED = (torch.Tensor.uniform_, torch.Tensor.normal_)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._SKIPPED or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def build_from_checkpoint(ckpt: dict, path: str | Path = "<checkpoint>") -> nn.Module:
    """Build the model described by a validated checkpoint dict and load its weights (strict).

    Raises:
        CheckpointError: the builder rejects ``arch_kwargs`` or the state_dict does not match.
    """
    from segcore.modeling.registry import build_model

    try:
        with _SkipInit():  # every parameter comes from the checkpoint (strict load below)
            model = build_model(ckpt["arch"], num_classes=ckpt["num_classes"], **ckpt["arch_kwargs"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: key 'arch_kwargs' cannot build {ckpt['arch']!r}: {exc}") from exc
    if model.info.input_size != ckpt["input_size"]:
        raise CheckpointError(f"{path}: key 'input_size' is {ckpt['input_size']} but 'arch_kwargs' build a "
                              f"model with input_size {model.info.input_size}")
    result = model.load_state_dict(ckpt["model"], strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} (first {result.missing_keys[0]!r})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} (first {result.unexpected_keys[0]!r})")
    if problems:
        raise CheckpointError(f"{path}: key 'model' does not match {ckpt['arch']!r}: {'; '.join(problems)}")
    return model


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a segcore checkpoint.

    Args:
        path: checkpoint file written by :func:`save_checkpoint`.
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a ``torch.device``.

    Returns:
        ``(model, info)``: the model on ``device`` in eval mode, and the checkpoint dict without
        ``"model"`` (``format``, ``arch``, ``arch_kwargs``, ``num_classes``, ``input_size``,
        ``categories``, ``iteration``, ``optimizer``, ``meta``).

    Raises:
        CheckpointError: see :func:`read_checkpoint` and :func:`build_from_checkpoint`; a size
            mismatch in a weight also raises it (message names the key).
    """
    ckpt = read_checkpoint(path)
    try:
        model = build_from_checkpoint(ckpt, path)
    except RuntimeError as exc:  # shape mismatch in load_state_dict
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln), first[0] if first else "")
        raise CheckpointError(f"{path}: key 'model' does not fit {ckpt['arch']!r}: {detail}") from exc
    model.to(resolve_device(device)).eval()
    info = {k: v for k, v in ckpt.items() if k != "model"}
    return model, info
