"""YOLACT++ pieces: registry, priors, mask-IoU loss, mask re-scoring in post-processing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segcore.modeling import build_model, list_architectures
from segcore.modeling.yolact import yolact_loss, yolact_postprocess


def _targets(size: int, *, small: bool = False):
    masks = torch.zeros(1, size, size, dtype=torch.uint8)
    box = (40, 30, 44, 34) if small else (40, 30, 200, 180)  # x1, y1, x2, y2
    masks[0, box[1]:box[3], box[0]:box[2]] = 1
    return [{"gt_boxes": torch.tensor([box], dtype=torch.float32), "gt_classes": torch.tensor([1]),
             "gt_masks": masks}]


def test_all_official_configurations_registered():
    assert {"yolact_r101_550", "yolact_r50_550", "yolact_darknet53_550", "yolact_r101_700", "yolact_plus_r50_550",
            "yolact_plus_r101_550", "yolact_plus_tiny", "yolact_tiny"} <= set(list_architectures())


def test_plus_priors_three_scales_three_ratios_no_square():
    model = build_model("yolact_plus_tiny", num_classes=3)
    assert model.priors.num_per_cell == 9 and not model.priors.square_anchors
    pri = model.priors([(40, 40), (20, 20), (10, 10), (5, 5), (3, 3)], "cpu")
    s = int(24 / 550 * 320)
    first = pri[:9, 2:] * 320  # cell (0, 0) of P3: for scale, for ratio
    expected = [(s * 2 ** (j / 3) * math.sqrt(r), s * 2 ** (j / 3) / math.sqrt(r)) for j in range(3) for r in (1, .5, 2)]
    assert torch.allclose(first, torch.tensor(expected), atol=1e-4)
    rebuilt = build_model("yolact_plus_tiny", num_classes=3, **model.arch_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="too small for the MaskIoU net"):
        build_model("yolact_plus_tiny", num_classes=3, input_size=160)


def test_plus_tiny_trains_and_maskiou_loss():
    torch.manual_seed(0)
    model = build_model("yolact_plus_tiny", num_classes=3, input_size=256)
    x = torch.rand(1, 3, 256, 256) * 255
    targets = _targets(256)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    totals = []
    for _ in range(2):
        losses = yolact_loss(model(x), targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_semantic", "loss_maskiou"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert totals[-1] < totals[0]
    # a gt mask of <= 25 proto pixels (official discard_mask_area 5*5) gives no mask-IoU sample
    losses = yolact_loss(model(x), _targets(256, small=True))
    assert float(losses["loss_maskiou"]) == 0.0


class _FixedIoU(nn.Module):
    def __init__(self, per_class):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(per_class))

    def forward(self, masks):
        return self.w.expand(masks.shape[0], -1)


def test_postprocess_rescoring_multiplies_class_score_by_maskiou():
    torch.manual_seed(1)
    model = build_model("yolact_tiny", num_classes=3, input_size=160).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 160, 160) * 255)
        out["conf"] = out["conf"] * 20
        plain = yolact_postprocess(out, [(120, 160)])[0]
        iou = [0.9, 0.2, 0.5]
        out["maskiou_net"] = _FixedIoU(iou)
        rescored = yolact_postprocess(out, [(120, 160)])[0]
        same = yolact_postprocess(out, [(120, 160)], rescore_mask=False)[0]
    assert len(plain) == len(rescored) > 0
    assert torch.equal(same.scores, plain.scores)
    expected = plain.scores * torch.tensor(iou)[plain.pred_classes]
    assert torch.allclose(rescored.scores, expected.sort(descending=True, stable=True).values)
    assert bool((rescored.scores[:-1] >= rescored.scores[1:]).all())
