"""Architecture registry: a plain dict of builder functions (no global config).

Each builder takes keyword arguments (``num_classes`` required, everything else with paper
defaults) and returns an ``nn.Module`` carrying ``arch_name``, ``num_classes``, ``input_size``
and ``arch_kwargs`` so that ``build_model(m.arch_name, num_classes=m.num_classes,
**m.arch_kwargs)`` rebuilds it.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["ARCHITECTURES", "register", "build_model", "list_architectures"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder to :data:`ARCHITECTURES` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = builder
        return builder

    return decorator


def list_architectures() -> list[str]:
    """Sorted names of the registered architectures."""
    return sorted(ARCHITECTURES)


def build_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered architecture (random init unless the kwargs say otherwise).

    Args:
        name: registered architecture name, e.g. ``"yolact_r50_550"``.
        num_classes: K, number of object classes (no background).
        **kwargs: builder overrides (``input_size``, ``fpn_channels``, ``num_prototypes``,
            ``backbone_weights``, ...).

    Raises:
        ValueError: unknown ``name`` (the message lists the known names) or ``num_classes < 1``.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_architectures())}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return ARCHITECTURES[name](num_classes=int(num_classes), **kwargs)
