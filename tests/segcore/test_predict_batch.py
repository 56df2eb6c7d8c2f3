"""Predictor.predict_batch: one forward for several images equals per-image predict (CPU, fp32).

Images: coco-tiny val2017, the lowest-id image of each size. ``SAME``: 480 x 640, 375 x 500 and
240 x 320 (different sizes, all 4:3, so every short-side resize gives the same padded canvas);
``MIXED``: 480 x 640, 427 x 640 and 640 x 480 (different padded sizes).

What "equal" means here, and why:

* YOLACT (every image resized to S x S) and the short-side families on ``SAME``: the masks come
  out identical and boxes / scores agree to ~1e-4 px / ~1e-7. The remaining difference is not from
  the batching code: with bit-identical input tensors, oneDNN picks another convolution kernel
  for batch 3 than for batch 1 (measured: ``fpn.pred_layers.0`` of yolact_tiny, same input, outputs
  differ by 1.5e-5), so the logits differ in the last bits. The tests compare with tolerances far
  above that noise (boxes 0.01 px, scores 1e-4, mask IoU 0.99) and pair detections by class and
  box rather than by rank, so a near-tie that swaps two ranks on another CPU does not fail them.
* short-side families on ``MIXED``: each image sits in a canvas larger than its own padded size.
  Convolutions near its right / bottom border then see computed features of the mean-padded area
  instead of zero padding, and FCOS has extra locations there, so detections near the border and
  the detection count can change (measured: 77 vs 78 BlendMask detections). The test proves that
  this is the only difference: each image alone, padded to the batch canvas, gives the batch's
  result.

Random-init tiny models (seed 0). Score threshold 0.05 for YOLACT (100 detections); 0.0 for the
FCOS families, whose random-init class scores are all below 0.05.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from segcore.data.transforms import D2_PIXEL_MEAN_RGB
from segcore.modeling.registry import build_model
from segcore.predictor import (PRECISIONS, Prediction, Predictor, default_precision, precision_reason,
                               resolve_precision)

SAME = [(480, 640), (375, 500), (240, 320)]
MIXED = [(480, 640), (427, 640), (640, 480)]
ARCHS = [("yolact_tiny", 0.05), ("blendmask_tiny", 0.0), ("centermask_tiny", 0.0)]


@pytest.fixture(scope="module")
def coco_images(coco_tiny):
    """``{(H, W): [H, W, 3] uint8 RGB}`` for the sizes of SAME and MIXED."""
    data = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())
    first = {}
    for im in sorted(data["images"], key=lambda i: i["id"]):
        first.setdefault((im["height"], im["width"]), im["file_name"])
    out = {}
    for hw in dict.fromkeys(SAME + MIXED):
        bgr = cv2.imread(str(coco_tiny / "val2017" / first[hw]))
        out[hw] = np.ascontiguousarray(bgr[:, :, ::-1])
        assert out[hw].shape[:2] == hw
    return out


def _predictor(arch: str, **kwargs) -> Predictor:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3)
    return Predictor(model, [{"id": 5 + i, "name": f"c{i}"} for i in range(3)], device="cpu", **kwargs)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _assert_equivalent(ref: Prediction, out: Prediction, *, box_atol=1e-2, score_atol=1e-4, min_iou=0.99):
    """Every detection of ``ref`` has a partner in ``out`` (same class, nearest box) with box,
    score and mask within the tolerances; one-to-one, except ties at the score cut-off."""
    assert out.masks.shape[1:] == ref.masks.shape[1:]
    assert abs(len(out) - len(ref)) <= 1, (len(ref), len(out))
    cut = min(ref.scores.min(initial=1.0), out.scores.min(initial=1.0)) + score_atol
    used, unmatched = set(), 0
    for i in range(len(ref)):
        cand = np.flatnonzero(out.category_ids == ref.category_ids[i])
        cand = np.array([j for j in cand if j not in used], dtype=np.int64)
        if cand.size == 0:
            assert ref.scores[i] <= cut, f"detection {i} (score {ref.scores[i]}) has no partner"
            unmatched += 1
            continue
        dist = np.abs(out.boxes[cand] - ref.boxes[i]).max(axis=1)
        j = int(cand[np.argmin(dist)])
        if dist.min() > box_atol:
            assert ref.scores[i] <= cut, f"detection {i}: nearest box {dist.min()} px away"
            unmatched += 1
            continue
        used.add(j)
        assert abs(float(out.scores[j]) - float(ref.scores[i])) <= score_atol
        assert _iou(ref.masks[i], out.masks[j]) >= min_iou
    assert unmatched <= 1


@pytest.mark.parametrize("arch,threshold", ARCHS)
def test_predict_batch_equals_predict(arch, threshold, coco_images):
    pred = _predictor(arch)
    images = [coco_images[hw] for hw in SAME]
    batched = pred.predict_batch(images, score_threshold=threshold)
    assert len(batched) == 3
    for image, out in zip(images, batched):
        ref = pred.predict(image, score_threshold=threshold)
        assert len(ref) > 0
        assert out.masks.shape == (len(out), *image.shape[:2]) and out.masks.dtype == bool
        assert out.boxes.dtype == np.float32 and out.scores.dtype == np.float32
        assert out.category_ids.dtype == np.int64
        _assert_equivalent(ref, out)


@pytest.mark.parametrize("arch,threshold", ARCHS[1:])
def test_mixed_sizes_differ_only_by_the_shared_canvas(arch, threshold, coco_images):
    pred = _predictor(arch)
    images = [coco_images[hw] for hw in MIXED]
    sizes = [im.shape[:2] for im in images]
    x, input_hw = pred.preprocess_batch(images)
    own = [pred.preprocess_batch([im]) for im in images]
    hmax = max(-(-h // 32) * 32 for (h, _) in input_hw)
    wmax = max(-(-w // 32) * 32 for (_, w) in input_hw)
    assert tuple(x.shape) == (3, 3, hmax, wmax)
    assert any(tuple(xi.shape[2:]) != (hmax, wmax) for xi, _ in own)  # the case under test
    batched = pred.predict_batch(images, score_threshold=threshold)
    for i, (xi, hwi) in enumerate(own):
        assert hwi[0] == input_hw[i]
        canvas = torch.tensor(D2_PIXEL_MEAN_RGB).view(1, 3, 1, 1).expand(1, 3, hmax, wmax).clone()
        canvas[:, :, :xi.shape[2], :xi.shape[3]] = xi
        canvas = canvas.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(canvas, x[i:i + 1], rtol=0, atol=0)  # the same network input
        alone = pred.predict_preprocessed(canvas, [sizes[i]], hwi, score_threshold=threshold)[0]
        _assert_equivalent(alone, batched[i])


@pytest.mark.parametrize("arch", ["yolact_tiny", "centermask_tiny"])
def test_single_upload_path_builds_the_same_input(arch, coco_images):
    """The CUDA preprocessing (one stacked / canvas uint8 upload) gives the per-image path's tensor."""
    pred = _predictor(arch)
    for hws in (MIXED, MIXED[:1]):
        images = [coco_images[hw] for hw in hws]
        ref, ref_hw = pred.preprocess_batch(images)
        pred._single_upload = True
        try:
            out, out_hw = pred.preprocess_batch(images)
        finally:
            pred._single_upload = False
        assert out_hw == ref_hw
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_predict_batch_edge_cases(coco_images):
    pred = _predictor("yolact_tiny")
    assert pred.predict_batch([]) == []
    good = coco_images[SAME[2]]
    with pytest.raises(ValueError, match=r"images\[1\]: image must be uint8"):
        pred.predict_batch([good, good.astype(np.float32)])
    with pytest.raises(ValueError, match="image must have shape"):
        pred.predict_batch([good[:, :, 0]])
    (one,) = pred.predict_batch((good,), score_threshold=0.05)  # any sequence
    assert one.masks.shape[1:] == good.shape[:2]


def test_precision_resolution(monkeypatch):
    import segcore.predictor

    assert "fp16" in PRECISIONS and "bf16" in PRECISIONS and "fp32" in PRECISIONS
    for native, cpu_default in ((False, "fp32"), (True, "bf16")):  # the CPU default follows native bf16
        monkeypatch.setattr(segcore.predictor, "native_bf16", lambda native=native: native)
        assert default_precision("cpu") == cpu_default and resolve_precision(None, "cpu") == cpu_default
        assert resolve_precision("auto", "cpu") == cpu_default and resolve_precision("fp32", "cpu") == "fp32"
        assert default_precision("cuda") == "fp16" and default_precision(torch.device("cuda", 1)) == "fp16"
        assert resolve_precision("auto", "cuda:0") == "fp16"
        pred = _predictor("yolact_tiny")
        assert pred.precision == cpu_default and pred.channels_last  # CPU defaults
        assert pred.precision_reason == precision_reason(None, "cpu")
    assert precision_reason(None, "cpu") == "precision: bf16 (CPU has native bf16; --precision fp32 to override)"
    assert precision_reason("fp32", "cpu") == "precision: fp32 (asked for; --precision bf16 to override)"
    assert precision_reason(None, "cuda") == "precision: fp16 (CUDA device; --precision fp32 to override)"
    monkeypatch.setattr(segcore.predictor, "native_bf16", lambda: False)
    assert precision_reason("auto", "cpu") == "precision: fp32 (CPU without native bf16; --precision bf16 to override)"
    assert resolve_precision("bf16", "cuda") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", "cpu")


@pytest.mark.real_precision_default
def test_cpu_default_precision_follows_the_machine():
    """Without the fp32 pin of tests/conftest.py the CPU default is bf16 exactly where
    ``native_bf16()`` holds."""
    from segcore.device import native_bf16

    assert default_precision("cpu") == ("bf16" if native_bf16() else "fp32")
    assert _predictor("yolact_tiny").precision == default_precision("cpu")


def test_centermask_roi_heads_under_autocast(coco_images):
    """bf16 autocast reaches CenterMask's RoI heads; outputs stay float32 and sensible."""
    image = coco_images[SAME[2]]
    ref = _predictor("centermask_tiny").predict(image, score_threshold=0.0)
    out = _predictor("centermask_tiny", precision="bf16").predict(image, score_threshold=0.0)
    assert len(out) > 0 and out.scores.dtype == np.float32 and out.boxes.dtype == np.float32
    assert out.masks.shape[1:] == image.shape[:2]
    assert abs(len(out) - len(ref)) <= max(3, len(ref) // 4)
