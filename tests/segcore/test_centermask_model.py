"""CenterMask assembled and registered: names, family, raw outputs, losses (incl. no gt),
post-processing shapes, Predictor on a short-side-padded input, checkpoint rebuild."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.modeling.fcos.d2_input import scale_and_clip_boxes
from segcore.modeling.registry import build_model, family_of, list_architectures

NAMES = ["centermask_v39", "centermask_v57", "centermask_v99", "centermask_r50", "centermask_lite_v19",
         "centermask_lite_v39", "centermask_tiny"]


def test_registered_with_paper_defaults():
    assert set(NAMES) <= set(list_architectures())
    for name, size, ch in [("centermask_v39", 800, 256), ("centermask_lite_v19", 600, 128),
                           ("centermask_r50", 800, 256)]:
        with torch.device("meta"):
            m = build_model(name, num_classes=80)
        assert m.info.input_size == size and m.backbone.out_channels == ch and m.max_detections == 50
        assert family_of(m).name == "centermask" and m.info.input_policy == "short_side"
        assert m.info.arch_kwargs["norm"] == "BN"


def _targets(h=180, w=256):
    masks = torch.zeros(1, h, w, dtype=torch.uint8)
    masks[0, 20:100, 30:120] = 1
    return [{"gt_boxes": torch.tensor([[30.0, 20.0, 120.0, 100.0]]), "gt_classes": torch.tensor([1]),
             "gt_masks": masks, "input_hw": (h, w)},
            {"gt_boxes": torch.zeros(0, 4), "gt_classes": torch.zeros(0, dtype=torch.int64),
             "gt_masks": torch.zeros(0, h, w, dtype=torch.uint8), "input_hw": (h, w)}]


def test_outputs_losses_and_postprocess():
    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=3)
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.rand(2, 3, 192, 256) * 255)
    out = model(torch.rand(2, 3, 192, 256) * 255, _targets())
    assert set(out["roi"]) == {"mask_logits", "gt_classes", "mask_targets", "maskiou", "maskiou_targets"}
    assert out["logits"].shape == (2, 24 * 32 + 12 * 16 + 6 * 8 + 3 * 4 + 2 * 2, 3)
    assert [tuple(f.shape) for f in out["features"]] == [(2, 64, 24, 32), (2, 64, 12, 16), (2, 64, 6, 8)]
    losses = family_of(model).make_loss(model)(out, _targets())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0
    assert model.roi_heads.maskiou_head.maskiou.weight.grad.abs().sum() > 0
    empty = family_of(model).make_loss(model)(model(torch.rand(1, 3, 192, 256) * 255, _targets()[1:]),
                                              _targets()[1:])
    assert float(empty["loss_mask"].detach()) == 0.0 and float(empty["loss_maskiou"].detach()) == 0.0
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 192, 256) * 255, image_sizes=[(180, 256)], score_threshold=0.0)
        res = family_of(model).make_postprocess(model)(out, [(360, 512)], input_sizes=[(180, 256)])
    inst = res[0]
    assert 0 < len(inst) <= 50 and inst.pred_masks.shape == (len(inst), 360, 512)
    # sorted by mask score = box score x predicted IoU (not clamped: this untrained MaskIoU head
    # predicts negative IoUs), the FCOS box scores alongside
    assert (inst.scores[:-1] >= inst.scores[1:]).all() and ((inst.box_scores > 0) & (inst.box_scores <= 1)).all()
    det = out["detections"][0]
    assert torch.equal(det["scores"], det["scores"].sort(descending=True).values)    # the FCOS order
    boxes, keep = scale_and_clip_boxes(det["boxes"], (360, 512), (180, 256))
    order = det["mask_scores"][keep].sort(descending=True, stable=True).indices
    assert torch.equal(inst.scores, det["mask_scores"][keep][order]) and torch.equal(inst.pred_boxes, boxes[order])
    assert torch.equal(inst.box_scores, det["scores"][keep][order])
    assert (inst.pred_boxes[:, 0::2] <= 512).all() and (inst.pred_boxes[:, 1::2] <= 360).all()
    assert (inst.pred_boxes >= 0).all()


def test_rejects_unpadded_input():
    model = build_model("centermask_tiny", num_classes=2)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 100, 128))


def test_predictor_and_checkpoint_roundtrip(tmp_path):
    from segcore.checkpoints import save_checkpoint
    from segcore.predictor import Predictor

    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=2, input_size=160, max_size=256)
    cats = [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]
    path = tmp_path / "m.pth"
    save_checkpoint(path, model, categories=cats)
    pred = Predictor.from_checkpoint(path, device="cpu")
    assert pred.model.info.arch == "centermask_tiny" and pred.model.info.input_size == 160
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    p = pred.predict(image, score_threshold=0.0)
    assert p.masks.shape[1:] == (120, 200) and len(p.scores) <= 50
    assert set(p.category_ids.tolist()) <= {1, 3}
