"""Labeling-effort benchmark: simulate a person correcting pre-labels round by round (``annotator simulate``).

Each round: pre-label the next K images (file order of the COCO file) with the current model
version (round 1 has none: everything is drawn), "correct" them to the ground truth, accept them,
fine-tune (:func:`annotator.jobs.train.run_train_job`, continuing from the current version, with
the data-driven recipe and a time budget per round: ``max_minutes``), and go on.

Correcting one image, with the predictions at or above ``score_threshold`` (what the person sees
with the score slider there), highest score first, each matched greedily to the unmatched
non-crowd ground-truth instance of highest mask IoU (one ``pycocotools.mask.iou`` matrix per image):

* IoU >= ``accept_iou`` and the right category -> **accepted** unchanged (one click);
* IoU >= ``fix_iou`` (0.5) otherwise (mask or category wrong) -> **fixed**: mask and category
  replaced by the ground truth, state ``edited``;
* no ground truth left at IoU >= ``fix_iou`` -> **deleted** (a false positive);
* ground truth instances nobody matched -> **drawn** from scratch (human, accepted).

Crowd regions are added as they are (not counted). ``accepted_without_edit_pct`` = accepted /
ground-truth instances x 100. The **estimated labeling time** per image (and as % of drawing every
instance of those images by hand, since images differ in how many they hold) follows a stated cost model
(:class:`CostModel`, every figure configurable): drawing a polygon instance from scratch ~79 s (the
mean time per COCO instance outline, Lin et al., "Microsoft COCO", ECCV 2014, Sec. 3.3), fixing a
predicted mask 15 s, accepting one 1 s, deleting one 2 s; our assumptions except the first.

``category`` keeps one category of the ground truth (e.g. ``person`` of COCO) and only the images
that hold it: a narrow-domain project made from a broad data set.

**Held-out images** (``heldout``, default K): the first images that no round labels (after the
last round's, in file order) are pre-labelled by the model each round trains and matched to their
ground truth by the same rules, without correcting them: ``accepted_heldout_pct`` measures every
round's model on the same images, so it shows what the model learned apart from how hard the next
round's images are (``accepted_without_edit_pct`` measures the model of the round before on that
round's own images). Empty when no image is left after the rounds.

Output: one printed row per round, ``OUT/rounds.csv`` and ``OUT/rounds.png`` (matplotlib). The
project lives in ``OUT/project`` (made from ``--images``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from annotator import masks
from annotator.errors import AnnotatorError

COLUMNS = ["round", "images_labeled", "gt_instances", "predictions_shown", "accepted_without_edit", "fixed",
           "deleted", "drawn", "accepted_without_edit_pct", "edits_per_image", "est_seconds_per_image",
           "est_pct_of_drawing", "model_version", "arch", "train_iterations", "train_seconds", "segm_AP_remaining",
           "remaining_images", "accepted_heldout_pct", "heldout_images"]


@dataclass(frozen=True)
class CostModel:
    """Seconds a person spends per instance: ``draw`` an outline from scratch (79: COCO's measured
    mean, Lin et al. 2014), ``fix`` a predicted mask (15), ``accept`` one (1), ``delete`` a false
    positive (2)."""

    draw: float = 79.0
    fix: float = 15.0
    accept: float = 1.0
    delete: float = 2.0

    def seconds(self, counts: dict) -> float:
        return (counts["drawn"] * self.draw + counts["fixed"] * self.fix + counts["accepted"] * self.accept
                + counts["deleted"] * self.delete)


@dataclass
class RoundRow:
    round: int
    images_labeled: int
    gt_instances: int
    predictions_shown: int
    accepted_without_edit: int
    fixed: int
    deleted: int
    drawn: int
    accepted_without_edit_pct: float
    edits_per_image: float
    est_seconds_per_image: float
    est_pct_of_drawing: float
    model_version: Optional[int]
    arch: str
    train_iterations: int
    train_seconds: float
    segm_AP_remaining: float
    remaining_images: int
    accepted_heldout_pct: float = float("nan")
    heldout_images: int = 0


def match_to_gt(shown: list[tuple[dict, int]], gts: list[dict], *, accept_iou: float = 0.7,
                fix_iou: float = 0.5) -> tuple[list[tuple[str, int]], np.ndarray]:
    """What the simulated person does with each shown prediction (the module docstring's rules).

    Args:
        shown: ``(rle, category_id)`` of the predictions shown, highest score first (``rle`` a
            compressed COCO RLE, counts str or bytes).
        gts: non-crowd ground truth, dicts with ``"rle"`` and ``"category_id"``.

    Returns:
        ``(decisions, free)``: per shown prediction ``("accepted" | "fixed", gt index)`` or
        ``("deleted", -1)``; ``free`` bool ``[len(gts)]``, the ground truth nobody matched (to draw).
    """
    from pycocotools import mask as mask_utils

    if shown and gts:
        ious = mask_utils.iou([masks.counts_to_bytes(r) for r, _ in shown],
                              [masks.counts_to_bytes(g["rle"]) for g in gts], [0] * len(gts))
    else:
        ious = np.zeros((len(shown), len(gts)))
    free = np.ones(len(gts), bool)
    decisions = []
    for k, (_, category_id) in enumerate(shown):
        row = np.where(free, ious[k], -1.0) if len(gts) else np.zeros(0)
        best = int(np.argmax(row)) if len(row) else -1
        best_iou = float(row[best]) if best >= 0 else 0.0
        if best >= 0 and best_iou >= accept_iou and category_id == gts[best]["category_id"]:
            decisions.append(("accepted", best))
        elif best >= 0 and best_iou >= fix_iou:
            decisions.append(("fixed", best))
        else:
            decisions.append(("deleted", -1))
            continue
        free[best] = False
    return decisions, free


def _shown(project, image_id: int, score_threshold: float) -> tuple[list, list]:
    """(predictions under review, highest score first; those at or above the slider)."""
    preds = sorted(project.annotations(image_id, review_states=["predicted"]), key=lambda a: -(a.score or 0))
    return preds, [a for a in preds if (a.score or 0.0) >= score_threshold]


def correct_image(project, image_id: int, gt_anns: list[dict], *, score_threshold: float,
                  accept_iou: float = 0.7, fix_iou: float = 0.5) -> dict:
    """Turn an image's predictions into its ground truth the way a person would; returns counts
    (``accepted``, ``fixed``, ``deleted``, ``drawn``, ``shown``, ``gt``).

    ``gt_anns``: COCO annotations of the image with ``"rle"`` (compressed) and the project's
    ``category_id``. One transaction. The image is marked done."""
    counts = {"accepted": 0, "fixed": 0, "deleted": 0, "drawn": 0, "shown": 0, "gt": 0}
    preds, shown = _shown(project, image_id, score_threshold)
    with project.transaction():
        hidden = [a.id for a in preds if (a.score or 0.0) < score_threshold]
        if hidden:  # below the slider: never seen, rejected with the image ("mark done")
            project.set_review_state(hidden, "rejected")
        counts["shown"] = len(shown)
        gts = [g for g in gt_anns if not g.get("iscrowd")]
        counts["gt"] = len(gts)
        decisions, free = match_to_gt([(a.rle, a.category_id) for a in shown], gts, accept_iou=accept_iou,
                                      fix_iou=fix_iou)
        for a, (what, j) in zip(shown, decisions):
            if what == "accepted":
                project.set_review_state([a.id], "accepted")
            elif what == "fixed":
                if a.category_id != gts[j]["category_id"]:
                    project.set_category(a.id, gts[j]["category_id"])
                project.update_mask(a.id, rle=gts[j]["rle"], review_state="edited")
            else:
                project.delete_annotations([a.id])
            counts[what] += 1
        for j in np.flatnonzero(free):
            project.add_annotation(image_id, gts[j]["category_id"], rle=gts[j]["rle"], source="human",
                                   review_state="accepted")
            counts["drawn"] += 1
        for g in gt_anns:
            if g.get("iscrowd"):
                project.add_annotation(image_id, g["category_id"], rle=g["rle"], iscrowd=1, source="human",
                                       review_state="accepted")
        project.set_done([image_id])
    return counts


def heldout_accepted(project, image_ids: list[int], per_image: dict[int, list[dict]], *, score_threshold: float,
                     accept_iou: float = 0.7, fix_iou: float = 0.5) -> tuple[int, int]:
    """``(accepted, ground-truth instances)`` over images whose predictions are only read, not
    corrected: what :func:`correct_image` would accept there. The project is not changed."""
    accepted = total = 0
    for image_id in image_ids:
        gts = [g for g in per_image[image_id] if not g.get("iscrowd")]
        _, shown = _shown(project, image_id, score_threshold)
        decisions, _ = match_to_gt([(a.rle, a.category_id) for a in shown], gts, accept_iou=accept_iou,
                                   fix_iou=fix_iou)
        accepted += sum(what == "accepted" for what, _ in decisions)
        total += len(gts)
    return accepted, total


def _load_gt(coco_json: Path, project, images_dir: Path, category: Optional[str] = None
             ) -> tuple[list[int], dict[int, list[dict]], list[dict], bool]:
    """(project image ids in COCO order, {image id: annotations with rle}, categories, whether the
    polygons were moved); with
    ``category`` only that category and the images that hold it. Polygons traced in pixel-centre
    coordinates are moved by +0.5 px first (``segcore.data.records.pixel_centre_polygons``, as
    ``annotator.io.coco.import_coco`` does)."""
    try:
        gt = json.loads(Path(coco_json).read_text(encoding="utf-8"))
        images, anns, cats = gt["images"], gt["annotations"], gt["categories"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnnotatorError(f"{coco_json}: not a COCO instances file ({exc})") from None
    if category is not None:
        cats = [c for c in cats if str(c["name"]) == category]
        if not cats:
            raise AnnotatorError(f"--category: {category!r} is not a category of {coco_json}")
        anns = [a for a in anns if int(a["category_id"]) == int(cats[0]["id"])]
        holding = {int(a["image_id"]) for a in anns if not a.get("iscrowd")}
        images = [im for im in images if int(im["id"]) in holding]
    have = {c.id for c in project.categories()}
    for c in cats:
        if int(c["id"]) not in have:
            project.add_category(str(c["name"]), id=int(c["id"]))
    by_coco = {}
    for im in images:
        rec = project.image_by_path(Path(images_dir) / im["file_name"])
        if rec is None:
            raise AnnotatorError(f"{coco_json}: images.file_name: {im['file_name']} not found in {images_dir}")
        by_coco[int(im["id"])] = (rec.id, int(im["height"]), int(im["width"]))
    per_image: dict[int, list[dict]] = {v[0]: [] for v in by_coco.values()}
    from segcore.data.records import pixel_centre_polygons, shift_polygons

    # marching-squares polygons (pycococreator & co.) to COCO's pixel-edge coordinates, as import_coco does
    centre = pixel_centre_polygons(a["segmentation"] for a in anns)
    for a in anns:
        if int(a["image_id"]) not in by_coco:
            continue
        pid, h, w = by_coco[int(a["image_id"])]
        per_image[pid].append({"category_id": int(a["category_id"]), "iscrowd": int(a.get("iscrowd", 0)),
                               "rle": masks.to_rle(shift_polygons(a["segmentation"]) if centre else a["segmentation"],
                                                   h, w)})
    order = [by_coco[int(im["id"])][0] for im in images]
    return order, per_image, [{"id": int(c["id"]), "name": str(c["name"])} for c in cats], centre


def _eval_records(project, image_ids, per_image) -> list[dict]:
    recs = []
    for i in image_ids:
        im = project.image(i)
        anns = [{"bbox": masks.rle_bbox(g["rle"]), "category_id": g["category_id"], "segmentation": g["rle"],
                 "iscrowd": g["iscrowd"], "area": float(masks.rle_area(g["rle"]))} for g in per_image[i]]
        recs.append({"file_name": str(project.image_path(i)), "image_id": i, "height": im.height,
                     "width": im.width, "annotations": anns})
    return recs


def write_plot(rows: list[RoundRow], path: Path, *, title: str = "") -> None:
    """PNG (matplotlib): % of instances accepted without edit (the round's images and, where
    there are any, the held-out images), and the estimated labeling minutes
    per image per round, with pre-labels and (dashed) drawing every instance of those images (the
    images of a round differ in how many instances they hold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.round for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot(x, [r.accepted_without_edit_pct for r in rows], "o-", color="tab:blue",
            label="the round's images (model of the round before)")
    if any(r.heldout_images for r in rows):
        a1.plot(x, [r.accepted_heldout_pct for r in rows], "^--", color="tab:green",
                label=f"{rows[0].heldout_images} held-out images (model of the round)")
        a1.legend(fontsize=7, loc="upper left")
    a1.set_xlabel("round")
    a1.set_ylabel("% of instances accepted without edit")
    a1.set_ylim(0, 100)
    a1.set_xticks(x)
    a1.grid(alpha=0.3)
    a2.plot(x, [r.est_seconds_per_image / 60 for r in rows], "s-", color="tab:orange", label="with pre-labels")
    a2.plot(x, [r.est_seconds_per_image / 60 * 100.0 / r.est_pct_of_drawing if r.est_pct_of_drawing else float("nan")
                for r in rows], "--", color="gray", label="drawing every instance")
    a2.legend(fontsize=8)
    a2.set_xlabel("round")
    a2.set_ylabel("estimated labeling minutes per image")
    a2.set_ylim(0, None)
    a2.set_xticks(x)
    a2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise AnnotatorError(f"--out: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def simulate(coco_json: Path, images_dir: Path, *, rounds: int, per_round: int, out_dir: Path,
             arch: Optional[str] = None, device: str = "auto", precision: str = "auto",
             iterations: Optional[int] = None,
             max_minutes: Optional[float] = None, input_size: Optional[int] = None,
             batch_size: Optional[int] = None, score_threshold: float = 0.3, accept_iou: float = 0.7,
             fix_iou: float = 0.5, max_detections: Optional[int] = None, category: Optional[str] = None,
             costs: CostModel = CostModel(), val_fraction: float = 0.2, eval_remaining: bool = False,
             heldout: Optional[int] = None, seed: int = 0, print_fn: Callable[[str], None] = print,
             log: Callable[[str], None] = lambda m: None) -> list[RoundRow]:
    """Run the benchmark; returns the rows (also printed and written to ``out_dir``).

    Args (beyond the module docstring): ``arch`` None = the recipe's choice for the data and the
    device (:func:`annotator.jobs.train.prepare_train_job`); ``max_minutes`` training budget per
    round (None with ``iterations`` None: the train job's default, 5 minutes on a CPU);
    ``max_detections`` None = from the data; ``eval_remaining`` also measures segm AP of each
    round's model on the images not labeled yet (slow on a CPU: off by default); ``precision``
    the pre-labelling predictor's (``"auto"``: :func:`segcore.predictor.default_precision` of the
    device, printed once; ``"fp32"``, ``"bf16"``, ``"fp16"``); ``heldout`` held-out images (module
    docstring; None = ``per_round``, 0 = none).

    Raises:
        AnnotatorError: bad arguments, GT images missing from ``images_dir``, unwritable ``out_dir``.
    """
    from annotator.jobs.prelabel import prelabel
    from annotator.jobs.train import evaluate_model, run_train_job
    from annotator.project import Project
    from segcore.checkpoints import load_checkpoint
    from segcore.predictor import Predictor

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnnotatorError(f"--out: cannot create {out_dir}: {exc.strerror}") from None
    if rounds < 1 or per_round < 1:
        raise AnnotatorError("--rounds / --per-round: must be at least 1")
    if heldout is not None and heldout < 0:
        raise AnnotatorError(f"--heldout: must be 0 or more, got {heldout}")
    if not 0.0 < fix_iou <= accept_iou <= 1.0:
        raise AnnotatorError(f"--accept-iou: need 0 < fix IoU ({fix_iou}) <= accept IoU ({accept_iou}) <= 1")
    from segcore.device import resolve_device
    from segcore.predictor import precision_reason

    try:
        pre_precision = precision_reason(precision, resolve_device(device))
    except ValueError as exc:
        raise AnnotatorError(f"--precision / --device: {exc}") from None
    proj_dir = out_dir / "project"
    if (proj_dir / "annotator.sqlite").exists():
        raise AnnotatorError(f"--out: {proj_dir} already holds a simulation; use another --out")
    project = Project.create(proj_dir, images_dir=Path(images_dir))
    rows: list[RoundRow] = []
    try:
        order, per_image, _, shifted = _load_gt(coco_json, project, Path(images_dir), category)
        if shifted:
            print_fn(f"{coco_json}: polygons traced in pixel-centre coordinates (marching squares): moved by +0.5 px "
                     "to COCO's pixel-edge coordinates")
        print_fn(pre_precision)  # the pre-labelling predictor's precision, once
        held = order[rounds * per_round:][:per_round if heldout is None else heldout]
        if held:
            print_fn(f"held out: {len(held)} images that no round labels, pre-labelled by each round's model")
        elif heldout != 0:
            print_fn("held out: no image is left after the rounds' images (--heldout column empty)")
        print_fn(f"{'round':>5} {'labeled':>7} {'accepted%':>9} {'fixed':>5} {'deleted':>7} {'drawn':>5} "
                 f"{'est. min/img':>12} {'% of drawing':>12} {'train':>8} {'iters':>6} {'held-out acc.%':>14}")
        version: Optional[int] = None
        predictor = None
        labeled = 0
        for r in range(1, rounds + 1):
            batch = order[labeled: labeled + per_round]
            if not batch:
                break
            if predictor is not None:
                prelabel(project, predictor, batch, score_threshold=min(0.05, score_threshold),
                         only_unreviewed=True, model_version=version)
            tot = {"accepted": 0, "fixed": 0, "deleted": 0, "drawn": 0, "shown": 0, "gt": 0}
            for image_id in batch:
                c = correct_image(project, image_id, per_image[image_id], score_threshold=score_threshold,
                                  accept_iou=accept_iou, fix_iou=fix_iou)
                for k in tot:
                    tot[k] += c[k]
            labeled += len(batch)
            t0 = time.perf_counter()
            res = run_train_job(project, arch=arch, iterations=iterations, max_minutes=max_minutes,
                                batch_size=batch_size, input_size=input_size, device=device, seed=seed,
                                val_fraction=val_fraction, max_detections=max_detections,
                                out_dir=out_dir / "models" / f"round{r}", log=log)
            train_s = time.perf_counter() - t0
            version = res.model_version
            predictor = Predictor.from_checkpoint(project.model_version(version).checkpoint, device=device,
                                                  precision=precision)
            held_pct = float("nan")
            if held:  # this round's model on the same held-out images every round (not corrected)
                prelabel(project, predictor, held, score_threshold=min(0.05, score_threshold),
                         only_unreviewed=True, model_version=version)
                acc, n_gt = heldout_accepted(project, held, per_image, score_threshold=score_threshold,
                                             accept_iou=accept_iou, fix_iou=fix_iou)
                held_pct = round(100.0 * acc / max(1, n_gt), 2)
            rest = order[labeled:]
            segm = float("nan")
            if rest and eval_remaining:
                model, info = load_checkpoint(res.checkpoint, device="cpu")
                ap = evaluate_model(model, _eval_records(project, rest, per_image), info["categories"],
                                    device=device if device != "auto" else "cpu")
                segm = round(ap["segm"]["AP"], 4)
            edits = tot["fixed"] + tot["deleted"] + tot["drawn"]
            row = RoundRow(round=r, images_labeled=labeled, gt_instances=tot["gt"], predictions_shown=tot["shown"],
                           accepted_without_edit=tot["accepted"], fixed=tot["fixed"], deleted=tot["deleted"],
                           drawn=tot["drawn"],
                           accepted_without_edit_pct=round(100.0 * tot["accepted"] / max(1, tot["gt"]), 2),
                           edits_per_image=round(edits / len(batch), 3),
                           est_seconds_per_image=round(costs.seconds(tot) / len(batch), 1),
                           est_pct_of_drawing=round(100.0 * costs.seconds(tot) / max(1e-9, tot["gt"] * costs.draw), 1),
                           model_version=version, arch=project.model_version(version).arch,
                           train_iterations=int(res.iterations_done), train_seconds=round(train_s, 1),
                           segm_AP_remaining=segm, remaining_images=len(rest),
                           accepted_heldout_pct=held_pct, heldout_images=len(held))
            rows.append(row)
            print_fn(f"{r:>5} {labeled:>7} {row.accepted_without_edit_pct:>9.1f} {row.fixed:>5} {row.deleted:>7} "
                     f"{row.drawn:>5} {row.est_seconds_per_image / 60:>12.1f} {row.est_pct_of_drawing:>12.1f} "
                     f"{train_s / 60:>6.1f} m "
                     f"{row.train_iterations:>6} {row.accepted_heldout_pct:>14.1f}")
            _write_csv(rows, out_dir / "rounds.csv")
    finally:
        project.close()
    what = f" of {category!r}" if category else ""
    folder = Path(coco_json).resolve().parent
    folder = folder.parent if folder.name == "annotations" else folder   # COCO's layout: the data set's name
    write_plot(rows, out_dir / "rounds.png",
               title=f"{folder.name}{what}: {per_round} images per round, accept at mask IoU "
                     f">= {accept_iou:g}")
    print_fn(f"wrote {out_dir / 'rounds.csv'} and {out_dir / 'rounds.png'}")
    return rows


def _write_csv(rows: list[RoundRow], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (v if not (isinstance(v, float) and math.isnan(v)) else "") for k, v in asdict(r).items()})
    tmp.replace(path)
