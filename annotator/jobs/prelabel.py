"""Pre-labelling: run a segcore ``Predictor`` over project images and store its predictions.

Predictions land as source ``"model"``, review state ``"predicted"`` through
``Project.replace_predictions`` (one transaction per image, replacing that image's previous
predictions); human, accepted, rejected and edited annotations are never touched.

Batching: images go to the model ``batch_size`` at a time through ``predictor.predict_batch``
(one forward pass per batch; default 1 on CPU, where batching does not pay, and
:data:`CUDA_BATCH_SIZE` on CUDA). A batch is also closed before its images exceed
:data:`MAX_BATCH_PIXELS` original pixels in total, since the batch's full-resolution bool masks
are assembled on the device before they are copied back. While the model runs on one batch a
background thread decodes the next one (one batch ahead, so at most two batches of decoded
images are in memory). Results, progress and cancel behave as without batching: each image is
stored in its own transaction, ``progress`` is called after every image, ``should_stop`` is
checked before each batch is predicted (so a cancel takes effect after at most one batch).

Folders as they are: an image that cannot be read (empty, truncated, deleted since the project
was made, changed to another size) is skipped, marked ``unreadable`` in the project (the image
list shows it) and listed in :attr:`PrelabelSummary.unreadable`; the run goes on with the rest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project.images import load_rgb
from annotator.project.records import REVIEWED_STATES

__all__ = ["PrelabelSummary", "prelabel", "category_mapping", "default_batch_size", "CUDA_BATCH_SIZE",
           "MAX_BATCH_PIXELS"]

#: Default images per forward pass on a CUDA predictor (``batch_size=None``).
CUDA_BATCH_SIZE = 8

#: A batch is closed before the sum of its images' H x W would exceed this (8 Full-HD frames);
#: an image larger than that on its own still forms a batch of one.
MAX_BATCH_PIXELS = 8 * 1920 * 1080


@dataclass(frozen=True)
class PrelabelSummary:
    """``images`` predicted, ``instances`` stored, ``skipped`` (in progress or done), ``stopped``
    early, ``unreadable``: ``"<file>: <reason>"`` of the images that could not be read."""

    images: int
    instances: int
    skipped: int
    stopped: bool = False
    unreadable: tuple[str, ...] = ()


def category_mapping(project, checkpoint_categories: list[dict]) -> dict[int, int]:
    """Map the checkpoint's COCO category ids to project category ids, creating missing ones.

    Same id and name -> that category; id unknown to the project -> created with the
    checkpoint's id and name (or, if the name exists under another id, that category);
    same id with another name -> the project category of that name if there is one.

    Raises:
        AnnotatorError: a checkpoint category clashes with the project's (same id, other
            name, and no project category carries the checkpoint's name).
    """
    mapping: dict[int, int] = {}
    with project.transaction():
        for cat in checkpoint_categories:
            cid, name = int(cat["id"]), str(cat["name"])
            by_id = {c.id: c for c in project.categories()}
            by_name = {c.name: c for c in by_id.values()}
            if cid in by_id and by_id[cid].name == name:
                mapping[cid] = cid
            elif name in by_name:
                mapping[cid] = by_name[name].id
            elif cid not in by_id:
                mapping[cid] = project.add_category(name, id=cid).id
            else:
                raise AnnotatorError(
                    f"{project.db_path}: categories.name: the model's category {cid} is {name!r} but the "
                    f"project's category {cid} is {by_id[cid].name!r} and no project category is named "
                    f"{name!r}; rename or add the category first")
    return mapping


def _rles(prediction) -> list[dict]:
    if hasattr(prediction, "to_rle"):
        return [masks.counts_to_str(r) for r in prediction.to_rle()]
    return [masks.encode_mask(m) for m in np.asarray(prediction.masks)]


def default_batch_size(predictor) -> int:
    """Images per forward pass when ``prelabel(batch_size=None)``: :data:`CUDA_BATCH_SIZE` for a
    predictor with ``predict_batch`` whose ``device`` is CUDA, else 1."""
    device = getattr(predictor, "device", None)
    if hasattr(predictor, "predict_batch") and getattr(device, "type", str(device)) == "cuda":
        return CUDA_BATCH_SIZE
    return 1


def _batches(project, ids: list[int], batch_size: int) -> list[list[int]]:
    """Split ``ids`` in order into lists of at most ``batch_size`` images and (except for a single
    image) at most :data:`MAX_BATCH_PIXELS` pixels, using the sizes stored in the project."""
    if batch_size == 1:
        return [[i] for i in ids]
    out: list[list[int]] = []
    current: list[int] = []
    pixels = 0
    for image_id in ids:
        rec = project.image(image_id)
        n = int(rec.width) * int(rec.height)
        if current and (len(current) >= batch_size or pixels + n > MAX_BATCH_PIXELS):
            out.append(current)
            current, pixels = [], 0
        current.append(image_id)
        pixels += n
    if current:
        out.append(current)
    return out


def _load_all(paths: list) -> list:
    """Decode ``paths`` in order: an RGB array, or the ``AnnotatorError`` of an unreadable file."""
    out = []
    for path in paths:
        try:
            out.append(load_rgb(path))
        except AnnotatorError as exc:
            out.append(exc)
    return out


def prelabel(project, predictor, image_ids: Optional[Iterable[int]] = None, *, score_threshold: float = 0.05,
             only_unreviewed: bool = True, model_version: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None,
             should_stop: Optional[Callable[[], bool]] = None,
             batch_size: Optional[int] = None) -> PrelabelSummary:
    """Predict every image (default: all; ``only_unreviewed`` skips images a person has worked on:
    states ``in_progress`` and ``done``, :data:`annotator.project.records.REVIEWED_STATES`).

    Each image is read with OpenCV as ``[H, W, 3]`` uint8 RGB and passed to the predictor,
    ``batch_size`` images at a time: ``predictor.predict_batch(images, score_threshold=...)``
    (a list of ``Prediction``) when the predictor has it and the batch has several images, else
    ``predictor.predict(image, score_threshold=...)``. A ``Prediction`` has ``scores`` ``[N]``,
    ``category_ids`` ``[N]`` (the checkpoint's COCO ids, mapped with :func:`category_mapping`
    using ``predictor.categories``) and masks (``to_rle()``, compressed RLE at the image's size).
    Empty masks are dropped. ``progress(done, total)`` is called after each image is stored or
    skipped; ``should_stop()`` is checked before each batch (a stop keeps what is stored). An
    image that cannot be read, or whose stored size no longer matches its file, is skipped and
    marked unreadable (module docstring).

    Args:
        batch_size: images per forward pass; None = :func:`default_batch_size` (1 on CPU, 8 on
            CUDA). Predictors without ``predict_batch`` always run one image at a time. Results
            do not depend on it beyond floating-point noise of batched kernels (and, for the
            short-side families, the shared padding of a batch; see ``segcore.predictor``).

    Raises:
        AnnotatorError: category clash, or the model predicts a category it does not list.
        ValueError: ``batch_size`` < 1.
    """
    if batch_size is None:
        batch_size = default_batch_size(predictor)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not hasattr(predictor, "predict_batch"):
        batch_size = 1
    ids = [im.id for im in project.images()] if image_ids is None else [int(i) for i in image_ids]
    todo, skipped = [], 0
    for image_id in ids:
        if only_unreviewed and project.image_state(image_id) in REVIEWED_STATES:
            skipped += 1
        else:
            todo.append(image_id)
    mapping = category_mapping(project, list(predictor.categories)) if todo else {}
    done = instances = 0
    stopped = False
    unreadable: list[str] = []

    def skip(image_id: int, reason: str) -> None:
        nonlocal done
        project.mark_unreadable(image_id, reason)
        unreadable.append(f"{project.image(image_id).file_name}: {reason}")
        done += 1
        if progress is not None:
            progress(done, len(todo))

    def store(image_id: int, pred) -> None:
        nonlocal done, instances
        preds = []
        for rle, score, cid in zip(_rles(pred), np.asarray(pred.scores), np.asarray(pred.category_ids)):
            if int(cid) not in mapping:
                raise AnnotatorError(f"{project.db_path}: category_ids: the model predicted category {int(cid)} "
                                     "missing from its own categories list")
            if masks.rle_area(rle) == 0:
                continue
            preds.append({"category_id": mapping[int(cid)], "rle": rle,
                          "score": float(min(max(float(score), 0.0), 1.0))})
        instances += project.replace_predictions(image_id, preds, model_version)
        project.mark_readable(image_id)
        done += 1
        if progress is not None:
            progress(done, len(todo))

    batches = _batches(project, todo, batch_size)
    # paths are read here: the project's SQLite connection belongs to this thread
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prelabel-decode") as pool:
        pending = pool.submit(_load_all, [project.image_path(i) for i in batches[0]]) if batches else None
        for k, batch in enumerate(batches):
            if should_stop is not None and should_stop():
                stopped = True
                break
            loaded = pending.result()
            pending = (pool.submit(_load_all, [project.image_path(i) for i in batches[k + 1]])
                       if k + 1 < len(batches) else None)
            good = []
            for image_id, item in zip(batch, loaded):
                rec = project.image(image_id)
                if isinstance(item, AnnotatorError):
                    skip(image_id, str(item).split(": cannot read image: ", 1)[-1])
                elif item.shape[:2] != (rec.height, rec.width):
                    skip(image_id, f"changed on disk: now {item.shape[1]} x {item.shape[0]} px, the project has "
                                   f"{rec.width} x {rec.height}")
                else:
                    good.append((image_id, item))
            images = [x for _, x in good]
            if len(images) > 1:
                preds = predictor.predict_batch(images, score_threshold=score_threshold)
            else:
                preds = [predictor.predict(image, score_threshold=score_threshold) for image in images]
            for (image_id, _), pred in zip(good, preds):
                store(image_id, pred)
        if pending is not None:
            pending.cancel()
    return PrelabelSummary(images=done - len(unreadable), instances=instances, skipped=skipped, stopped=stopped,
                           unreadable=tuple(unreadable))
