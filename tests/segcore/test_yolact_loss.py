"""YOLACT loss: matching, finiteness with empty / crowd targets, backward, a short overfit."""

from __future__ import annotations

import math

import pytest
import torch

from segcore.modeling import build_model
from segcore.modeling.yolact import match_priors, yolact_loss
from segcore.modeling.yolact.priors import make_priors
from segcore.ops import point_form

LOSS_KEYS = {"loss_cls", "loss_box", "loss_mask", "loss_semantic"}


def _target(boxes, classes, size, crowd=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros((len(boxes), size, size), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        masks[i, y1 + 2:y2 - 2, x1 + 2:x2 - 2] = 1  # a blob inside the box
    return {
        "gt_boxes": boxes,
        "gt_classes": torch.tensor(classes, dtype=torch.int64),
        "gt_masks": masks,
        "gt_crowd_boxes": torch.tensor(crowd or [], dtype=torch.float32).reshape(-1, 4),
    }


def test_match_priors_thresholds_forced_match_and_crowd():
    priors = make_priors([(4, 4)], [25], [1.0], 100)  # 16 square priors of side 25 px
    pboxes = point_form(priors)
    # gt 0 equals prior 5; gt 1 is tiny (IoU < 0.4 with every prior) and must be forced onto one
    gt = torch.stack([pboxes[5], torch.tensor([0.70, 0.70, 0.74, 0.74])])
    crowd = torch.tensor([[0.0, 0.5, 0.5, 1.0]])  # covers priors 8, 9, 12, 13 completely
    conf_t, matched = match_priors(gt, torch.tensor([2, 0]), crowd, priors)
    assert conf_t[5] == 3 and matched[5] == 0
    forced = (conf_t == 1).nonzero().flatten()
    assert forced.numel() == 1 and matched[forced[0]] == 1
    assert forced[0] == 10  # the prior containing the tiny box
    assert conf_t[[8, 9, 12, 13]].tolist() == [-1, -1, -1, -1]
    assert (conf_t == 0).sum() == 16 - 2 - 4


def test_forced_match_resolves_shared_best_prior():
    priors = make_priors([(2, 2)], [50], [1.0], 100)
    # both gts prefer prior 0; the better one gets it, the other its next best prior
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.05, 0.05, 0.45, 0.6]])
    conf_t, matched = match_priors(gt, torch.tensor([0, 1]), torch.zeros(0, 4), priors,
                                   pos_iou_threshold=0.99, neg_iou_threshold=0.0)
    assert conf_t[0] == 1 and matched[0] == 0
    assert (conf_t == 2).sum() == 1


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("yolact_tiny", num_classes=3, input_size=160)


def test_loss_finite_with_empty_and_crowd_targets(tiny):
    tiny.train()
    out = tiny(torch.rand(3, 3, 160, 160) * 255)
    targets = [
        _target([[10, 20, 90, 110], [60, 60, 150, 140]], [0, 2], 160),
        _target([], [], 160),  # no gt at all
        _target([[30, 30, 100, 100]], [1], 160, crowd=[[0, 0, 160, 50]]),
    ]
    losses = yolact_loss(out, targets)
    assert set(losses) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert all(v.item() > 0 for v in losses.values())
    subsampled = yolact_loss(out, targets, masks_to_train=1)  # random positive per image, rescaled
    assert torch.isfinite(subsampled["loss_mask"]) and subsampled["loss_mask"].item() > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in tiny.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    tiny.zero_grad()


def test_loss_all_empty_batch_is_finite_with_zero_box_and_mask(tiny):
    tiny.train()
    out = tiny(torch.rand(2, 3, 160, 160) * 255)
    targets = [_target([], [], 160), _target([], [], 160, crowd=[[0, 0, 80, 80]])]
    losses = yolact_loss(out, targets)
    assert losses["loss_box"].item() == 0.0
    assert losses["loss_mask"].item() == 0.0
    assert losses["loss_cls"].item() == 0.0  # OHEM takes 3 x 0 negatives
    assert math.isfinite(losses["loss_semantic"].item()) and losses["loss_semantic"].item() > 0
    sum(losses.values()).backward()
    tiny.zero_grad()


def test_loss_rejects_bad_class_index(tiny):
    tiny.train()
    out = tiny(torch.rand(1, 3, 160, 160) * 255)
    with pytest.raises(ValueError, match="target 0"):
        yolact_loss(out, [_target([[10, 10, 50, 50]], [3], 160)])
    with pytest.raises(ValueError, match="2 targets"):
        yolact_loss(out, [_target([], [], 160)] * 2)


def test_sgd_steps_reduce_loss_on_one_image():
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=2, input_size=96)
    model.train()
    image = torch.rand(1, 3, 96, 96) * 255
    targets = [_target([[8, 15, 50, 70], [45, 40, 90, 90]], [0, 1], 96)]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    totals = []
    for _ in range(6):
        losses = yolact_loss(model(image), targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.8 * totals[0], totals
