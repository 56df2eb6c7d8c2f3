"""Pre-labelling: run a segcore ``Predictor`` over project images and store its predictions.

Predictions land as source ``"model"``, review state ``"predicted"`` through
``Project.replace_predictions`` (one transaction per image, replacing that image's previous
predictions); human, accepted, rejected and edited annotations are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project.images import load_rgb


@dataclass(frozen=True)
class PrelabelSummary:
    """``images`` predicted, ``instances`` stored, ``skipped`` (already reviewed), ``stopped`` early."""

    images: int
    instances: int
    skipped: int
    stopped: bool = False


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


def prelabel(project, predictor, image_ids: Optional[Iterable[int]] = None, *, score_threshold: float = 0.05,
             only_unreviewed: bool = True, model_version: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None,
             should_stop: Optional[Callable[[], bool]] = None) -> PrelabelSummary:
    """Predict every image (default: all; ``only_unreviewed`` skips images in state ``reviewed``).

    Each image is read with OpenCV as ``[H, W, 3]`` uint8 RGB and passed to
    ``predictor.predict(image, score_threshold=...)``, whose ``Prediction`` has ``scores``
    ``[N]``, ``category_ids`` ``[N]`` (the checkpoint's COCO ids, mapped with
    :func:`category_mapping` using ``predictor.categories``) and masks (``to_rle()``, compressed
    RLE at the image's size). Empty masks are dropped. ``progress(done, total)`` is called after
    each image; ``should_stop()`` is checked between images (a stop keeps what is stored).

    Raises:
        AnnotatorError: unreadable image, category clash, or a mask whose size is not the image's.
    """
    ids = [im.id for im in project.images()] if image_ids is None else [int(i) for i in image_ids]
    todo, skipped = [], 0
    for image_id in ids:
        if only_unreviewed and project.image_state(image_id) == "reviewed":
            skipped += 1
        else:
            todo.append(image_id)
    mapping = category_mapping(project, list(predictor.categories)) if todo else {}
    done = instances = 0
    stopped = False
    for image_id in todo:
        if should_stop is not None and should_stop():
            stopped = True
            break
        image = load_rgb(project.image_path(image_id))
        pred = predictor.predict(image, score_threshold=score_threshold)
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
        done += 1
        if progress is not None:
            progress(done, len(todo))
    return PrelabelSummary(images=done, instances=instances, skipped=skipped, stopped=stopped)
