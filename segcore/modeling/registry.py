"""Architecture registry and the model contract: a dict of builders, one :class:`Family` per model
family, and the :class:`ModelInfo` every built model carries.

This module imports nothing from the family packages. Each family package
(``segcore/modeling/<family>/``) registers its builders with :func:`register` and its one
:class:`Family` with :func:`register_family` when it is imported; the list of family packages is
``segcore.modeling.FAMILY_PACKAGES`` (``segcore/modeling/__init__.py``), the only place outside
a family's package that names it. Adding a family = adding its package and one entry there.

The model contract (every family; the engine, predictor, prompter, exporter and app rely on it):

* ``model(images, targets=None, *, image_sizes=None, score_threshold=0.05) -> dict``: ``images``
  ``[B, 3, H, W]`` float32 RGB 0..255 already resized / padded by the family's input policy;
  ``targets`` B target dicts (``docs/INTERFACES.md``), required in training mode by families
  whose heads need them (they raise ``ValueError`` without); ``image_sizes`` the B ``(h, w)`` of
  the resized images inside the padded batch (short-side families; default the padded size);
  ``score_threshold`` the inference candidate threshold of families that select detections
  inside ``forward``. Every trainable module runs inside ``forward``, in training and in
  inference, so ``DistributedDataParallel``, ``torch.compile`` and export see one module.
* ``Family.make_loss(model)(outputs, targets) -> {"loss_*": scalar}``: no trainable parameters.
* ``Family.make_postprocess(model)(outputs, image_sizes, *, input_sizes=None,
  score_threshold=0.05, box_local=False) -> list[Instances]``: no trainable parameters;
  ``box_local=True`` gives ``pred_masks`` as :class:`segcore.structures.BoxMasks` (memory
  follows the boxes, not N x H x W: the predictor's CPU path).
* ``model.info``: a :class:`ModelInfo` set by the builder.
* ``Family.resize_image(image, info)``: the family's official test-time resize (the
  :class:`segcore.predictor.Predictor` input path); ``Family.coco_results(prediction, image_id)``:
  COCO results entries as the family's official evaluator writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

__all__ = ["ARCHITECTURES", "register", "build_model", "list_architectures", "ModelInfo", "Family", "FAMILIES",
           "register_family", "family_of", "family_of_arch", "Licence", "OfficialWeights", "WeightsKind",
           "WeightsStore", "LatencyTarget", "ImagenetBackbone", "OnnxSupport", "BoxPromptSupport", "InputPolicy",
           "arch_info"]

InputPolicy = Literal["square", "short_side"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
_ARCH_FAMILY: dict[str, str] = {}


@dataclass(frozen=True)
class ModelInfo:
    """What a built model is: set once by its builder (``model.info``), saved in checkpoints.

    Attributes:
        arch: registered architecture name.
        family: name of its :class:`Family`.
        num_classes: K, object classes (no background); index = class index.
        input_size: S: the square side (``"square"``) or the test short side (``"short_side"``).
        arch_kwargs: builder keyword arguments that rebuild it:
            ``build_model(arch, num_classes=K, **arch_kwargs)``.
        input_policy: ``"square"`` (resize to S x S) or ``"short_side"`` (short side S, long side
            <= ``max_size``, padded to a multiple of ``size_divisibility`` with the pixel mean;
            detectron2 ``ResizeShortestEdge`` + ``ImageList``).
        max_size: long-side cap of ``"short_side"`` (0 for ``"square"``).
        train_sizes: short sides sampled in training (``"short_side"``; empty: S only).
        size_divisibility: padding multiple of ``"short_side"`` (32; 0 for ``"square"``).
        sync_bn: the official configuration trains with SyncBN (the engine converts BatchNorm to
            ``nn.SyncBatchNorm`` when several CUDA processes train).
        input_scale: s > 0: images are used at s x their own size (image pixels x s, long side
            capped at ``max_size`` when set; padded to ``size_divisibility``) instead of the input
            policy's S; chosen from the data (``segcore.data.recipe``) for small objects.
            0: the input policy as it is.
        max_detections: detections kept per image (0: the family's default); set with
            ``build_model(..., max_detections=N)``.
    """

    arch: str
    family: str
    num_classes: int
    input_size: int
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_policy: InputPolicy = "square"
    max_size: int = 0
    train_sizes: tuple[int, ...] = ()
    size_divisibility: int = 0
    sync_bn: bool = False
    input_scale: float = 0.0
    max_detections: int = 0

    def __post_init__(self):
        if self.input_policy not in ("square", "short_side"):
            raise ValueError(f"{self.arch}: input_policy must be 'square' or 'short_side', got {self.input_policy!r}")
        if self.input_policy == "short_side" and (self.max_size < self.input_size or self.size_divisibility < 1):
            raise ValueError(f"{self.arch}: a short-side model needs max_size >= input_size and size_divisibility")


@dataclass(frozen=True)
class Licence:
    """Licence of the official code / weights a family follows (shown in the app's About box);
    stated only where the upstream LICENSE file was read."""

    family: str     # the family's architectures, e.g. "Mask R-CNN (maskrcnn_*)"
    paper: str
    upstream: str   # GitHub repository of the official implementation, "owner/repo"
    licence: str
    source: str     # where the licence was read (file @ commit)


#: :attr:`OfficialWeights.kind`: a whole model trained on COCO / an ImageNet backbone.
WeightsKind = Literal["coco", "imagenet"]
#: :attr:`OfficialWeights.store`: the annotator's weights cache / torch's hub checkpoints folder.
WeightsStore = Literal["cache", "torch_hub"]


@dataclass(frozen=True)
class OfficialWeights:
    """A downloadable official file (``annotator download-weights``).

    Attributes:
        name: registry name (``annotator download-weights NAME``).
        url: where the file is downloaded from.
        filename: the file's name on disk.
        arch: the registered architecture the weights serve (a backbone entry: the architecture
            whose backbone it fills; others of the family with that backbone take it too).
        sha256 / size: published values, None where nobody published them (trust on first use:
            the hash of the first download is remembered).
        source: where url, file name and hash were read.
        kind: ``"coco"``: a whole model trained on COCO (imported with the family's importer, or
            used by training as a start); ``"imagenet"``: ImageNet backbone weights (the family's
            :class:`ImagenetBackbone` finds them; training uses them when no trained model is there).
        store: ``"cache"``: the annotator's weights cache, verified against ``sha256`` / the
            remembered hash; ``"torch_hub"``: ``torch.hub.get_dir()/checkpoints`` (where torchvision
            and :class:`ImagenetBackbone` lookups find them), verified with torch.hub's convention: the
            file name carries a prefix of the file's sha256 (``torch.hub.HASH_REGEX``,
            ``resnet18-f37072fd.pth``).

    Raises:
        ValueError: unknown ``kind`` / ``store``, or a ``torch_hub`` file name without a hash prefix.
    """

    name: str
    url: str
    filename: str
    arch: str
    sha256: str | None = None
    size: int | None = None
    source: str = ""
    kind: WeightsKind = "coco"
    store: WeightsStore = "cache"

    def __post_init__(self):
        if self.kind not in ("coco", "imagenet") or self.store not in ("cache", "torch_hub"):
            raise ValueError(f"{self.name}: kind must be coco|imagenet and store cache|torch_hub, "
                             f"got {self.kind!r}, {self.store!r}")
        if self.store == "torch_hub" and self.name_hash_prefix() is None:
            raise ValueError(f"{self.name}: a torch_hub file name needs a sha256 prefix "
                             f"('<name>-<hex>.<ext>'), got {self.filename!r}")

    def name_hash_prefix(self) -> str | None:
        """The sha256 prefix in the file name by torch.hub's convention (``torch.hub.HASH_REGEX``:
        ``resnet18-f37072fd.pth`` -> ``"f37072fd"``), or None."""
        from torch.hub import HASH_REGEX

        m = HASH_REGEX.search(self.filename)
        return m.group(1) if m and m.group(1) else None


@dataclass(frozen=True)
class LatencyTarget:
    """A CPU latency target on the ratio ours / Mask R-CNN (``op`` ``"<="`` or ``"<"``)."""

    op: str
    value: float
    label: str
    what: str

    def met(self, ratio: float) -> bool:
        return ratio <= self.value if self.op == "<=" else ratio < self.value


@dataclass(frozen=True)
class ImagenetBackbone:
    """ImageNet backbone weights of a family: where they are on disk (never downloaded here;
    ``annotator download-weights`` fetches the family's ``kind="imagenet"`` official weights on
    request) and how they get into a model.

    ``find(arch) -> Path | None``; ``load(model, path) -> list[str]`` (notes for the user; raises
    ``ValueError`` when the file does not fit)."""

    find: Callable[[str], Path | None]
    load: Callable[[nn.Module, Path], list[str]]


@dataclass(frozen=True)
class OnnxSupport:
    """ONNX export of a family: ``export(model, out_path, *, categories, **options) -> report``
    (a report with ``.line()``) and ``runner(path, **options)`` (``.predict(image)``)."""

    export: Callable[..., Any]
    runner: Callable[..., Any]


@dataclass(frozen=True)
class BoxPromptSupport:
    """Box-prompted masks from a family's own mask head (``segcore.prompt``).

    ``run(model, outputs, boxes, image_hw, input_hw, *, classes, cache, autocast_dtype) ->
    {"masks" [N, H, W] bool, "classes" [N] int64, "scores" [N] | None}``: ``outputs`` are the
    eval-mode outputs of ``model`` for one image, ``boxes`` ``[N, 4]`` float32 XYXY original
    pixels, ``classes`` ``[N]`` int64 (-1 = choose), ``cache`` a dict the prompter keeps per image.
    ``has_scores(model)``: whether ``scores`` is set. ``takes_locations``: accepts ``locations``
    (FCOS location indices to take the attentions from)."""

    run: Callable[..., dict]
    has_scores: Callable[[nn.Module], bool] = lambda model: False
    takes_locations: bool = False


@dataclass(frozen=True)
class Family:
    """Everything the rest of segcore and the annotator know about one model family.

    Attributes:
        name: family name (``ModelInfo.family``).
        make_loss: ``make_loss(model) -> loss_fn(outputs, targets) -> {"loss_*": scalar}`` with
            the model's settings bound; the loss has no trainable parameters.
        make_postprocess: ``make_postprocess(model) -> fn(outputs, image_sizes, *,
            input_sizes=None, score_threshold=0.05, box_local=False) -> list[Instances]``; no
            trainable parameters.
        default_optim: ``default_optim(batch_size) -> (lr, weight_decay)``: the official
            optimiser, lr scaled linearly to the batch.
        import_weights: ``import_weights(state_dict, arch, *, source) -> (model, ImportReport)``:
            fills ``arch`` from an official checkpoint (recognising and refusing the formats it
            cannot map), or None.
        imagenet_backbone: :class:`ImagenetBackbone` or None.
        box_prompt: :class:`BoxPromptSupport` or None (no box-conditioned mask head).
        onnx: :class:`OnnxSupport` or None.
        official_weights: downloadable official files (:class:`OfficialWeights`: COCO checkpoints and
            ImageNet backbones); training starts from the first COCO entry of its architecture found downloaded.
        licence: upstream licence.
        tiny_arch: a small architecture for self-checks and quick tests.
        resize_image: ``resize_image(image, info) -> [3, h, w]`` uint8 or float32 CPU tensor, RGB
            0..255: the official test-time resize of one ``[H, W, 3]`` uint8 RGB image for a
            model with :class:`ModelInfo` ``info`` (the official library and interpolation, so
            that imported weights give the official outputs); the Predictor pads (short side)
            or stacks (square) the results and the model normalises them.
        coco_results: ``coco_results(prediction, image_id) -> list[dict]``: COCO results entries
            of one :class:`segcore.predictor.Prediction` as the family's official evaluator writes
            them (box format, which score goes with the box and with the mask, what is dropped);
            an entry's ``"score"`` goes with its ``"bbox"`` and its optional ``"mask_score"`` with
            its ``"segmentation"`` (centermask2's convention, read by
            :func:`segcore.evaluation.evaluate_coco_objects`). None = detectron2's
            ``COCOEvaluator`` (:func:`segcore.evaluation.coco.d2_coco_results`).
        bench_archs: architectures ``segcore.bench`` measures by default.
        latency_target: ``latency_target(arch) -> LatencyTarget | None`` (CPU, vs Mask R-CNN).
        gpu_fps_targets: ``{arch: frames per second}`` at batch 1 end to end.
        set_max_detections: ``set_max_detections(model, n)``: keep up to ``n`` detections per
            image (the caps before and after NMS that would otherwise cut below ``n``); used by
            :func:`build_model` ``max_detections``.
        describe: ``describe(arch) -> str``: one line for people choosing an architecture
            (family, speed class, what it suits).
    """

    name: str
    make_loss: Callable[[nn.Module], Callable[..., dict]]
    make_postprocess: Callable[[nn.Module], Callable[..., list]]
    default_optim: Callable[[int], tuple[float, float]]
    licence: Licence
    tiny_arch: str
    resize_image: Callable[[Any, ModelInfo], Any]
    coco_results: Callable[[Any, int], list] | None = None
    import_weights: Callable[..., tuple] | None = None
    imagenet_backbone: ImagenetBackbone | None = None
    box_prompt: BoxPromptSupport | None = None
    onnx: OnnxSupport | None = None
    official_weights: tuple[OfficialWeights, ...] = ()
    bench_archs: tuple[str, ...] = ()
    latency_target: Callable[[str], LatencyTarget | None] = lambda arch: None
    gpu_fps_targets: Mapping[str, float] = field(default_factory=dict)
    set_max_detections: Callable[[nn.Module, int], None] | None = None
    describe: Callable[[str], str] = lambda arch: ""


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (refuses duplicates)."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def register(name: str, *, family: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder of family ``family`` to :data:`ARCHITECTURES` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = builder
        _ARCH_FAMILY[name] = family
        return builder

    return decorator


def list_architectures() -> list[str]:
    """Sorted names of the registered architectures."""
    return sorted(ARCHITECTURES)


def build_model(name: str, *, num_classes: int, input_scale: float | None = None,
                max_detections: int | None = None, **kwargs) -> nn.Module:
    """Build a registered architecture (random init unless the kwargs say otherwise).

    Args:
        name: registered architecture name (:func:`list_architectures`).
        num_classes: K, number of object classes (no background).
        input_scale: s > 0 uses images at s x their size (:class:`ModelInfo`); None / 0: the
            input policy.
        max_detections: detections per image (``Family.set_max_detections``); None: the default.
        **kwargs: builder overrides (``input_size``, ...).

    Both extras are kept in ``model.info`` and in its ``arch_kwargs``, so a checkpoint rebuilds
    the same model.

    Returns:
        The model, in training mode, with ``model.info`` (:class:`ModelInfo`).

    Raises:
        ValueError: unknown ``name`` (the message lists the known names), ``num_classes < 1``, a
            builder that did not set ``model.info``, a negative scale, or ``max_detections`` for a
            family that cannot change it.
    """
    import dataclasses

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_architectures())}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = ARCHITECTURES[name](num_classes=int(num_classes), **kwargs)
    info = getattr(model, "info", None)
    if not isinstance(info, ModelInfo) or info.arch != name or info.family != _ARCH_FAMILY[name]:
        raise ValueError(f"builder of {name!r} did not set model.info = ModelInfo(arch={name!r}, ...)")
    extra: dict[str, Any] = {}
    if input_scale:
        if float(input_scale) < 0:
            raise ValueError(f"{name}: input_scale must be > 0, got {input_scale}")
        if info.input_policy != "short_side":
            raise ValueError(f"{name}: a {info.input_policy} input cannot take an input scale (its priors are laid "
                             "out for S x S); use an architecture with a short-side input")
        extra["input_scale"] = float(input_scale)
    if max_detections:
        setter = FAMILIES[info.family].set_max_detections
        if setter is None:
            raise ValueError(f"{name}: the {info.family} family cannot change its detections per image")
        setter(model, int(max_detections))
        extra["max_detections"] = int(max_detections)
    if extra:
        model.info = dataclasses.replace(info, arch_kwargs={**info.arch_kwargs, **extra}, **extra)
    return model


def arch_info(name: str, **kwargs) -> ModelInfo:
    """The :class:`ModelInfo` ``build_model(name, num_classes=1, **kwargs)`` would have, built on
    the ``meta`` device (no memory, no weights): for planning before a model exists."""
    import torch

    with torch.device("meta"):
        return build_model(name, num_classes=1, **kwargs).info


def family_of_arch(arch: str) -> Family:
    """The :class:`Family` of a registered architecture name.

    Raises:
        ValueError: unknown architecture (the message lists the known names).
    """
    if arch not in _ARCH_FAMILY:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(list_architectures())}")
    return FAMILIES[_ARCH_FAMILY[arch]]


def family_of(model: nn.Module) -> Family:
    """The :class:`Family` of a built model (``model.info.family``).

    Raises:
        ValueError: the model has no :class:`ModelInfo` (not built by :func:`build_model`) or its
            family is not registered.
    """
    info = getattr(model, "info", None)
    if not isinstance(info, ModelInfo):
        raise ValueError(f"{type(model).__name__} has no model.info (build it with segcore.modeling.build_model)")
    if info.family not in FAMILIES:
        raise ValueError(f"{info.arch}: family {info.family!r} is not registered")
    return FAMILIES[info.family]
