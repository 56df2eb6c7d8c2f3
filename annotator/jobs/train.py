"""Train job: fine-tune (or train from scratch) a segcore model on a project's reviewed annotations.

Shared by ``annotator train`` and, later, the GUI's Train button. Training data are the
project's annotations in review state ``accepted`` or ``edited`` (human corrections and accepted
predictions); predictions still under review and rejected ones never train the model.

Defaults for small data, chosen so a user tunes nothing (documented in README "Training"):

* iterations: ``clamp(50 x images, 200, 20000)`` when not given;
* batch size 8 on CUDA, 4 on CPU. BN is frozen below 6 images per device, as the official
  ``train.py`` does, only when starting from trained weights (``--init``): from random init,
  frozen BN keeps its untrained statistics and training is unstable (seen in the overfit
  test), so BN is trained then;
* learning rate ``1e-3 x batch / 8`` (official YOLACT base lr scaled by batch, ``train.py``);
* warmup ``min(500, iterations // 10)`` iterations from 0.1 x lr;
* lr steps at 35 %, 75 %, 87.5 % and 93.75 % of the iterations (the official
  280k / 600k / 700k / 750k of 800k, ``data/config.py`` ``yolact_base_config``).

Weights to start from, in order: ``--init CKPT`` (a segcore checkpoint, or a project model
version), else random init (the job says so). Class-dependent tensors whose shape differs
(different category list) are left at random init and reported, as dbolya/yolact #36 advises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from annotator.errors import AnnotatorError


@dataclass
class TrainJobResult:
    """What a train job produced: the checkpoint, the registered model version, and notes."""

    checkpoint: Path
    model_version: int
    iterations_done: int
    skipped_nonfinite: int
    final_losses: dict
    notes: list[str] = field(default_factory=list)


def default_iterations(num_images: int) -> int:
    """Iterations for ``num_images`` training images: ``clamp(50 x n, 200, 20000)``."""
    return int(min(20000, max(200, 50 * num_images)))


def lr_steps(iterations: int) -> tuple[int, ...]:
    """Step-decay milestones at the official YOLACT fractions of the schedule (x0.1 each)."""
    return tuple(int(iterations * f) for f in (0.35, 0.75, 0.875, 0.9375))


def load_init_weights(model: torch.nn.Module, path: Path) -> list[str]:
    """Copy every tensor of a segcore checkpoint at ``path`` whose name and shape match.

    Args:
        model: the freshly built model.
        path: a segcore checkpoint (``torch.load(weights_only=True)``; never runs code).

    Returns:
        Notes for the user: how many tensors were copied, which were skipped for shape.

    Raises:
        AnnotatorError: the file cannot be read or is not a segcore checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or a pickle with code: refuse
        raise AnnotatorError(f"{path}: cannot load checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise AnnotatorError(f"{path}: model: not a segcore checkpoint (no 'model' state_dict)")
    own = model.state_dict()
    matched, skipped = {}, []
    for name, tensor in ckpt["model"].items():
        if name in own and own[name].shape == tensor.shape:
            matched[name] = tensor
        elif name in own:
            skipped.append(name)
    model.load_state_dict(matched, strict=False)
    notes = [f"initialised {len(matched)}/{len(own)} tensors from {path}"]
    if skipped:
        notes.append(f"left at random init (shape differs, e.g. other categories): {', '.join(skipped)}")
    return notes


def run_train_job(
    project,
    *,
    arch: str,
    init: str | None = None,
    iterations: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    input_size: int | None = None,
    device: str = "auto",
    out_dir: Path | None = None,
    augment: bool = True,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
) -> TrainJobResult:
    """Train ``arch`` on the project's accepted + edited annotations and register a model version.

    Args:
        project: an open :class:`annotator.project.Project`.
        arch: a name from ``segcore.modeling.registry.list_architectures()``.
        init: a segcore checkpoint path or a model version id (digits) to start from.
        iterations, batch_size, lr, input_size: overrides of the defaults in the module doc.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        out_dir: where checkpoints go; default ``<project>/models/<arch>-<timestamp>``.
        progress / should_stop: forwarded to :func:`segcore.engine.train`.

    Returns:
        :class:`TrainJobResult`.

    Raises:
        AnnotatorError: unknown architecture, no reviewed annotations, bad init checkpoint,
            unwritable output folder.
    """
    from segcore.checkpoints import save_checkpoint  # noqa: F401  (import check for a clear error)
    from segcore.device import resolve_device
    from segcore.engine import train
    from segcore.modeling.registry import build_model, list_architectures

    if arch not in list_architectures():
        raise AnnotatorError(f"--arch: unknown architecture {arch!r}; known: {', '.join(list_architectures())}")
    records, categories = project.training_records()
    if not records:
        raise AnnotatorError(
            f"{project.db_path}: annotations: no accepted or edited annotations to train on "
            "(import COCO or review predictions first)"
        )
    dev = resolve_device(device)
    parent = None
    init_path: Path | None = None
    if init is not None:
        if str(init).isdigit():
            parent = int(init)
            init_path = Path(project.model_version(parent).checkpoint_path)
        else:
            init_path = Path(init)
        if not init_path.is_file():
            raise AnnotatorError(f"--init: checkpoint not found: {init_path}")

    kwargs = {} if input_size is None else {"input_size": int(input_size)}
    model = build_model(arch, num_classes=len(categories), **kwargs)
    notes = load_init_weights(model, init_path) if init_path else [
        "no --init given and no pretrained weights: training starts from random init"
    ]
    for n in notes:
        log(n)

    iterations = int(iterations or default_iterations(len(records)))
    batch_size = int(batch_size or (8 if dev.type == "cuda" else 4))
    lr = float(lr if lr is not None else 1e-3 * batch_size / 8)
    if out_dir is None:
        out_dir = project.root / "models" / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnnotatorError(f"--out: cannot create {out_dir}: {exc.strerror}") from None

    log(
        f"training {arch} on {len(records)} images / {len(categories)} categories, "
        f"{iterations} iterations, batch {batch_size}, lr {lr:g}, device {dev}"
    )
    result = train(
        model,
        records,
        categories,
        iterations=iterations,
        batch_size=batch_size,
        lr=lr,
        warmup_iters=min(500, iterations // 10),
        steps=lr_steps(iterations),
        augment=augment,
        device=str(dev),
        seed=seed,
        out_dir=out_dir,
        freeze_bn=None if init_path else False,
        progress=progress,
        should_stop=should_stop,
    )
    snapshot = {"annotation_ids": sorted(a["id"] for r in records for a in r["annotations"] if "id" in a),
                "images": len(records)}
    version = project.register_model_version(
        arch=arch,
        checkpoint=Path(result.checkpoint_path),
        categories=categories,
        parent=parent,
        metrics=None,
        data_snapshot=snapshot,
    )
    return TrainJobResult(
        checkpoint=Path(result.checkpoint_path),
        model_version=version,
        iterations_done=result.iterations_done,
        skipped_nonfinite=result.skipped_nonfinite,
        final_losses=dict(result.final_losses),
        notes=notes,
    )
