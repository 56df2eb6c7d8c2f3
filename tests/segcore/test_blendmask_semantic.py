"""BlendMask's auxiliary "thing" semantic loss (AdelaiDet BASIS_MODULE.LOSS_ON): targets made
from the instance masks as prepare_thing_sem_from_instance.py does, sampled as the official
F.interpolate(scale_factor=1/8), on by default for the official configurations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcore.modeling.blendmask.loss import blendmask_loss, thing_semantic_map
from segcore.modeling.registry import build_model


def test_thing_semantic_map_later_instance_wins_and_background_is_zero():
    masks = torch.zeros(3, 4, 5, dtype=torch.uint8)
    masks[0, 0:2, 0:3] = 1
    masks[1, 1:3, 2:5] = 1            # overlaps instance 0 at (1, 2)
    masks[2, 3, 0] = 1
    sem = thing_semantic_map(masks, torch.tensor([4, 0, 7]))
    expected = torch.tensor([[5, 5, 5, 0, 0],
                             [5, 5, 1, 1, 1],
                             [0, 0, 1, 1, 1],
                             [8, 0, 0, 0, 0]])
    assert sem.dtype == torch.int64 and torch.equal(sem, expected)
    assert torch.equal(thing_semantic_map(torch.zeros(0, 2, 3), torch.zeros(0, dtype=torch.int64)),
                       torch.zeros(2, 3, dtype=torch.int64))


def test_official_configs_default_to_the_semantic_loss():
    for arch in ("blendmask_r50", "blendmask_r101", "blendmask_550_r50", "blendmask_rt_r50"):
        from segcore.modeling.registry import ARCHITECTURES
        import inspect
        assert inspect.signature(ARCHITECTURES[arch]).parameters["semantic_loss"].default is True, arch
    assert build_model("blendmask_tiny", num_classes=3).semantic_loss is False


def test_semantic_loss_value_and_gradient_on_tiny_model():
    torch.manual_seed(0)
    model = build_model("blendmask_tiny", num_classes=3, semantic_loss=True).train()
    x = torch.rand(1, 3, 128, 160) * 255
    masks = torch.zeros(2, 128, 160, dtype=torch.uint8)
    masks[0, 10:70, 20:90] = 1
    masks[1, 60:120, 80:150] = 1
    targets = [{"gt_boxes": torch.tensor([[20., 10., 90., 70.], [80., 60., 150., 120.]]),
                "gt_classes": torch.tensor([2, 0]), "gt_masks": masks}]
    out = model(x)
    losses = blendmask_loss(out, targets, sizes_of_interest=model.sizes_of_interest)
    seg = out["seg_logits"].float()
    assert seg.shape == (1, 4, 16, 20)
    sem = thing_semantic_map(masks, targets[0]["gt_classes"])
    ref = F.interpolate(sem[None, None].float(), scale_factor=1 / 8)[0, 0].long()   # the official sampling
    expected = F.cross_entropy(seg, ref[None]) * 0.3
    assert torch.allclose(losses["loss_semantic"], expected, atol=1e-6)
    losses["loss_semantic"].backward()
    g = model.basis_module.seg_head[0].weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
