"""bf16 on the CPU is safe on a *trained* model: a ``yolact_tiny`` trained from scratch inside the
test on nuclei-he (narrow domain, dense small objects), then predicted on held-out images in fp32
and in the bf16 policy of the predictor (backbone / FPN in bf16 autocast, heads, prototypes and
mask assembly in fp32: :mod:`segcore.ops.precision`).

Data: nuclei-he (``../shared/datasets/nuclei-he``, 24 H&E tiles of 1000 x 1000, one category),
sorted by image id; training on the first 20 with 320 x 320 crops at scale 1 (``CropPolicy``,
no augmentation). Evaluation on the last 4 tiles (never seen in training): 320 x 320 crops (the
corners, 16 crops) enlarged x3 to 960 x 960 (``cv2.INTER_LINEAR``), so that the predictor
shrinks them back to the model's 320 input and pastes the masks at 3x the network resolution, as
it does for a 1000 x 1000 tile: at 1x a mask of ~80 px (the 5th percentile of the nuclei) loses
IoU 0.012 per flipped pixel, and pixel counting, not precision, would decide the percentile.

Matching: the fp32 detections with score >= 0.3 (confident ones, as a person sees them), in
descending score, each to the not yet matched bf16 detection of the same class with the highest
box IoU, accepted at box IoU >= 0.5 (greedy; no Hungarian solver is installed). Asserted: at least
99 % of them are matched, the matched masks have IoU >= 0.98 against fp32 on average and >= 0.97
at the 5th percentile, their scores are within 0.02, and classes agree (one class in nuclei-he,
so matching within the class is the check). The same comparison for whole-network bf16 (every
``fp32_call`` made a plain call) is printed next to it, not asserted. The model must have learned (>= 50
confident detections, best score > 0.5), so the test cannot pass on an empty output.

Skipped where ``segcore.device.native_bf16()`` is False: bf16 is emulated there, much slower, and
not the default (``segcore.predictor.default_precision``), so there is nothing to protect.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segcore.device import native_bf16

NUCLEI = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nuclei-he"
ITERATIONS = 120
CROP = 320
ENLARGE = 3
MIN_SCORE = 0.3

pytestmark = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX): "
                                "bf16 is emulated, slower than fp32 and not the default here")


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def match_predictions(ref, other, min_score: float = MIN_SCORE, min_box_iou: float = 0.5):
    """Greedy matching of ``ref``'s detections with score >= ``min_score`` (descending) to
    ``other``'s of the same category by box IoU. Returns ``(mask_ious, score_diffs, unmatched)``."""
    ious, diffs, unmatched = [], [], 0
    used = np.zeros(len(other), dtype=bool)
    keep = np.nonzero(ref.scores >= min_score)[0]
    overlap = _box_iou(ref.boxes[keep], other.boxes) if len(keep) and len(other) else None
    for row, i in enumerate(keep):
        if overlap is None:
            unmatched += 1
            continue
        cand = np.where(~used & (other.category_ids == ref.category_ids[i]), overlap[row], -1.0)
        j = int(np.argmax(cand))
        if cand[j] < min_box_iou:
            unmatched += 1
            continue
        used[j] = True
        a, b = ref.masks[i], other.masks[j]
        union = np.logical_or(a, b).sum()
        ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
        diffs.append(abs(float(ref.scores[i]) - float(other.scores[j])))
    return np.asarray(ious), np.asarray(diffs), unmatched


@pytest.fixture(scope="module")
def nuclei():
    from segcore.data import load_coco_records

    if not (NUCLEI / "annotations.json").is_file():
        pytest.fail(f"nuclei-he not found at {NUCLEI}: this test needs ../shared beside the repo")
    records, categories = load_coco_records(NUCLEI / "annotations.json", NUCLEI / "images")
    records = sorted(records, key=lambda r: r["image_id"])
    return records[:20], records[20:], categories


def _held_crops(records) -> list[np.ndarray]:
    crops = []
    for r in records:
        image = cv2.cvtColor(cv2.imread(str(r["file_name"])), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        for y in (0, h - CROP):
            for x in (0, w - CROP):
                crop = np.ascontiguousarray(image[y:y + CROP, x:x + CROP])
                crops.append(cv2.resize(crop, None, fx=ENLARGE, fy=ENLARGE, interpolation=cv2.INTER_LINEAR))
    return crops


@pytest.mark.slow
def test_bf16_policy_matches_fp32_on_trained_yolact(nuclei, tmp_path):
    from segcore.data.crops import CropPolicy
    from segcore.engine import train
    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    train_records, held, categories = nuclei
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=len(categories), input_size=CROP)
    t0 = time.perf_counter()
    result = train(model, train_records, categories, iterations=ITERATIONS, batch_size=4, lr=2e-3,
                   warmup_iters=20, augment=False, freeze_bn=False, device="cpu", seed=0, out_dir=tmp_path,
                   crop=CropPolicy(size=CROP, augment=None))
    train_s = time.perf_counter() - t0
    assert result.iterations_done == ITERATIONS and result.skipped_nonfinite == 0

    crops = _held_crops(held)
    fp32 = Predictor(model, categories, device="cpu", precision="fp32")
    bf16 = Predictor(model, categories, device="cpu", precision="bf16")
    ref = [fp32.predict(c) for c in crops]
    out = [bf16.predict(c) for c in crops]
    import segcore.modeling.yolact.model as yolact_model

    with pytest.MonkeyPatch.context() as mp:  # whole-network bf16, for the printed comparison only
        mp.setattr(yolact_model, "fp32_call", lambda fn, *a, **k: fn(*a, **k))
        whole = [bf16.predict(c) for c in crops]
    w_ious = np.concatenate([match_predictions(a, b)[0] for a, b in zip(ref, whole)])
    w_diffs = np.concatenate([match_predictions(a, b)[1] for a, b in zip(ref, whole)])

    scores = np.concatenate([p.scores for p in ref])
    confident = int((scores >= MIN_SCORE).sum())
    ious, diffs, unmatched = [], [], 0
    for a, b in zip(ref, out):
        i, d, u = match_predictions(a, b)
        ious.append(i)
        diffs.append(d)
        unmatched += u
    ious, diffs = np.concatenate(ious), np.concatenate(diffs)
    print(f"trained {ITERATIONS} it in {train_s:.1f} s; {len(crops)} held crops, {confident} fp32 detections "
          f">= {MIN_SCORE} (best {scores.max():.3f}); bf16 matched {len(ious)}, unmatched {unmatched}; mask IoU "
          f"mean {ious.mean():.4f} p5 {np.percentile(ious, 5):.4f} min {ious.min():.4f}; score diff max "
          f"{diffs.max():.4f} mean {diffs.mean():.4f}; whole-network bf16: mask IoU mean {w_ious.mean():.4f} "
          f"p5 {np.percentile(w_ious, 5):.4f}, score diff max {w_diffs.max():.4f}")
    assert confident >= 50 and scores.max() > 0.5  # it learned: the comparison is not vacuous
    assert unmatched <= 0.01 * confident
    assert ious.mean() >= 0.98 and np.percentile(ious, 5) >= 0.97, (ious.mean(), np.percentile(ious, 5))
    assert diffs.max() <= 0.02
