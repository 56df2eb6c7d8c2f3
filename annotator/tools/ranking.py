"""Active-learning order: which images to correct next (pure functions, no Qt, no model).

* **uncertainty** of an image = mean over its predicted instances of ``1 - score``; an image
  whose model predicted nothing gets ``empty_uncertainty`` (default 1.0: the most uncertain, so
  it comes **first**: the model found nothing there, the person must draw everything, and such
  images teach the model most; pass ``empty="last"`` to put them at the end instead, e.g. for
  folders with many truly empty frames).
* **disagreement** between two model versions on an image = ``1 - mean best mask IoU`` of each
  instance of one version with a same-category instance of the other, both directions averaged;
  an instance with no partner counts as IoU 0; both empty = 0 (they agree).
* :func:`rank_images` sorts image ids by ``uncertainty`` (and, when a previous version's
  predictions are given, by ``(1 - w) * uncertainty + w * disagreement``), most informative
  first; ties keep the input order (stable sort).

Predictions per image are lists of dicts with ``"score"`` (0..1), and for disagreement also
``"category_id"`` and ``"rle"`` (compressed COCO RLE).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

from annotator import masks
from annotator.project.records import REVIEWED_STATES

__all__ = ["image_uncertainty", "disagreement", "rank_images", "project_predictions", "rank_project_images"]


def image_uncertainty(scores: Iterable[float], *, empty_uncertainty: float = 1.0) -> float:
    """Mean of ``1 - score`` over the instances (``empty_uncertainty`` when there are none)."""
    s = [min(max(float(v), 0.0), 1.0) for v in scores]
    return empty_uncertainty if not s else sum(1.0 - v for v in s) / len(s)


def _mean_best_iou(a: Sequence[dict], b: Sequence[dict]) -> float:
    if not a:
        return 1.0 if not b else 0.0
    total = 0.0
    for x in a:
        ious = [masks.rle_iou(x["rle"], y["rle"]) for y in b if y["category_id"] == x["category_id"]]
        total += max(ious, default=0.0)
    return total / len(a)


def disagreement(current: Sequence[dict], previous: Sequence[dict]) -> float:
    """``1 - (mean best IoU of current in previous + mean best IoU of previous in current) / 2``."""
    if not current and not previous:
        return 0.0
    return 1.0 - 0.5 * (_mean_best_iou(current, previous) + _mean_best_iou(previous, current))


def rank_images(predictions: Mapping[int, Sequence[dict]], *, previous: Optional[Mapping[int, Sequence[dict]]] = None,
                disagreement_weight: float = 0.5, empty: str = "first") -> list[tuple[int, float]]:
    """Image ids with their informativeness, most informative first.

    Args:
        predictions: ``{image id: [{"score", "category_id", "rle"}, ...]}`` of the current version
            (every image to rank must be a key; an empty list = nothing predicted).
        previous: the same for the previous version; when given, disagreement is mixed in.
        disagreement_weight: w in ``(1 - w) * uncertainty + w * disagreement``.
        empty: ``"first"`` (default) or ``"last"``: where images without predictions go.

    Returns:
        ``[(image id, value), ...]`` sorted by value, descending (``empty="last"`` puts images
        without predictions after all others, in input order).
    """
    if empty not in ("first", "last"):
        raise ValueError(f"empty must be 'first' or 'last', got {empty!r}")
    scored, tail = [], []
    for image_id, preds in predictions.items():
        if not preds and empty == "last":
            tail.append((int(image_id), 0.0))
            continue
        value = image_uncertainty([p["score"] for p in preds])
        if previous is not None:
            value = (1.0 - disagreement_weight) * value + disagreement_weight * disagreement(
                preds, previous.get(image_id, []))
        scored.append((int(image_id), float(value)))
    scored.sort(key=lambda t: -t[1])
    return scored + tail


def project_predictions(project, image_ids: Optional[Iterable[int]] = None) -> dict[int, list[dict]]:
    """The stored ``predicted`` annotations of each image (default: images not yet reviewed)."""
    if image_ids is None:
        image_ids = [im.id for im in project.images() if im.state not in REVIEWED_STATES]
    out: dict[int, list[dict]] = {int(i): [] for i in image_ids}
    for ann in project.annotations(review_states=["predicted"]):
        if ann.image_id in out:
            out[ann.image_id].append({"score": ann.score if ann.score is not None else 0.0,
                                      "category_id": ann.category_id, "rle": ann.rle})
    return out


def rank_project_images(project, *, previous: Optional[Mapping[int, Sequence[dict]]] = None,
                        empty: str = "first") -> list[tuple[int, float]]:
    """:func:`rank_images` over the project's unreviewed images and their stored predictions
    (for the image list's "most informative first" order)."""
    return rank_images(project_predictions(project), previous=previous, empty=empty)
