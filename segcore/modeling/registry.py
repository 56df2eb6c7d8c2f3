"""Architecture registry: a plain dict of builder functions (no global config).

Each builder takes keyword arguments (``num_classes`` required, everything else with paper
defaults) and returns an ``nn.Module`` carrying ``arch_name``, ``num_classes``, ``input_size``
and ``arch_kwargs`` so that ``build_model(m.arch_name, num_classes=m.num_classes,
**m.arch_kwargs)`` rebuilds it.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["ARCHITECTURES", "register", "build_model", "list_architectures", "Family", "FAMILIES",
           "register_family", "family_of"]

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


# --------------------------------------------------------------------------------------------
# Architecture families: what the engine, dataset and predictor need to know about a model.


class Family:
    """How segcore trains and runs one model family.

    Attributes:
        name: family name (``model.family``, e.g. ``"yolact"``, ``"blendmask"``).
        make_loss: ``make_loss(model) -> loss_fn(outputs, targets) -> dict`` of ``loss_*``.
        make_postprocess: ``make_postprocess(model) -> fn(outputs, image_sizes, *,
            score_threshold, input_sizes) -> list[Instances]``.
        input_policy: ``"square"`` (resize to S x S, YOLACT) or ``"short_side"`` (short side S,
            long side <= ``model.max_size``, padded to a multiple of ``size_divisibility`` with
            the pixel mean; detectron2).
        size_divisibility: padding multiple for ``"short_side"`` (32).
    """

    def __init__(self, name: str, *, make_loss: Callable, make_postprocess: Callable, input_policy: str,
                 size_divisibility: int = 0):
        if input_policy not in ("square", "short_side"):
            raise ValueError(f"input_policy must be 'square' or 'short_side', got {input_policy!r}")
        self.name = name
        self.make_loss = make_loss
        self.make_postprocess = make_postprocess
        self.input_policy = input_policy
        self.size_divisibility = int(size_divisibility)


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (refuses duplicates)."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def family_of(model: nn.Module) -> Family:
    """The :class:`Family` of a built model: ``model.family`` or, for models without that
    attribute, the ``arch_name`` prefix before the first ``_``.

    Raises:
        ValueError: no registered family (the message names the architecture).
    """
    name = getattr(model, "family", None) or str(getattr(model, "arch_name", "")).split("_")[0]
    if name not in FAMILIES:
        raise ValueError(f"no family known for architecture {getattr(model, 'arch_name', '?')!r}")
    return FAMILIES[name]


def _yolact_loss(model):
    from segcore.modeling.yolact import yolact_loss

    return yolact_loss


def _yolact_post(model):
    from segcore.modeling.yolact import yolact_postprocess

    def post(outputs, image_sizes, *, score_threshold=0.05, input_sizes=None):
        return yolact_postprocess(outputs, image_sizes, score_threshold=score_threshold)

    return post


def _blendmask_loss(model):
    import functools

    from segcore.modeling.blendmask import blendmask_loss

    return functools.partial(blendmask_loss, sizes_of_interest=tuple(model.sizes_of_interest),
                             center_sample_radius=float(model.center_sample_radius),
                             bottom_resolution=int(model.bottom_resolution))


def _blendmask_post(model):
    import functools

    from segcore.modeling.blendmask import blendmask_postprocess

    return functools.partial(blendmask_postprocess, thresh_with_ctr=bool(model.thresh_with_ctr),
                             bottom_resolution=int(model.bottom_resolution))


register_family(Family("yolact", make_loss=_yolact_loss, make_postprocess=_yolact_post, input_policy="square"))
register_family(Family("blendmask", make_loss=_blendmask_loss, make_postprocess=_blendmask_post,
                       input_policy="short_side", size_divisibility=32))
