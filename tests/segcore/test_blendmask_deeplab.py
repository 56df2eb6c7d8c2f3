"""BlendMask's DeepLabV3+ bottom module (paper Sec. 3.2 / Sec. 4): bases at stride 4 from P3 and
P5 only, registered as blendmask_r50_deeplab, trainable (loss falls on a tiny config)."""

from __future__ import annotations

import torch

from segcore.modeling.blendmask.basis import DeepLabV3PlusBasis
from segcore.modeling.blendmask.loss import blendmask_loss
from segcore.modeling.registry import build_model


def test_decoder_shapes_and_inputs():
    torch.manual_seed(0)
    m = DeepLabV3PlusBasis(64, channels=32, num_bases=4).eval()
    assert m.low_reduce[0].out_channels == 48 and m.decoder[0][0].in_channels == 64 + 48
    p3 = torch.randn(2, 64, 12, 16, requires_grad=True)
    p4 = torch.randn(2, 64, 6, 8, requires_grad=True)
    p5 = torch.randn(2, 64, 3, 4, requires_grad=True)
    bases = m([p3, p4, p5])
    assert bases.shape == (2, 4, 24, 32)                     # stride 4 for an input of 96 x 128
    bases.sum().backward()
    assert p3.grad.abs().sum() > 0 and p5.grad.abs().sum() > 0 and p4.grad is None   # P3 + P5 only


def test_registered_r50_variant_builds_and_runs():
    model = build_model("blendmask_r50_deeplab", num_classes=5).eval()
    keys = model.state_dict().keys()
    assert any(k.startswith("basis_module.low_reduce.") for k in keys)
    assert not any(k.startswith("basis_module.refine.") for k in keys)
    assert model.basis_module.decoder[0][0].out_channels == 256 and model.semantic_loss
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 128, 160) * 255)
    assert out["bases"].shape == (1, 4, 32, 40) and torch.isfinite(out["bases"]).all()


def test_tiny_deeplab_bottom_trains():
    torch.manual_seed(0)
    model = build_model("blendmask_tiny", num_classes=2, bottom="deeplabv3plus").train()
    x = torch.rand(1, 3, 128, 128) * 255
    masks = torch.zeros(1, 128, 128, dtype=torch.uint8)
    masks[0, 30:90, 40:100] = 1
    targets = [{"gt_boxes": torch.tensor([[40., 30., 100., 90.]]), "gt_classes": torch.tensor([1]),
                "gt_masks": masks}]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    first = None
    for _ in range(25):
        losses = blendmask_loss(model(x), targets, sizes_of_interest=model.sizes_of_interest)
        total = sum(losses.values())
        first = float(losses["loss_mask"]) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert float(losses["loss_mask"]) < 0.7 * first
