"""fp32 islands inside a low-precision autocast region.

The predictor runs a whole model's ``forward`` under ``torch.autocast`` (bf16 on a CPU with native
bf16, fp16 on CUDA; :mod:`segcore.predictor`), and training on such a CPU does the same
(:func:`segcore.engine.train`). Reduced precision is safe for the backbone and FPN, where the
time goes, but not for the small layers whose outputs are read as numbers: box / class /
centerness regressions, mask coefficients, prototypes and the ``proto @ coef`` mask assembly,
attention maps and blending, the RoI mask and MaskIoU heads. bf16 keeps 8 mantissa bits
(relative rounding 2^-9 = 0.2 %); a 3 x 3 conv head sums hundreds of such products into a
logit, and a mask pixel near the 0.5 threshold flips for a small logit error. (YOLACT's class
conv at inference is the one exception, measured safe: its logits only feed a softmax; see
:mod:`segcore.modeling.yolact.model`.) The measured
effect on trained models is in ``tests/segcore/test_bf16_trained.py`` and the README section on
the CPU path.

:func:`fp32_call` is the one helper every family uses for that: it runs a function or module
with autocast switched off, its floating-point tensor arguments cast to float32. Outside an
autocast region (the fp32 path, and every export) it is a plain call, so fp32 results are
unchanged bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["fp32_call", "autocast_active"]

T = TypeVar("T")

_DEVICE_TYPES = ("cpu", "cuda")


def autocast_active() -> tuple[str, ...]:
    """The device types (``"cpu"``, ``"cuda"``) whose autocast is on in this thread now."""
    return tuple(d for d in _DEVICE_TYPES if torch.is_autocast_enabled(d))


def _to_fp32(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_fp32(v) for k, v in x.items()}
    return x


def fp32_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in float32 even inside ``torch.autocast``.

    Args:
        fn: a function or ``nn.Module`` (its parameters are float32: autocast only casts at op
            level, the weights stay float32).
        args, kwargs: passed on; floating-point tensors (also inside lists, tuples and dicts)
            that are not float32 (bf16 / fp16 activations of the autocast region before) are
            cast to float32, keeping their memory format (channels_last stays channels_last).

    Returns:
        ``fn``'s result, computed with autocast off for every device type where it was on, so its
        tensors are float32 (bf16 / fp16 only if ``fn`` casts itself). Autograd flows through
        the casts, so training uses the same numerics as inference.

    Without an active autocast this is exactly ``fn(*args, **kwargs)`` (no casts, no context).
    """
    active = autocast_active()
    if not active:
        return fn(*args, **kwargs)
    with contextlib.ExitStack() as stack:
        for device_type in active:
            stack.enter_context(torch.autocast(device_type, enabled=False))
        return fn(*_to_fp32(args), **_to_fp32(kwargs))
