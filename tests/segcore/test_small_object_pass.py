"""The predictor's second pass at a larger scale for images of small objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.modeling.registry import build_model
from segcore.predictor import (ADAPT_MAX_FACTOR, ADAPT_MIN_COUNT, ADAPT_SCORE, ADAPT_TARGET_PX, Prediction,
                               Predictor, small_object_factor)


def _prediction(sides, scores) -> Prediction:
    """Square boxes of the given sides (image pixels) with the given scores."""
    sides = np.asarray(sides, np.float32)
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], axis=1)
    return Prediction(boxes=boxes, scores=np.asarray(scores, np.float32),
                      category_ids=np.ones(len(sides), np.int64), masks=np.zeros((len(sides), 4, 4), bool))


def test_factor_brings_the_median_confident_object_to_the_target():
    # median side 20 px in the image, scale 1.5 -> 30 px at the input -> 40 / 30
    pred = _prediction([18, 20, 22] * 5, [0.9] * 15)
    assert small_object_factor(pred, 1.5) == pytest.approx(ADAPT_TARGET_PX / 30.0)
    # detections under ADAPT_SCORE do not count: the 15 confident ones are 30 px at scale 1
    mixed = _prediction([30] * 15 + [5] * 40, [0.8] * 15 + [ADAPT_SCORE / 2] * 40)
    assert small_object_factor(mixed, 1.0) == pytest.approx(ADAPT_TARGET_PX / 30.0)


def test_factor_is_capped_and_none_when_objects_are_large_or_too_few():
    assert small_object_factor(_prediction([4] * 20, [0.9] * 20), 1.0) == ADAPT_MAX_FACTOR
    assert small_object_factor(_prediction([38] * 20, [0.9] * 20), 1.0) is None  # 40 / 38 < 1.1
    assert small_object_factor(_prediction([60] * 20, [0.9] * 20), 1.0) is None
    few = ADAPT_MIN_COUNT - 1
    assert small_object_factor(_prediction([10] * few, [0.9] * few), 1.0) is None
    assert small_object_factor(_prediction([10] * 20, [ADAPT_SCORE - 0.01] * 20), 1.0) is None


def _scaled_predictor(input_scale: float, **kw) -> Predictor:
    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=1, input_scale=input_scale)
    return Predictor(model, [{"id": 1, "name": "cell"}], device="cpu", precision="fp32", **kw)


def _record_passes(predictor: Predictor, first_sides: list[float]) -> list:
    """Replace the network with a stub: the first pass returns boxes of ``first_sides`` (image
    pixels), later passes one box; records the input size of each pass."""
    calls = []

    def once(x, image_sizes, input_sizes, *, score_threshold):
        calls.append((tuple(x.shape[2:]), [tuple(s) for s in input_sizes]))
        sides = first_sides if len(calls) == 1 else [7.0]
        return [_prediction(sides, [0.9] * len(sides)) for _ in image_sizes]

    predictor._predict_once = once
    return calls


def test_second_pass_enlarges_the_input_and_replaces_the_predictions():
    pred = _scaled_predictor(2.0)
    calls = _record_passes(pred, [10.0] * 12)  # 20 px at the input: factor 40 / 20 = 2
    image = np.full((48, 64, 3), 128, np.uint8)
    out = pred.predict(image, score_threshold=0.05)
    assert [c[1] for c in calls] == [[(96, 128)], [(192, 256)]]
    assert calls[1][0] == (192, 256)  # already a multiple of 32
    assert len(out) == 1 and out.boxes[0, 2] == 7.0  # the second pass's predictions


def test_no_second_pass_for_large_objects_or_without_a_data_driven_scale():
    image = np.full((48, 64, 3), 128, np.uint8)
    large = _scaled_predictor(2.0)
    calls = _record_passes(large, [30.0] * 12)  # 60 px at the input
    assert len(large.predict(image)) == 12 and len(calls) == 1
    off = _scaled_predictor(2.0, adapt_scale=False)
    calls = _record_passes(off, [10.0] * 12)
    off.predict(image)
    assert len(calls) == 1
    torch.manual_seed(0)
    plain = Predictor(build_model("centermask_tiny", num_classes=1), [{"id": 1, "name": "cell"}], device="cpu",
                      precision="fp32")
    calls = _record_passes(plain, [2.0] * 12)
    plain.predict(image)
    assert len(calls) == 1


def test_second_pass_of_a_real_network_returns_masks_of_the_original_size():
    pred = _scaled_predictor(1.5)
    pred.model.max_detections = 40
    image = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    first = pred._predict_once
    sizes = []

    def once(x, image_sizes, input_sizes, *, score_threshold):
        sizes.append(tuple(input_sizes[0]))
        out = first(x, image_sizes, input_sizes, score_threshold=score_threshold)
        if len(sizes) == 1:  # pretend the first pass saw small objects
            out = [_prediction([6.0] * 12, [0.9] * 12)]
        return out

    pred._predict_once = once
    res = pred.predict(image, score_threshold=0.0)
    assert sizes == [(60, 84), (120, 168)]
    assert res.masks.shape[1:] == (40, 56) and len(res) == len(res.scores)
