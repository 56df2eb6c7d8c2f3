"""Labeling-effort benchmark: simulate a person correcting pre-labels round by round (``annotator simulate``).

Each round: pre-label the next K images (file order of the COCO file) with the current model
version (round 1 without a version has no predictions: everything is drawn), "correct" them to
the ground truth, accept them, fine-tune (:func:`annotator.jobs.train.run_train_job`, starting
from the current version), and evaluate the new version on the images not labeled yet.

Correcting one image, with the predictions at or above ``score_threshold`` (what the person sees
with the score slider there), highest score first, each matched greedily to the unmatched
non-crowd ground-truth instance of highest mask IoU:

* IoU >= ``accept_iou`` (0.85) and the right category -> **accepted** unchanged (one click,
  not counted as an edit);
* IoU >= ``fix_iou`` (0.5) otherwise (mask or category wrong) -> **fixed**: mask and category
  replaced by the ground truth, state ``edited``;
* no ground truth left at IoU >= 0.5 -> **deleted**;
* ground truth instances nobody matched -> **drawn** from scratch (human, accepted).

Crowd regions are added as they are (not counted). Edits per image = (fixed + deleted + drawn) /
images; ``accepted_without_edit_pct`` = accepted / ground-truth instances x 100.

Output: one printed row per round, ``OUT/rounds.csv`` and ``OUT/rounds.png`` (matplotlib when
installed, else drawn with OpenCV). The project lives in ``OUT/project`` (made from ``--images``).
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
           "deleted", "drawn", "accepted_without_edit_pct", "edits_per_image", "model_version",
           "segm_AP_remaining", "bbox_AP_remaining", "remaining_images", "train_seconds"]


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
    model_version: Optional[int]
    segm_AP_remaining: float
    bbox_AP_remaining: float
    remaining_images: int
    train_seconds: float


def correct_image(project, image_id: int, gt_anns: list[dict], *, score_threshold: float,
                  accept_iou: float = 0.85, fix_iou: float = 0.5) -> dict:
    """Turn an image's predictions into its ground truth the way a person would; returns counts.

    ``gt_anns``: COCO annotations of the image with ``"rle"`` (compressed) and the project's
    ``category_id``. One transaction. The image is marked done."""
    counts = {"accepted": 0, "fixed": 0, "deleted": 0, "drawn": 0, "shown": 0, "gt": 0}
    preds = sorted(project.annotations(image_id, review_states=["predicted"]), key=lambda a: -(a.score or 0))
    with project.transaction():
        hidden = [a.id for a in preds if (a.score or 0.0) < score_threshold]
        if hidden:  # below the slider: never seen, rejected with the image ("mark done")
            project.set_review_state(hidden, "rejected")
        shown = [a for a in preds if (a.score or 0.0) >= score_threshold]
        counts["shown"] = len(shown)
        gts = [g for g in gt_anns if not g.get("iscrowd")]
        counts["gt"] = len(gts)
        free = set(range(len(gts)))
        for a in shown:
            best, best_iou = None, 0.0
            for j in free:
                iou = masks.rle_iou(a.rle, gts[j]["rle"])
                if iou > best_iou:
                    best, best_iou = j, iou
            if best is not None and best_iou >= accept_iou and a.category_id == gts[best]["category_id"]:
                project.set_review_state([a.id], "accepted")
                counts["accepted"] += 1
                free.discard(best)
            elif best is not None and best_iou >= fix_iou:
                if a.category_id != gts[best]["category_id"]:
                    project.set_category(a.id, gts[best]["category_id"])
                project.update_mask(a.id, rle=gts[best]["rle"], review_state="edited")
                counts["fixed"] += 1
                free.discard(best)
            else:
                project.delete_annotations([a.id])
                counts["deleted"] += 1
        for j in sorted(free):
            project.add_annotation(image_id, gts[j]["category_id"], rle=gts[j]["rle"], source="human",
                                   review_state="accepted")
            counts["drawn"] += 1
        for g in gt_anns:
            if g.get("iscrowd"):
                project.add_annotation(image_id, g["category_id"], rle=g["rle"], iscrowd=1, source="human",
                                       review_state="accepted")
        project.set_done([image_id])
    return counts


def _load_gt(coco_json: Path, project, images_dir: Path) -> tuple[list[int], dict[int, list[dict]], list[dict]]:
    """(project image ids in COCO order, {image id: annotations with rle}, categories)."""
    try:
        gt = json.loads(Path(coco_json).read_text(encoding="utf-8"))
        images, anns, cats = gt["images"], gt["annotations"], gt["categories"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnnotatorError(f"{coco_json}: not a COCO instances file ({exc})") from None
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
    for a in anns:
        if int(a["image_id"]) not in by_coco:
            continue
        pid, h, w = by_coco[int(a["image_id"])]
        per_image[pid].append({"category_id": int(a["category_id"]), "iscrowd": int(a.get("iscrowd", 0)),
                               "rle": masks.to_rle(a["segmentation"], h, w)})
    order = [by_coco[int(im["id"])][0] for im in images]
    return order, per_image, [{"id": int(c["id"]), "name": str(c["name"])} for c in cats]


def _eval_records(project, image_ids, per_image) -> list[dict]:
    recs = []
    for i in image_ids:
        im = project.image(i)
        anns = [{"bbox": masks.rle_bbox(g["rle"]), "category_id": g["category_id"], "segmentation": g["rle"],
                 "iscrowd": g["iscrowd"], "area": float(masks.rle_area(g["rle"]))} for g in per_image[i]]
        recs.append({"file_name": str(project.image_path(i)), "image_id": i, "height": im.height,
                     "width": im.width, "annotations": anns})
    return recs


def write_plot(rows: list[RoundRow], path: Path) -> str:
    """PNG of % accepted without edit and segm AP on the remaining images per round; returns the backend."""
    x = [r.images_labeled for r in rows]
    acc = [r.accepted_without_edit_pct for r in rows]
    ap = [100 * r.segm_AP_remaining if not math.isnan(r.segm_AP_remaining) else float("nan") for r in rows]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, acc, "o-", label="% accepted without edit")
        ax.plot(x, ap, "s-", label="segm AP x100 on remaining images")
        ax.set_xlabel("images labeled")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return "matplotlib"
    except ImportError:
        pass
    import cv2

    W, H, m = 640, 400, 50
    img = np.full((H, W, 3), 255, np.uint8)
    cv2.rectangle(img, (m, m // 2), (W - m // 2, H - m), (0, 0, 0), 1)
    xmax = max(x) if x else 1
    ymax = max([v for v in acc + ap if not math.isnan(v)] + [1.0])

    def pt(xv, yv):
        return (int(m + (W - 1.5 * m) * xv / xmax), int(H - m - (H - 1.5 * m) * yv / ymax))

    for series, color, label, row in ((acc, (200, 80, 0), "% accepted without edit", 0),
                                      (ap, (0, 120, 220), "segm AP x100, remaining images", 1)):
        pts = [pt(a, b) for a, b in zip(x, series) if not math.isnan(b)]
        for p0, p1 in zip(pts, pts[1:]):
            cv2.line(img, p0, p1, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 4, color, -1, cv2.LINE_AA)
        cv2.putText(img, label, (m + 10, m + 20 * row + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    cv2.putText(img, f"images labeled (max {xmax})", (W // 2 - 80, H - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{ymax:.0f}", (5, m // 2 + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise AnnotatorError(f"--out: cannot write {path}")
    return "opencv"


def simulate(coco_json: Path, images_dir: Path, *, arch: str, rounds: int, per_round: int, out_dir: Path,
             device: str = "auto", iterations: Optional[int] = None, input_size: Optional[int] = None,
             batch_size: Optional[int] = None, score_threshold: float = 0.3, val_fraction: float = 0.2,
             eval_every: Optional[int] = None, seed: int = 0, print_fn: Callable[[str], None] = print,
             log: Callable[[str], None] = lambda m: None) -> list[RoundRow]:
    """Run the benchmark; returns the rows (also printed and written to ``out_dir``)."""
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
    proj_dir = out_dir / "project"
    if (proj_dir / "annotator.sqlite").exists():
        raise AnnotatorError(f"--out: {proj_dir} already holds a simulation; use another --out")
    project = Project.create(proj_dir, images_dir=Path(images_dir))
    rows: list[RoundRow] = []
    try:
        order, per_image, _ = _load_gt(coco_json, project, Path(images_dir))
        header = (f"{'round':>5} {'labeled':>7} {'accepted%':>9} {'edits/img':>9} {'fixed':>5} {'deleted':>7} "
                  f"{'drawn':>5} {'version':>7} {'segm AP rest':>12}")
        print_fn(header)
        version: Optional[int] = None
        labeled = 0
        for r in range(1, rounds + 1):
            batch = order[labeled: labeled + per_round]
            if not batch:
                break
            if version is not None:
                predictor = Predictor.from_checkpoint(project.model_version(version).checkpoint, device=device)
                prelabel(project, predictor, batch, score_threshold=min(0.05, score_threshold),
                         only_unreviewed=True, model_version=version)
            tot = {"accepted": 0, "fixed": 0, "deleted": 0, "drawn": 0, "shown": 0, "gt": 0}
            for image_id in batch:
                c = correct_image(project, image_id, per_image[image_id], score_threshold=score_threshold)
                for k in tot:
                    tot[k] += c[k]
            labeled += len(batch)
            t0 = time.perf_counter()
            res = run_train_job(project, arch=arch, iterations=iterations, batch_size=batch_size,
                                input_size=input_size, device=device, seed=seed, val_fraction=val_fraction,
                                eval_every=eval_every, out_dir=out_dir / "models" / f"round{r}", log=log)
            train_s = time.perf_counter() - t0
            version = res.model_version
            rest = order[labeled:]
            segm = bbox = float("nan")
            if rest:
                model, info = load_checkpoint(res.checkpoint, device="cpu")
                ap = evaluate_model(model, _eval_records(project, rest, per_image), info["categories"],
                                    device=device if device != "auto" else "cpu")
                segm, bbox = ap["segm"]["AP"], ap["bbox"]["AP"]
            edits = tot["fixed"] + tot["deleted"] + tot["drawn"]
            row = RoundRow(round=r, images_labeled=labeled, gt_instances=tot["gt"], predictions_shown=tot["shown"],
                           accepted_without_edit=tot["accepted"], fixed=tot["fixed"], deleted=tot["deleted"],
                           drawn=tot["drawn"],
                           accepted_without_edit_pct=round(100.0 * tot["accepted"] / max(1, tot["gt"]), 2),
                           edits_per_image=round(edits / len(batch), 3), model_version=version,
                           segm_AP_remaining=round(segm, 4) if not math.isnan(segm) else segm,
                           bbox_AP_remaining=round(bbox, 4) if not math.isnan(bbox) else bbox,
                           remaining_images=len(rest), train_seconds=round(train_s, 1))
            rows.append(row)
            print_fn(f"{r:>5} {labeled:>7} {row.accepted_without_edit_pct:>9.1f} {row.edits_per_image:>9.2f} "
                     f"{row.fixed:>5} {row.deleted:>7} {row.drawn:>5} {version:>7} "
                     f"{row.segm_AP_remaining:>12.4f}")
            _write_csv(rows, out_dir / "rounds.csv")
    finally:
        project.close()
    backend = write_plot(rows, out_dir / "rounds.png")
    print_fn(f"wrote {out_dir / 'rounds.csv'} and {out_dir / 'rounds.png'} ({backend})")
    return rows


def _write_csv(rows: list[RoundRow], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    tmp.replace(path)
