"""YOLACT post-processing (decode, Fast NMS, mask assembly) and the Instances structure."""

from __future__ import annotations

import pytest
import torch

from segcore.modeling import build_model
from segcore.modeling.yolact import yolact_postprocess
from segcore.modeling.yolact.priors import make_priors
from segcore.structures import Instances


def test_postprocess_model_outputs_at_original_size():
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=4, input_size=96).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 96) * 255, score_threshold=0.0)  # eval: detections in forward
    sizes = [(50, 70), (120, 90)]
    results = yolact_postprocess(out, sizes)
    raw = {k: v for k, v in out.items() if k != "detections"}  # raw outputs: detected here
    again = yolact_postprocess(raw, sizes, score_threshold=0.0)
    capped = yolact_postprocess(raw, sizes, score_threshold=0.0, max_detections=30)
    assert len(results) == 2
    for inst, same, few, (h, w) in zip(results, again, capped, sizes):
        assert torch.equal(inst.scores, same.scores) and torch.equal(inst.pred_masks, same.pred_masks)
        assert len(few) == 30 and torch.equal(few.scores, inst.scores[:30])
        assert isinstance(inst, Instances) and inst.image_size == (h, w)
        assert 0 < len(inst) <= model.max_detections
        assert inst.pred_masks.shape == (len(inst), h, w) and inst.pred_masks.dtype == torch.bool
        assert inst.pred_boxes.dtype == torch.float32 and inst.scores.dtype == torch.float32
        assert inst.pred_classes.dtype == torch.int64
        assert inst.pred_classes.min() >= 0 and inst.pred_classes.max() < 4
        boxes = inst.pred_boxes
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])


def _handmade_outputs():
    """One confident prior (class 1) whose mask is the left half of the prototype map."""
    priors = make_priors([(4, 4)], [40], [1.0], 100)  # P = 16, relative cxcywh
    num_priors, num_classes, k, hp = priors.shape[0], 2, 2, 8
    conf = torch.full((1, num_priors, num_classes + 1), -10.0)
    conf[..., 0] = 10.0  # background everywhere ...
    conf[0, 5] = torch.tensor([0.0, -2.0, 6.0])  # ... except prior 5, class index 1
    proto = torch.zeros(1, hp, hp, k)
    proto[0, :, : hp // 2, 0] = 10.0  # prototype 0: left half
    coef = torch.zeros(1, num_priors, k)
    coef[0, 5] = torch.tensor([1.0, 0.0])
    return {"loc": torch.zeros(1, num_priors, 4), "conf": conf, "mask_coef": coef, "proto": proto, "priors": priors}


def test_postprocess_handmade_detection():
    out = _handmade_outputs()
    inst = yolact_postprocess(out, [(200, 100)], second_score_threshold=True)[0]
    assert len(inst) == 1
    assert inst.pred_classes.tolist() == [1]
    # prior 5 = cell (row 1, col 1): centre (0.375, 0.375), side 0.4 -> x 0.175..0.575
    torch.testing.assert_close(inst.pred_boxes[0], torch.tensor([17.5, 35.0, 57.5, 115.0]))
    mask = inst.pred_masks[0]
    assert mask.shape == (200, 100)
    assert not mask[:, 60:].any() and not mask[150:].any()  # cropped to the box (+1 proto px)
    assert mask[50:100, 20:45].all()  # inside the box and the left-half prototype


def test_postprocess_no_second_threshold_reports_other_classes():
    out = _handmade_outputs()
    inst = yolact_postprocess(out, [(200, 100)])[0]
    assert inst.pred_classes.tolist() == [1, 0]  # same prior, other class with a tiny score
    assert inst.scores[1] < 0.05


def test_postprocess_nothing_above_threshold():
    out = _handmade_outputs()
    out["conf"][0, 5] = torch.tensor([10.0, -10.0, -10.0])
    inst = yolact_postprocess(out, [(30, 40)])[0]
    assert len(inst) == 0 and inst.pred_masks.shape == (0, 30, 40)
    with pytest.raises(ValueError):
        yolact_postprocess(out, [(30, 40), (30, 40)])


def test_instances_indexing_and_validation():
    inst = Instances(
        image_size=(4, 5),
        pred_boxes=torch.tensor([[0.0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]),
        scores=torch.tensor([0.9, 0.2, 0.6]),
        pred_classes=torch.tensor([0, 1, 2]),
        pred_masks=torch.zeros(3, 4, 5, dtype=torch.bool),
    )
    assert len(inst) == 3
    assert inst[inst.scores > 0.5].pred_classes.tolist() == [0, 2]
    assert len(inst[1]) == 1 and inst[-1].pred_classes.tolist() == [2]
    assert inst[torch.tensor([2, 0])].scores.tolist() == pytest.approx([0.6, 0.9])
    assert inst.to("cpu").image_size == (4, 5)
    with pytest.raises(ValueError):
        Instances((4, 5), torch.zeros(2, 4), torch.zeros(3), torch.zeros(3, dtype=torch.int64),
                  torch.zeros(3, 4, 5, dtype=torch.bool))
    with pytest.raises(IndexError):
        inst[3]
