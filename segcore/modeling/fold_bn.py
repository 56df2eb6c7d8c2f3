"""Fold inference-mode BatchNorm into the convolution before it (inference only).

A BatchNorm2d in eval mode is the affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``
per channel; after a convolution it can be merged into that convolution's weight and bias, which
removes one pass over every feature map (about 8 % of a ResNet-50 forward on the CPU, measured
with ``torch.profiler``). The arithmetic is torch's own ``torch.nn.utils.fusion.fuse_conv_bn_weights``;
the pairs are found with ``torch.fx`` as ``torch.fx.experimental.optimization.fuse`` finds them
(a convolution whose only user is a ``BatchNorm2d``), but the module tree is kept (the
convolution's weight and bias are replaced, the BatchNorm by ``nn.Identity``) instead of becoming a
``GraphModule``, so every attribute the families read stays where it was. Modules that
``torch.fx`` cannot trace (data-dependent control flow, e.g. a whole detector) are searched
child by child; a :class:`segcore.modeling.d2_resnet.NormConv2d` with a BatchNorm ``norm`` is
folded directly.

Outputs change only by float rounding (fp32: ~1e-6 relative, ``tests/segcore/test_fold_bn.py``).
Used by :class:`segcore.predictor.Predictor` on its own copy of the model; training never folds.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..ops.dcn import ModulatedDeformConv2d
from .d2_resnet import NormConv2d

__all__ = ["fold_batchnorm"]

#: Modules whose output is ``conv(x, weight) + bias`` per output channel: a BatchNorm after them folds.
_CONVS = (nn.Conv2d, ModulatedDeformConv2d)


class _Tracer(fx.Tracer):
    """torch.fx's tracer with every convolution type kept as one ``call_module`` node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _CONVS) or super().is_leaf_module(m, qualname)


def _foldable(bn) -> bool:
    return type(bn) is nn.BatchNorm2d and bn.track_running_stats and bn.running_mean is not None


def _fold_into(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """``conv``'s weight and bias become those of ``bn(conv(x))`` (``fuse_conv_bn_weights``)."""
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                bn.weight, bn.bias)
    conv.weight, conv.bias = w, b


def _fold_traced(module: nn.Module) -> int | None:
    """Fold the convolution -> BatchNorm2d pairs of a traceable module; None when it cannot be traced."""
    try:
        graph = _Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means: search the children instead
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        # a convolution or BatchNorm called more than once (shared across FPN levels) stays as it is
        if prev.op != "call_module" or len(prev.users) != 1 or calls[prev.target] != 1 or calls[node.target] != 1:
            continue
        conv, bn = module.get_submodule(prev.target), module.get_submodule(node.target)
        if isinstance(conv, _CONVS) and getattr(conv, "norm", None) is None and _foldable(bn):
            _fold_into(conv, bn)
            parent, _, name = node.target.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, name, nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every foldable BatchNorm2d of ``model`` (eval mode) into its convolution, in place.

    Folded: a ``Conv2d`` / ``ModulatedDeformConv2d`` whose only user is a ``BatchNorm2d`` with
    running statistics, and the ``norm`` of a ``NormConv2d``. Left: BatchNorms after a shared
    convolution with one BatchNorm per FPN level (BlendMask-RT's FCOS tower), and anything else.

    Args:
        model: a module in eval mode.

    Returns:
        The number of BatchNorm layers folded.

    Raises:
        ValueError: ``model.training`` is True (training needs the batch statistics).
    """
    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode")
    with torch.no_grad():
        folded = 0
        for m in model.modules():  # detectron2-style convolutions carry their norm
            if isinstance(m, NormConv2d) and _foldable(m.norm):
                _fold_into(m, m.norm)
                m.norm = None
                folded += 1
        return folded + _fold(model)


def _fold(module: nn.Module) -> int:
    if isinstance(module, _CONVS) or not any(True for _ in module.children()):
        return 0
    folded = _fold_traced(module)
    if folded is None:
        folded = sum(_fold(child) for child in module.children())
    return folded
