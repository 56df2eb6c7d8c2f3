"""Train job: fine-tune (or train from scratch) a segcore model on a project's reviewed annotations.

Shared by ``annotator train``, the training process (:mod:`annotator.jobs.train_process`), the
multi-GPU launcher (:mod:`annotator.jobs.distributed`), ``annotator simulate`` and the GUI's Train
button. Training data are the project's annotations in review state ``accepted`` or ``edited``
(human corrections and accepted predictions); predictions still under review and rejected ones
never train the model.

A job has three steps, so that the part touching the project stays in the caller's process:

1. :func:`prepare_train_job` (project -> :class:`TrainSpec`, a JSON-serialisable plan): the
   train / validation split by image (``Project.assign_splits``: fixed seed, stored in the
   project, so later rounds validate on the same images), the weights to start from and the
   schedule. Written to ``OUT/train_spec.json``.
2. :func:`execute_train_spec` (no project access): builds the model, trains it with
   ``segcore.engine.train`` (or DDP), evaluates segm / bbox AP on the validation images every
   ``eval_every`` iterations with a ``Predictor`` and ``segcore.evaluation.evaluate_predictions``,
   keeps the best checkpoint (``OUT/model_best.pth``) and stops early when validation segm AP has
   not improved for ``patience`` evaluations. State in ``OUT/train_state.json`` (for resume).
3. :func:`register_train_result`: registers version n+1 with parent, data snapshot (annotation
   ids, train / validation image ids) and metrics (segm and bbox AP on the validation split), and
   makes it the active version only when that helps (:func:`should_activate`): a version whose
   validation AP does not beat the active one's stays registered, offered, with the reason.

**Data-driven recipe** (:mod:`segcore.data.recipe`): the input scale (small objects: images
enlarged so the median object is 32 px, training on 256 px crops), the detections per image
(1.5 x the densest labelled image) and the augmentation preset (``"photo"`` / ``"topdown"``) are
made from the labelled data and logged with the figures they rest on.

**Time-boxed rounds.** ``max_minutes`` gives the training a wall-clock budget: the engine
measures the iteration time in the first steps and lays out iterations, warmup, lr steps and
validation points to end within it (``segcore.engine.train`` ``time_budget_s``). On a CPU, when
neither ``iterations`` nor ``max_minutes`` is given, the budget is :data:`CPU_DEFAULT_MINUTES`.

Defaults for small data, chosen so a user tunes nothing (documented in README "Training"):

* iterations: ``clamp(50 x images, 200, 20000)`` when not given;
* batch size 8 on CUDA, 4 on CPU. BN is frozen below 6 images per device, as the official
  ``train.py`` does, only when starting from trained weights: from random init, frozen BN keeps
  its untrained statistics and training is unstable (seen in the overfit test), so BN is trained;
* learning rate and weight decay by family (:func:`default_optim`): YOLACT ``1e-3 x batch / 8``,
  weight decay 5e-4 (official ``yolact_base_config``, lr scaled by batch as ``train.py`` does);
  BlendMask / CenterMask ``0.01 x batch / 16``, weight decay 1e-4 (AdelaiDet
  ``Base-BlendMask.yaml`` / centermask2 ``Base-CenterMask-VoVNet.yaml`` with detectron2's
  defaults, batch 16; linear scaling rule);
* warmup ``min(500, iterations // 10)`` iterations from 0.1 x lr;
* lr steps at 35 %, 75 %, 87.5 % and 93.75 % of the iterations (the official
  280k / 600k / 700k / 750k of 800k, ``data/config.py`` ``yolact_base_config``);
* validation: 20 % of the images (at least one), once the project has
  :data:`MIN_VALIDATION_IMAGES` labelled images (below that every image trains, since each of a
  few labelled images teaches more than it would measure, and the last checkpoint is kept), evaluated every
  ``max(50, iterations // 10)`` iterations (time-boxed: once, at the end); early stop after 3
  evaluations without a better segm AP, never before a third of the iterations.

Weights to start from, in order (the job logs which): ``resume`` (a run folder or checkpoint:
continue it), ``--init CKPT|VERSION``, the project's active model version (same architecture),
else its newest version of that architecture (each round continues the previous one, also when
that one was not made active),
an official COCO checkpoint of exactly that architecture downloaded earlier with ``annotator
download-weights`` (found in the weights cache by :func:`find_coco_checkpoint`, imported in memory
with ``segcore.importers.import_official_weights``, then every tensor whose name and shape fit
copied: the class layers stay random because the project's categories differ from COCO's; a file
that no longer verifies or that the importer refuses is passed over with a logged line),
ImageNet backbone weights found offline (nothing is downloaded): for YOLACT the torchvision
ResNet in the torch hub cache (``~/.cache/torch/hub/checkpoints``; ``annotator download-weights
resnet50-imagenet`` etc. put them there on request); for the detectron2-style
BlendMask / CenterMask ResNets detectron2's MSRA ``R-50.pkl`` / ``R-101.pkl`` in
``$XDG_CACHE_HOME/annotator/weights`` or detectron2's own cache
(``~/.torch/iopath_cache/detectron2/ImageNetPretrained/MSRA``), random init. ``--init`` also
takes such a backbone file (``.pkl`` / ``.pth``; :mod:`segcore.importers.backbone`). Class-dependent
tensors whose shape differs (different
category list) are left at random init and reported, as dbolya/yolact #36 advises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Optional, Union

import pydantic
import torch

from annotator.errors import AnnotatorError
from segcore.engine.trainer import BEST_NAME
from segcore.engine.trainer import EVAL_STATE_NAME as STATE_NAME  # noqa: F401  (the run folder's files)

SPEC_NAME = "train_spec.json"
NONFINITE_STORM = 20  # this many non-finite losses in a row: the run has diverged
#: Training budget on a CPU when neither iterations nor a budget is given (minutes).
CPU_DEFAULT_MINUTES = 5.0
#: Fewer labelled images than this: no validation split (every image trains, last checkpoint kept;
#: images assigned to validation earlier stay there). At 10, the nuclei-he simulation held 4 of its
#: 12 images out of round 3 (it trained on the same 8 as round 2) and spent part of its 5 minutes
#: evaluating them: with a handful of images every label is worth more in training.
MIN_VALIDATION_IMAGES = 25
#: A first version (no active one to compare with) becomes active only above this validation segm AP.
ACTIVATION_FLOOR_AP = 0.01


class TrainDivergedError(AnnotatorError):
    """The loss was not finite for :data:`NONFINITE_STORM` iterations in a row."""


@dataclass
class TrainJobResult:
    """What a train job produced: the checkpoint, the registered model version, and notes."""

    checkpoint: Path
    model_version: int
    iterations_done: int
    skipped_nonfinite: int
    final_losses: dict
    notes: list[str] = field(default_factory=list)
    metrics: Optional[dict] = None
    stopped: bool = False
    early_stopped: bool = False
    init_source: str = "random"
    parent: Optional[int] = None
    details: dict = field(default_factory=dict)  # the run's outcome (engine step counts, DDP ranks ...)
    activated: bool = True      # made the active version (should_activate)
    activation: str = ""        # why (not), one line
    skipped_unreadable: list = field(default_factory=list)  # "<file>: <reason>" left out of training


@dataclass
class TrainSpec:
    """Everything a run needs, without the project (JSON: ``OUT/train_spec.json``; :meth:`load`
    validates it with pydantic: types, no unknown or missing keys)."""

    __pydantic_config__: ClassVar = pydantic.ConfigDict(extra="forbid")

    arch: str
    arch_kwargs: dict
    categories: list
    train_records: list
    val_records: list
    out_dir: str
    iterations: int             # with max_minutes: the upper bound the time budget lays out within
    batch_size: int
    lr: float
    warmup_iters: int
    steps: list
    augment: Union[bool, str, None]   # "photo" | "topdown" | None (False); True = "photo"
    seed: int
    device: str
    eval_every: int
    patience: int
    min_iterations: int
    freeze_bn: Optional[bool]
    init_source: str            # "resume" | "checkpoint" | "version" | "coco" | "imagenet" | "random"
    init_path: Optional[str]
    init_note: str
    parent: Optional[int]
    resume: Optional[str] = None
    val_fraction: float = 0.2
    snapshot: dict = field(default_factory=dict)
    score_threshold: float = 0.05
    weight_decay: float = 5e-4
    max_minutes: Optional[float] = None
    crop_size: Optional[int] = None     # train on crops of this side at crop_scale (the recipe)
    crop_scale: float = 1.0
    recipe_notes: list = field(default_factory=list)

    def save(self) -> Path:
        """Write ``OUT/train_spec.json`` (atomically); its path."""
        from annotator.jobs.distributed import save_json_spec

        return save_json_spec(self, Path(self.out_dir) / SPEC_NAME)

    @classmethod
    def load(cls, path: Path) -> "TrainSpec":
        """Read and validate ``OUT/train_spec.json``.

        Raises:
            AnnotatorError: unreadable file, not JSON, or a field missing, unknown or of the wrong
                type (the message names the first such field).
        """
        from annotator.jobs.distributed import load_json_spec

        return load_json_spec(cls, path, "training plan")


def default_iterations(num_images: int) -> int:
    """Iterations for ``num_images`` training images: ``clamp(50 x n, 200, 20000)``."""
    return int(min(20000, max(200, 50 * num_images)))


def lr_steps(iterations: int) -> tuple[int, ...]:
    """Step-decay milestones at the official YOLACT fractions of the schedule (x0.1 each)."""
    return tuple(int(iterations * f) for f in (0.35, 0.75, 0.875, 0.9375))


def match_tensors(own: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of ``source`` that fit ``own`` by name and shape, and the names in both whose
    shape differs (class-dependent layers when the categories differ). ``own`` may hold meta
    tensors (only shapes are read)."""
    matched, skipped = {}, []
    for name, tensor in source.items():
        if name in own and own[name].shape == tensor.shape:
            matched[name] = tensor
        elif name in own:
            skipped.append(name)
    return matched, skipped


def copy_matching_tensors(model: torch.nn.Module, source: Mapping[str, torch.Tensor], what: str) -> list[str]:
    """Copy every tensor of ``source`` (a state_dict) whose name and shape match into ``model``;
    the rest of ``model`` keeps its init. The one name + shape copy of every training start from
    trained weights (a segcore checkpoint, an official COCO checkpoint).

    Returns:
        Notes for the user: ``initialised N/M tensors from <what>`` and, when some were skipped
        for their shape, which.
    """
    own = model.state_dict()
    matched, skipped = match_tensors(own, source)
    model.load_state_dict(matched, strict=False)
    notes = [f"initialised {len(matched)}/{len(own)} tensors from {what}"]
    if skipped:
        notes.append(f"left at random init (shape differs, e.g. other categories): {', '.join(skipped)}")
    return notes


def official_coco_state(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """The state_dict of ``arch`` filled from an official COCO checkpoint (imported in memory
    with ``segcore.importers.import_official_weights``: read with ``torch.load(weights_only=True)``,
    keys mapped by the family's importer; nothing is written).

    Raises:
        AnnotatorError: the importer refused the file (unreadable, unknown or missing keys,
            shapes), one line.
    """
    from segcore.importers import WeightImportError, import_official_weights

    try:
        model, _report, _categories = import_official_weights(Path(path), arch)
    except WeightImportError as exc:
        raise AnnotatorError(str(exc).splitlines()[0]) from None
    return model.state_dict()


def _coco_start_note(path: Path, arch: str, num_classes: int, arch_kwargs: dict) -> str:
    """``starting from the official COCO weights <file> (N/M tensors; class layers random init)``:
    the count against the model the run builds (on the meta device: shapes only).

    Raises:
        AnnotatorError: the importer refused the file (see :func:`official_coco_state`).
    """
    from segcore.modeling.registry import build_model

    state = official_coco_state(path, arch)
    with torch.device("meta"):
        own = build_model(arch, num_classes=num_classes, **arch_kwargs).state_dict()
    matched, skipped = match_tensors(own, state)
    rest = "; class layers random init" if skipped else ""
    return f"starting from the official COCO weights {path} ({len(matched)}/{len(own)} tensors{rest})"


def load_init_weights(model: torch.nn.Module, path: Path) -> list[str]:
    """Copy every tensor of a segcore checkpoint at ``path`` whose name and shape match.

    Args:
        model: the freshly built model.
        path: a segcore checkpoint (``torch.load(weights_only=True)``; never runs code), or an
            ImageNet backbone file for a BlendMask / CenterMask model (detectron2 MSRA ``.pkl``
            read as numpy arrays, or a detectron2-named backbone ``.pth``).

    Returns:
        Notes for the user: how many tensors were copied, which were skipped for shape.

    Raises:
        AnnotatorError: the file cannot be read, is neither a segcore checkpoint nor a backbone
            file, or its backbone does not fit the model.
    """
    if Path(path).suffix == ".pkl":
        return _load_backbone_file(model, path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or a pickle with code: refuse
        raise AnnotatorError(f"{path}: cannot load checkpoint ({exc.__class__.__name__}: {exc})") from None
    if isinstance(ckpt, dict) and "format" not in ckpt and "arch" not in ckpt:
        from segcore.importers.backbone import is_backbone_file

        if is_backbone_file(ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt):
            return _load_backbone_file(model, path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise AnnotatorError(f"{path}: model: not a segcore checkpoint (no 'model' state_dict)")
    return copy_matching_tensors(model, ckpt["model"], str(path))


def _load_backbone_file(model: torch.nn.Module, path: Path) -> list[str]:
    """Load an ImageNet backbone file (:mod:`segcore.importers.backbone`) into ``model``."""
    from segcore.importers import WeightImportError
    from segcore.importers.backbone import load_backbone_file

    try:
        return load_backbone_file(model, path)
    except WeightImportError as exc:
        raise AnnotatorError(str(exc)) from None


def default_optim(arch: str, batch_size: int) -> tuple[float, float]:
    """``(lr, weight_decay)`` of the official recipe of ``arch``'s family, lr scaled linearly to
    ``batch_size`` (``Family.default_optim``; see the module docstring)."""
    from segcore.modeling.registry import family_of_arch

    return family_of_arch(arch).default_optim(int(batch_size))


def find_coco_checkpoint(arch: str, *, verify: bool = True, log: Callable[[str], None] | None = None
                         ) -> Optional[Path]:
    """A downloaded official COCO checkpoint of exactly ``arch`` in the weights cache
    (``annotator download-weights``; :func:`annotator.weights.find_downloaded`: the family's
    first entry for ``arch`` that is there and verifies), or None; never downloads. ``verify=False``
    skips hashing the file (the GUI's description); ``log`` hears of files passed over."""
    from annotator.weights import find_downloaded

    found = find_downloaded(arch, verify=verify, log=log)
    return None if found is None else found[1]


def find_imagenet_backbone(arch: str) -> Optional[Path]:
    """An ImageNet backbone file for ``arch`` on disk (its family's lookup), or None; never
    downloads (see the module docstring for where each family looks)."""
    from segcore.modeling.registry import family_of_arch

    lookup = family_of_arch(arch).imagenet_backbone
    return None if lookup is None else lookup.find(arch)


def _resolve_resume(resume: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint to resume from) for a run folder or a checkpoint file."""
    p = Path(resume)
    if p.is_dir():
        for name in ("model_latest.pth", "model_final.pth"):
            if (p / name).is_file():
                return p, p / name
        raise AnnotatorError(f"--resume: {p}: no model_latest.pth or model_final.pth to resume from")
    if p.is_file():
        return p.parent, p
    raise AnnotatorError(f"--resume: not found: {p}")


def _readable_records(project, records: list[dict], log: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    """The records whose image decodes (each is read once); the others are marked unreadable in
    the project and returned as ``"<file>: <reason>"`` (a batch never stops at a bad file)."""
    from segcore.data.dataset import read_image_rgb

    good, skipped = [], []
    for r in records:
        try:
            read_image_rgb(r["file_name"], (int(r["height"]), int(r["width"])))
        except (FileNotFoundError, ValueError) as exc:
            reason = str(exc).split(": cannot read image: ", 1)[-1].split(": image is ", 1)[-1]
            if not project.read_only:
                project.mark_unreadable(int(r["image_id"]), reason)
            skipped.append(f"{project.relative_path(r['file_name'])}: {reason}")
            log(f"skipped (unreadable): {skipped[-1]}")
            continue
        good.append(r)
    return good, skipped


def default_architecture(device_type: str) -> str:
    """The architecture a project without a model version trains: on a CPU the choice measured
    for small data (:data:`segcore.modeling.CPU_DEFAULT_ARCHITECTURE`), else
    :data:`segcore.modeling.DEFAULT_ARCHITECTURE`."""
    from segcore.modeling import CPU_DEFAULT_ARCHITECTURE, DEFAULT_ARCHITECTURE

    return CPU_DEFAULT_ARCHITECTURE if device_type == "cpu" else DEFAULT_ARCHITECTURE


def prepare_train_job(project, *, arch: Optional[str], init: str | None = None, iterations: int | None = None,
                      batch_size: int | None = None, lr: float | None = None, input_size: int | None = None,
                      device: str = "auto", out_dir: Path | None = None, augment: bool | str | None = True,
                      seed: int = 0, val_fraction: float = 0.2, eval_every: int | None = None,
                      patience: int | None = None, resume: str | Path | None = None, use_active_version: bool = True,
                      max_minutes: float | None = None, max_detections: int | None = None,
                      log: Callable[[str], None] = print) -> TrainSpec:
    """Plan a run from the project: split, start weights, recipe, schedule. Writes ``OUT/train_spec.json``.

    Args: as :func:`run_train_job`. ``arch=None`` takes the active model version's architecture,
    or without one :func:`default_architecture` for the device.

    Raises:
        AnnotatorError: unknown architecture, no reviewed annotations, bad init / resume,
            unwritable output folder.
    """
    from segcore.checkpoints import CheckpointError, read_checkpoint
    from segcore.device import resolve_device
    from segcore.modeling.registry import list_architectures

    if resume is not None:
        run_dir, ckpt = _resolve_resume(resume)
        if (run_dir / SPEC_NAME).is_file():
            spec = TrainSpec.load(run_dir / SPEC_NAME)
        else:
            raise AnnotatorError(f"--resume: {run_dir}: no {SPEC_NAME} (not a run of 'annotator train')")
        try:
            done = int(read_checkpoint(ckpt)["iteration"])
        except CheckpointError as exc:
            raise AnnotatorError(str(exc)) from None
        spec.resume = str(ckpt)
        spec.init_source, spec.init_note = "resume", f"resuming {ckpt} at iteration {done} of {spec.iterations}"
        log(spec.init_note)
        spec.save()
        return spec

    dev = resolve_device(device)
    active = project.active_model_version() if use_active_version else None
    if arch is None:
        arch = project.model_version(active).arch if active is not None else default_architecture(dev.type)
    if arch not in list_architectures():
        raise AnnotatorError(f"--arch: unknown architecture {arch!r}; known: {', '.join(list_architectures())}")
    if isinstance(augment, bool) or augment is None:
        augment = "photo" if augment else None
    if augment not in ("photo", "topdown", None):
        raise AnnotatorError(f"--augment: {augment!r} is not one of photo, topdown, none")
    records, categories = project.training_records()
    records, skipped = _readable_records(project, records, log)
    if not records:
        raise AnnotatorError(
            f"{project.db_path}: annotations: no accepted or edited annotations to train on "
            "(import COCO or review predictions first)" + (f"; {len(skipped)} unreadable image(s) skipped"
                                                            if skipped else ""))
    if len(records) >= MIN_VALIDATION_IMAGES and val_fraction > 0:
        splits = project.assign_splits([r["image_id"] for r in records], val_fraction=val_fraction, seed=seed)
    else:   # too few images for a validation split that means something: all train, last checkpoint kept
        splits = {**{r["image_id"]: "train" for r in records}, **project.image_splits()}
        if val_fraction > 0:
            log(f"{len(records)} labelled images (< {MIN_VALIDATION_IMAGES}): no validation split; every image "
                "trains and the last checkpoint is kept")
    train_records = [r for r in records if splits.get(r["image_id"], "train") == "train"]
    val_records = [r for r in records if splits.get(r["image_id"]) == "val"]
    if not train_records:  # every image with data was assigned to validation earlier
        train_records, val_records = records, []

    parent, init_path, source, backbone = None, None, "random", None
    if init is not None:
        if str(init).isdigit():
            parent = int(init)
            init_path, source = Path(project.model_version(parent).checkpoint_path), "version"
        else:
            init_path, source = Path(init), "checkpoint"
        if not init_path.is_file():
            raise AnnotatorError(f"--init: checkpoint not found: {init_path}")
    elif (start := _start_version(project, arch, active if use_active_version else None,
                                  use_newest=use_active_version)) is not None:
        parent, source = start, "version"
        init_path = Path(project.model_version(start).checkpoint_path)
    elif (coco := find_coco_checkpoint(arch, log=log)) is not None:
        init_path, source = coco, "coco"
    parent_path = init_path if source in ("version", "checkpoint") else None
    recipe, arch_kwargs = _recipe(arch, train_records, input_size=input_size, augment=augment,
                                  max_detections=max_detections, init_path=parent_path)
    note = None
    if source == "coco":
        try:
            note = _coco_start_note(init_path, arch, len(categories), arch_kwargs)
        except AnnotatorError as exc:
            log(f"the downloaded official COCO weights cannot be used ({exc})")
            init_path, source = None, "random"
    if source == "random":
        backbone = find_imagenet_backbone(arch)
        source = "imagenet" if backbone is not None else "random"
    if source == "version":
        note = f"starting from model version {parent} ({init_path})"
    elif source == "checkpoint":
        note = f"starting from checkpoint {init_path}"
    elif source == "imagenet":
        note = f"starting from ImageNet backbone weights {backbone} (rest random init)"
    elif source == "random":
        note = ("no model version, --init, downloaded COCO checkpoint or ImageNet weights: training starts "
                "from random init")
    log(note)
    for line in recipe.notes:
        log(f"recipe: {line}")
    if max_minutes is None and iterations is None and dev.type == "cpu":
        max_minutes = CPU_DEFAULT_MINUTES
    timed = max_minutes is not None
    if timed and float(max_minutes) <= 0:
        raise AnnotatorError(f"--max-minutes: must be > 0, got {max_minutes}")
    iterations = int(iterations or (MAX_TIMED_ITERATIONS if timed else default_iterations(len(train_records))))
    if batch_size is None and dev.type == "cpu":
        batch_size = _batch_that_fits(arch, arch_kwargs, CPU_BATCH, log)
    batch_size = int(batch_size or (8 if dev.type == "cuda" else CPU_BATCH))
    default_lr, weight_decay = default_optim(arch, batch_size)
    lr = float(lr if lr is not None else default_lr)
    eval_every = int(eval_every or (iterations if timed else max(50, iterations // 10)))
    if out_dir is None:
        out_dir = project.root / "models" / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnnotatorError(f"--out: cannot create {out_dir}: {exc.strerror}") from None
    ann_ids = sorted(a["id"] for r in records for a in r["annotations"] if "id" in a)
    spec = TrainSpec(
        arch=arch, arch_kwargs=arch_kwargs, categories=categories, train_records=train_records,
        val_records=val_records, out_dir=str(out_dir.resolve()), iterations=iterations, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, warmup_iters=iterations // 10 if timed else min(500, iterations // 10),
        steps=list(lr_steps(iterations)), augment=recipe.augment if augment else None,
        max_minutes=None if max_minutes is None else float(max_minutes), crop_size=recipe.crop_size,
        crop_scale=float(recipe.input_scale or 1.0), recipe_notes=list(recipe.notes),
        seed=int(seed), device=str(dev), eval_every=eval_every, patience=int(patience if patience is not None else 3),
        min_iterations=iterations // 3, freeze_bn=None if source in ("version", "checkpoint", "coco") else False,
        init_source=source, init_path=str(backbone if source == "imagenet" else init_path) if (init_path or backbone)
        else None, init_note=note, parent=parent, val_fraction=float(val_fraction),
        snapshot={"annotation_ids": ann_ids, "images": len(records),
                  "train_image_ids": [r["image_id"] for r in train_records],
                  "val_image_ids": [r["image_id"] for r in val_records], "split_seed": int(seed),
                  "skipped_unreadable": skipped})
    spec.save()
    schedule = f"{max_minutes:g} minutes (iterations laid out from the measured speed)" if timed \
        else f"{iterations} iterations"
    log(f"training {arch} on {len(train_records)} images (+{len(val_records)} validation) / "
        f"{len(categories)} categories, {schedule}, batch {batch_size}, lr {lr:g}, device {dev}")
    return spec


def _start_version(project, arch: str, active: Optional[int], *, use_newest: bool) -> Optional[int]:
    """The version a run of ``arch`` continues from: the active version when it is ``arch``, else
    the newest ``arch`` version (one that did not earn activation still holds its training), else
    None. Versions whose checkpoint file is gone do not count."""
    candidates = [active] if active is not None else []
    if use_newest:
        candidates += [v.id for v in sorted(project.model_versions(), key=lambda v: -v.id)]
    for vid in candidates:
        mv = project.model_version(vid)
        if mv.arch == arch and Path(mv.checkpoint_path).is_file():
            return int(vid)
    return None


#: Default batch on a CPU; architectures over :data:`PROBE_MIN_PARAMS` parameters are measured
#: first and get the largest batch up to it that fits the memory (:mod:`segcore.engine.memory`).
CPU_BATCH = 4
PROBE_MIN_PARAMS = 10_000_000


def _batch_that_fits(arch: str, arch_kwargs: dict, requested: int, log: Callable[[str], None]) -> int:
    """``requested``, or less when a measured training step of ``arch`` would not fit the memory
    available now; small models (<= :data:`PROBE_MIN_PARAMS` parameters) are not measured.

    Raises:
        AnnotatorError: not even batch 1 fits (one line), or the measurement failed.
    """
    import torch

    from segcore.engine.memory import available_mb, fit_batch, probe
    from segcore.modeling.registry import build_model

    kwargs = {k: v for k, v in arch_kwargs.items() if k != "max_detections"}
    with torch.device("meta"):
        n_params = sum(p.numel() for p in build_model(arch, num_classes=1, **kwargs).parameters())
    if n_params <= PROBE_MIN_PARAMS:
        return requested
    log(f"measuring the memory of a {arch} training step ({n_params / 1e6:.0f} M parameters)...")
    try:
        cost = probe(arch, arch_kwargs=kwargs)
        batch = fit_batch(requested, cost, available_mb())
    except (RuntimeError, ValueError) as exc:
        raise AnnotatorError(f"--arch {arch}: {exc}") from None
    if batch < requested:
        log(f"batch {requested} would need {cost.peak_mb(requested) / 1024:.1f} GB, {available_mb() / 1024:.1f} GB "
            f"are available: batch {batch}")
    return batch


#: Upper bound of a time-boxed run's iterations (the budget lays out the real number).
MAX_TIMED_ITERATIONS = 200_000


def _recipe(arch: str, records: list[dict], *, input_size: int | None, augment: str | None,
            max_detections: int | None, init_path: Path | None):
    """``(Recipe, arch_kwargs)`` of the data (:mod:`segcore.data.recipe`). Continuing from a
    checkpoint keeps its input scale (the weights learned objects at that size) unless the data
    now need more detections per image."""
    from segcore.data.recipe import data_stats, recipe_for
    from segcore.modeling.registry import arch_info

    kwargs = {} if input_size is None else {"input_size": int(input_size)}
    info = arch_info(arch, **kwargs)
    recipe = recipe_for(data_stats(records), input_policy=info.input_policy, input_size=info.input_size,
                        default_max_detections=info.max_detections or 100, augment=augment or "photo",
                        max_detections=max_detections)
    if init_path is not None:
        from segcore.checkpoints import CheckpointError, read_checkpoint

        try:
            parent_kwargs = read_checkpoint(init_path).get("arch_kwargs", {})
        except CheckpointError:
            parent_kwargs = {}
        scale = float(parent_kwargs.get("input_scale", 0.0))
        if scale != recipe.input_scale:
            import dataclasses

            recipe = dataclasses.replace(recipe, input_scale=scale, crop_size=recipe.crop_size if scale else None,
                                         notes=recipe.notes + [f"kept the input scale {scale:g} of {init_path.name}"])
    if recipe.input_scale and info.input_policy != "short_side":
        import dataclasses

        recipe = dataclasses.replace(recipe, input_scale=0.0, crop_size=None, notes=recipe.notes + [
            f"{arch} has a square input: it cannot enlarge small objects (choose an architecture with a "
            "short-side input for them)"])
    if recipe.input_scale:
        kwargs["input_scale"] = recipe.input_scale
    kwargs["max_detections"] = recipe.max_detections
    return recipe, kwargs


def build_spec_model(spec: TrainSpec) -> tuple[torch.nn.Module, list[str]]:
    """The model of ``spec`` with its start weights (resume loads its checkpoint in the engine)."""
    from segcore.modeling.registry import build_model, family_of_arch

    model = build_model(spec.arch, num_classes=len(spec.categories), **spec.arch_kwargs)
    if spec.resume is not None:
        return model, []
    if spec.init_source == "imagenet":
        lookup = family_of_arch(spec.arch).imagenet_backbone
        try:
            return model, lookup.load(model, Path(spec.init_path))
        except ValueError as exc:  # WeightImportError is a ValueError
            return build_model(spec.arch, num_classes=len(spec.categories), **spec.arch_kwargs), [
                f"ImageNet weights not usable ({exc}); random init"]
    if spec.init_source in ("version", "checkpoint"):
        return model, load_init_weights(model, Path(spec.init_path))
    if spec.init_source == "coco":
        try:
            state = official_coco_state(Path(spec.init_path), spec.arch)
        except AnnotatorError as exc:  # changed or removed since the plan was made
            return model, [f"official COCO weights not usable ({exc}); random init"]
        return model, copy_matching_tensors(model, state, f"the official COCO weights {spec.init_path}")
    return model, []


def evaluate_model(model: torch.nn.Module, records: list[dict], categories: list[dict], *, device="cpu",
                   score_threshold: float = 0.05) -> dict:
    """segm and bbox AP of ``model`` on ``records`` (the Predictor runs a copy; ``model`` is not
    changed), counting as many detections per image as the model keeps (at least COCO's 100)."""
    from segcore.evaluation import evaluate_predictions
    from segcore.predictor import Predictor

    predictor = Predictor(model, categories, device=device)
    return evaluate_predictions(predictor, records, categories, score_threshold=score_threshold,
                                max_detections=max(100, int(model.info.max_detections)))


def execute_train_spec(spec: TrainSpec, *, progress: Callable[[dict], None] | None = None,
                       should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run a planned job (no project access) with ``segcore.engine.train``; returns the outcome
    (JSON-serialisable dict).

    The same call runs the single-process job and each rank of ``--gpus N`` (inside ``torchrun``
    the engine finds the process group and trains with DDP). Validation, the best checkpoint and
    early stopping are the engine's :class:`~segcore.engine.EvalHook` (rank 0 evaluates), the
    divergence check its :class:`~segcore.engine.DivergenceHook`.

    ``progress`` receives the engine's per-iteration dicts (rank 0); after an evaluation the dict
    also has ``"val": {"iteration", "segm_AP", "bbox_AP", "best_segm_AP", "best_iteration"}``.
    ``should_stop()`` returning True stops after the current iteration; the best checkpoint is
    kept and reported (a cancel).

    Raises:
        TrainDivergedError: :data:`NONFINITE_STORM` non-finite losses in a row.
        AnnotatorError: the engine refused the run (bad resume checkpoint, too few images, ...).
    """
    from segcore.checkpoints import CheckpointError
    from segcore.engine import DivergenceHook, EvalHook, train

    out_dir = Path(spec.out_dir)
    model, notes = build_spec_model(spec)
    for n in notes:
        log(n)
    evaluation = EvalHook(spec.val_records, every=spec.eval_every, patience=spec.patience,
                          min_iterations=spec.min_iterations, score_threshold=spec.score_threshold,
                          device=spec.device, resume=spec.resume is not None)

    def on_progress(info: dict) -> None:
        if "early_stop" in info:
            e = info["early_stop"]
            log(f"early stop at iteration {e['iteration']}: validation segm AP has not improved for {e['since']} "
                f"evaluations (best {e['best_segm_AP']:.4f} at iteration {e['best_iteration']})")
        if progress is not None:
            progress(info)

    augment = {True: "photo", False: None}.get(spec.augment, spec.augment) if isinstance(spec.augment, bool) \
        else spec.augment
    crop = None
    if spec.crop_size:
        from segcore.data.crops import CropPolicy

        crop = CropPolicy(size=int(spec.crop_size), scale=float(spec.crop_scale), augment=augment)
    try:
        result = train(
            model, spec.train_records, spec.categories, iterations=spec.iterations, batch_size=spec.batch_size,
            lr=spec.lr, weight_decay=spec.weight_decay, warmup_iters=spec.warmup_iters, steps=tuple(spec.steps),
            augment=augment is not None, device=spec.device, seed=spec.seed, out_dir=out_dir, resume=spec.resume,
            checkpoint_every=spec.eval_every, freeze_bn=spec.freeze_bn, progress=on_progress,
            should_stop=should_stop, hooks=[DivergenceHook(NONFINITE_STORM), evaluation], crop=crop,
            time_budget_s=None if spec.max_minutes is None else 60.0 * float(spec.max_minutes))
    except (CheckpointError, ValueError) as exc:
        raise AnnotatorError(f"{out_dir}: training failed: {exc}") from None
    if result.stop_reason == "diverged":
        raise TrainDivergedError(f"{out_dir}: training diverged: the loss was not finite for {NONFINITE_STORM} "
                                 f"iterations in a row (at iteration {result.iterations_done}); lower --lr")
    best = evaluation.best
    ckpt = out_dir / BEST_NAME if best is not None and (out_dir / BEST_NAME).is_file() else result.checkpoint_path
    metrics = None
    if best is not None:
        metrics = {"segm": best["segm"], "bbox": best["bbox"], "iteration": best["iteration"],
                   "val_images": len(spec.val_records), "train_images": len(spec.train_records),
                   "history": evaluation.state["history"]}
    return {"checkpoint": str(ckpt), "final_checkpoint": str(result.checkpoint_path),
            "iterations_done": int(result.iterations_done), "skipped_nonfinite": int(result.skipped_nonfinite),
            "final_losses": {k: float(v) for k, v in result.final_losses.items()},
            "stopped": result.stop_reason == "stopped", "early_stopped": result.stop_reason == "early",
            "metrics": metrics, "notes": notes,
            "engine": {"world_size": result.world_size, "steps_per_epoch": result.steps_per_epoch,
                       "epoch_steps": list(result.epoch_steps), "params_sha256": _params_digest(model)}}


def _params_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal on every rank of a healthy DDP run."""
    import hashlib

    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def should_activate(project, metrics: Optional[dict], parent: Optional[int]) -> tuple[bool, str]:
    """Whether a new version with validation ``metrics`` (or None) trained from ``parent`` should
    become the active version, and why (one line): a model that only helps.

    * with validation AP: active when its segm AP beats the active version's (or, with no active
      version or one without validation AP, when it is above :data:`ACTIVATION_FLOOR_AP`);
    * without (too few labelled images for a split): active when it continued from the active
      version (same model, more data) or there is no active version.
    """
    active = project.active_model_version()
    ap = None if not metrics else float(metrics["segm"]["AP"])
    old = None
    if active is not None:
        old_metrics = project.model_version(active).metrics or {}
        old = float(old_metrics["segm"]["AP"]) if isinstance(old_metrics.get("segm"), dict) else None
    if ap is None:
        if active is None:
            return True, "the first model version: made active (no validation split yet to measure it)"
        if parent == active:
            return True, (f"continued from the active version {active} with more data: made active (no "
                          "validation split yet)")
        return False, (f"not made active: no validation data shows it is better than the active version {active} "
                       "(choose it in Model > Models to use it)")
    if old is None:
        if ap > ACTIVATION_FLOOR_AP:
            return True, f"validation segm AP {ap:.3f}: made active"
        return False, (f"not made active: validation segm AP {ap:.3f} is not above {ACTIVATION_FLOOR_AP:g} (train "
                       "longer or label more images)")
    if ap > old:
        return True, f"validation segm AP {ap:.3f} beats the active version {active}'s {old:.3f}: made active"
    return False, (f"not made active: validation segm AP {ap:.3f} does not beat the active version {active}'s "
                   f"{old:.3f} (choose it in Model > Models to use it anyway)")


def register_train_result(project, spec: TrainSpec, outcome: dict) -> tuple[int, bool, str]:
    """Register the outcome's checkpoint as model version n+1 (parent, snapshot, metrics) and make
    it the active version when :func:`should_activate` says so. One transaction. Returns
    ``(version, made active, the reason in one line)``."""
    metrics = None
    if outcome.get("metrics"):
        metrics = dict(outcome["metrics"], iterations_done=outcome["iterations_done"],
                       stopped=outcome["stopped"], early_stopped=outcome["early_stopped"])
    snapshot = dict(spec.snapshot, init=spec.init_source)
    parent = spec.parent
    if parent is not None:
        try:
            project.model_version(parent)
        except AnnotatorError:  # the parent was deleted meanwhile
            parent = None
    activate, reason = should_activate(project, metrics, parent)
    before = project.active_model_version()
    with project.transaction():
        version = project.register_model_version(arch=spec.arch, checkpoint=Path(outcome["checkpoint"]),
                                                 categories=spec.categories, parent=parent, metrics=metrics,
                                                 data_snapshot=dict(snapshot, activation=reason))
        if activate:
            project.set_active_model_version(version)
        elif before is not None:   # pinned: "the newest version" would now be this one
            project.set_active_model_version(before)
        else:
            project.set_no_active_model_version()
    return version, activate, reason


def run_train_job(
    project,
    *,
    arch: Optional[str],
    init: str | None = None,
    iterations: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    input_size: int | None = None,
    device: str = "auto",
    out_dir: Path | None = None,
    augment: bool | str | None = True,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    val_fraction: float = 0.2,
    eval_every: int | None = None,
    patience: int | None = None,
    resume: str | Path | None = None,
    gpus: int = 1,
    max_minutes: float | None = None,
    max_detections: int | None = None,
) -> TrainJobResult:
    """Train ``arch`` on the project's accepted + edited annotations and register a model version.

    Args:
        project: an open :class:`annotator.project.Project`.
        arch: a name from ``segcore.modeling.registry.list_architectures()`` (None: the active
            version's, else :func:`default_architecture` for the device).
        init: a segcore checkpoint path or a model version id (digits) to start from; default
            the active model version of the same architecture (see the module doc for the order).
        iterations, batch_size, lr, input_size: overrides of the defaults in the module doc
            (``batch_size`` is per process with ``gpus > 1``).
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        out_dir: where checkpoints go; default ``<project>/models/<arch>-<timestamp>``.
        progress / should_stop: see :func:`execute_train_spec`.
        val_fraction: share of images held out for validation (stored split; 0 = none, then
            no early stopping and no metrics).
        eval_every / patience: validation period (iterations) and early-stopping patience
            (evaluations; 0 = never stop early).
        resume: a run folder (or its checkpoint) to continue with its own plan.
        gpus: > 1 runs the same plan with ``torchrun`` on that many processes (DDP).
        augment: ``"photo"`` (True), ``"topdown"`` (adds vertical flips and 90-degree rotations:
            microscopy, aerial) or None / False.
        max_minutes: wall-clock training budget (the schedule is laid out from the measured
            speed); default :data:`CPU_DEFAULT_MINUTES` on a CPU when ``iterations`` is None too.
        max_detections: detections per image (None: from the data, :mod:`segcore.data.recipe`).

    Returns:
        :class:`TrainJobResult`.

    Raises:
        AnnotatorError: unknown architecture, no reviewed annotations, bad init checkpoint,
            unwritable output folder, diverged or failed run.
    """
    spec = prepare_train_job(project, arch=arch, init=init, iterations=iterations, batch_size=batch_size, lr=lr,
                             input_size=input_size, device=device, out_dir=out_dir, augment=augment, seed=seed,
                             val_fraction=val_fraction, eval_every=eval_every, patience=patience, resume=resume,
                             max_minutes=max_minutes, max_detections=max_detections, log=log)
    if int(gpus) > 1:
        from annotator.jobs.distributed import launch_torchrun

        outcome = launch_torchrun(spec, nproc=int(gpus), progress=progress, should_stop=should_stop, log=log)
    else:
        outcome = execute_train_spec(spec, progress=progress, should_stop=should_stop, log=log)
    version, activated, reason = register_train_result(project, spec, outcome)
    log(f"model version {version}: {reason}")
    return TrainJobResult(
        checkpoint=Path(outcome["checkpoint"]), model_version=version, iterations_done=outcome["iterations_done"],
        skipped_nonfinite=outcome["skipped_nonfinite"], final_losses=outcome["final_losses"],
        notes=[spec.init_note] + list(outcome.get("notes", [])), metrics=outcome["metrics"],
        stopped=outcome["stopped"], early_stopped=outcome["early_stopped"], init_source=spec.init_source,
        parent=spec.parent, details=outcome, activated=activated, activation=reason,
        skipped_unreadable=list(spec.snapshot.get("skipped_unreadable", [])))
