"""YOLACT++ pieces: registry, priors, mask-IoU loss, mask re-scoring in post-processing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segcore.modeling import build_model, list_architectures
from segcore.modeling.yolact import yolact_detect, yolact_loss, yolact_postprocess


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
    expected = [(s * 2 ** (j / 3) * math.sqrt(r), s * 2 ** (j / 3) / math.sqrt(r))
                for j in range(3) for r in (1, .5, 2)]
    assert torch.allclose(first, torch.tensor(expected), atol=1e-4)
    rebuilt = build_model("yolact_plus_tiny", num_classes=3, **model.info.arch_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="too small for the MaskIoU net"):
        build_model("yolact_plus_tiny", num_classes=3, input_size=160)


def test_plus_tiny_trains_maskiou_inside_forward():
    """model(images, targets) runs the re-scoring net on the matched positives' masks; the loss has
    no parameters; eight SGD steps on one image roughly halve every loss term."""
    torch.manual_seed(0)
    model = build_model("yolact_plus_tiny", num_classes=3, input_size=256)
    x = torch.rand(1, 3, 256, 256) * 255
    targets = _targets(256)
    with pytest.raises(ValueError, match="needs targets"):
        model(x)
    opt = torch.optim.SGD(model.parameters(), lr=2e-3, momentum=0.9)
    history = []
    for _ in range(8):
        out = model(x, targets)
        assert out["maskiou"]["pred"].shape == out["maskiou"]["target"].shape and out["maskiou"]["pred"].numel() > 0
        losses = yolact_loss(out, targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_semantic", "loss_maskiou"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.maskiou_net.parameters())
        opt.step()
        history.append({k: float(v) for k, v in losses.items()})
    for key in ("loss_cls", "loss_box", "loss_mask", "loss_maskiou"):
        assert history[-1][key] < 0.7 * history[0][key], (key, history[0][key], history[-1][key])
    # a gt mask of <= 25 proto pixels (official discard_mask_area 5*5) gives no mask-IoU sample, but
    # the net still runs in forward (on an empty batch), so DDP sees every parameter used
    out = model(x, _targets(256, small=True))
    assert out["maskiou"]["pred"].numel() == 0
    losses = yolact_loss(out, _targets(256, small=True))
    assert float(losses["loss_maskiou"]) == 0.0
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.maskiou_net.parameters())


def test_maskiou_net_trains_a_class_whose_output_starts_dead():
    """The official net ends in a ReLU: a class channel that starts negative gets no gradient and
    its mask scores stay 0 for good (what zeroed whole classes on small data). Training regresses
    the pre-activation instead, so that channel moves up and its inference output (ReLU, as
    officially) becomes usable."""
    torch.manual_seed(0)
    model = build_model("yolact_plus_tiny", num_classes=3, input_size=256)
    last = model.maskiou_net.maskiou_net[-1]
    with torch.no_grad():
        last.bias[1] = -5.0  # class 1 (the target's class) dead after the official ReLU
    masks = torch.rand(4, 1, 64, 64)
    assert float(model.maskiou_net(masks)[:, 1].max()) == 0.0  # inference output (official): dead
    x, targets = torch.rand(1, 3, 256, 256) * 255, _targets(256)
    opt = torch.optim.SGD(model.maskiou_net.parameters(), lr=0.004)
    for _ in range(10):
        loss = yolact_loss(model(x, targets), targets)["loss_maskiou"]
        opt.zero_grad()
        loss.backward()
        assert last.bias.grad[1] != 0  # the dead channel is trained
        opt.step()
    assert float(last.bias[1]) > -5.0 + 0.5


class _FixedIoU(nn.Module):
    def __init__(self, per_class):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(per_class))

    def forward(self, masks):
        return self.w.expand(masks.shape[0], -1)


def test_rescoring_multiplies_class_score_by_maskiou():
    torch.manual_seed(1)
    model = build_model("yolact_tiny", num_classes=3, input_size=160).eval()
    with torch.no_grad():
        out = model.network(torch.rand(1, 3, 160, 160) * 255)
        out["conf"] = out["conf"] * 20
        plain = yolact_detect(out)[0]
        iou = [0.9, 0.2, 0.5]
        rescored = yolact_detect(out, maskiou=_FixedIoU(iou))[0]
    assert len(plain["scores"]) == len(rescored["scores"]) > 0
    expected = plain["scores"] * torch.tensor(iou)[plain["classes"]]
    assert torch.allclose(rescored["scores"], expected.sort(descending=True, stable=True).values)
    assert bool((rescored["scores"][:-1] >= rescored["scores"][1:]).all())


def test_eval_forward_rescores_with_its_own_net():
    """A YOLACT++ model in eval mode returns detections already re-scored by its maskiou_net
    (inside forward); the post-processing only pastes them."""
    torch.manual_seed(2)
    model = build_model("yolact_plus_tiny", num_classes=3, input_size=256).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256) * 255, score_threshold=0.0)
        det = out["detections"][0]
        own = model.maskiou_net(det["masks"][:, None]).gather(1, det["classes"][:, None]).squeeze(1)
        plain = yolact_detect(out, score_threshold=0.0)[0]  # the class scores, same order before re-sorting
        inst = yolact_postprocess(out, [(120, 160)])[0]
    assert len(det["scores"]) > 0 and len(plain["scores"]) == len(det["scores"])
    for i in range(len(det["scores"])):  # pair each re-scored detection with its class-score twin
        j = int(((plain["boxes"] == det["boxes"][i]).all(1) & (plain["classes"] == det["classes"][i])).nonzero()[0, 0])
        assert torch.isclose(det["scores"][i], plain["scores"][j] * own[i], rtol=1e-5, atol=1e-7)
    assert bool((det["scores"][:-1] >= det["scores"][1:]).all())
    assert torch.equal(inst.scores, det["scores"]) and inst.pred_masks.shape[1:] == (120, 160)
