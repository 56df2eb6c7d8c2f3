"""FCOS target assignment, losses against hand-computed values, empty-image losses."""

from __future__ import annotations

import math

import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from segcore.modeling.fcos import compute_locations, fcos_targets, size_ranges
from segcore.modeling.registry import build_model, family_of


def _locs(hw=(64, 64), strides=(8, 16, 32)):
    sizes = [(hw[0] // s, hw[1] // s) for s in strides]
    return compute_locations(sizes, list(strides)), list(strides)


def test_locations_and_ranges():
    locs, _ = _locs((32, 32), (8, 16))
    assert locs[0][:3].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]]
    assert locs[1].tolist() == [[8.0, 8.0], [24.0, 8.0], [8.0, 24.0], [24.0, 24.0]]
    assert size_ranges([64, 128], 3) == [(-1.0, 64.0), (64.0, 128.0), (128.0, 1e8)]


def test_small_box_lands_on_p3_centre_locations_only():
    locs, strides = _locs()
    # box 20x20 centred at (28, 28): centre region 28 +- 12 clipped to the box = [18, 38]
    t = fcos_targets(locs, strides, torch.tensor([[18.0, 18.0, 38.0, 38.0]]), torch.tensor([2]), 5,
                     sizes_of_interest=(64, 128))
    pos = (t["labels"] != 5).nonzero().squeeze(1)
    xy = torch.cat(locs)[pos]
    assert set(map(tuple, xy.tolist())) == {(20.0, 20.0), (28.0, 20.0), (36.0, 20.0), (20.0, 28.0), (28.0, 28.0),
                                            (36.0, 28.0), (20.0, 36.0), (28.0, 36.0), (36.0, 36.0)}
    assert (t["level"][pos] == 0).all() and (t["labels"][pos] == 2).all()
    i = pos[0]
    assert t["reg_targets"][i].tolist() == [2.0, 2.0, 18.0, 18.0]  # location (20, 20)


def test_centre_sampling_excludes_box_border_locations():
    locs, strides = _locs()
    # 60 wide box: max regression of its border locations < 64 -> P3; only |dx| < 12 from centre
    t = fcos_targets(locs, strides, torch.tensor([[2.0, 2.0, 62.0, 62.0]]), torch.tensor([0]), 1,
                     sizes_of_interest=(64, 128))
    pos = (t["labels"] == 0).nonzero().squeeze(1)
    xy = torch.cat(locs)[pos]
    assert ((xy - 32).abs() < 12).all() and len(pos) > 0
    t2 = fcos_targets(locs, strides, torch.tensor([[2.0, 2.0, 62.0, 62.0]]), torch.tensor([0]), 1,
                      sizes_of_interest=(64, 128), center_sample_radius=None)
    assert (t2["labels"] == 0).sum() > len(pos)


def test_large_box_goes_to_coarser_level():
    locs, strides = _locs((256, 256))
    t = fcos_targets(locs, strides, torch.tensor([[0.0, 0.0, 255.0, 255.0]]), torch.tensor([0]), 1,
                     sizes_of_interest=(64, 128))
    pos = (t["labels"] == 0).nonzero().squeeze(1)
    assert len(pos) > 0 and (t["level"][pos] == 2).all()  # max(l,t,r,b) >= 128 only on P5


def test_ambiguous_location_goes_to_smallest_box():
    locs, strides = _locs()
    boxes = torch.tensor([[4.0, 4.0, 60.0, 60.0], [20.0, 20.0, 44.0, 44.0]])
    t = fcos_targets(locs, strides, boxes, torch.tensor([0, 1]), 2, sizes_of_interest=(64, 128))
    loc28 = ((torch.cat(locs) == torch.tensor([28.0, 28.0])).all(1)).nonzero()[0, 0]
    assert int(t["labels"][loc28]) == 1 and int(t["gt_inds"][loc28]) == 1


def test_empty_image_all_background():
    locs, strides = _locs()
    t = fcos_targets(locs, strides, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64), 3)
    assert (t["labels"] == 3).all() and (t["gt_inds"] == -1).all()


def test_focal_and_giou_hand_values():
    # focal: p = sigmoid(0) = 0.5; positive: 0.25 * 0.5**2 * ln 2; negative: 0.75 * 0.5**2 * ln 2
    x = torch.zeros(2)
    v = sigmoid_focal_loss(x, torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2, reduction="none")
    assert torch.allclose(v, torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]))
    # GIoU: [0,0,2,2] vs [1,1,3,3]: IoU 1/7, hull 9, union 7 -> GIoU = 1/7 - 2/9, loss = 1 - that
    g = generalized_box_iou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert abs(float(g) - (1 - (1 / 7 - 2 / 9))) < 1e-6


def test_fcos_loss_values_on_controlled_outputs():
    m = build_model("blendmask_tiny", num_classes=2).eval()
    with torch.no_grad():
        out = m(torch.zeros(1, 3, 64, 64))
    out = {k: v for k, v in out.items()}
    out["logits"] = torch.zeros_like(out["logits"])
    out["ctrness"] = torch.zeros_like(out["ctrness"])
    box = torch.tensor([[18.0, 18.0, 38.0, 38.0]])
    tgt = [{"gt_boxes": box, "gt_classes": torch.tensor([1]), "gt_masks": torch.ones(1, 64, 64, dtype=torch.uint8)}]
    # perfect box regression for every location: reg = ltrb / stride
    ltrb = torch.stack([out["locations"][:, 0] - 18, out["locations"][:, 1] - 18, 38 - out["locations"][:, 0],
                        38 - out["locations"][:, 1]], 1) / out["loc_strides"][:, None]
    out["bbox_reg"] = ltrb[None].clamp(min=0)
    losses = family_of(m).make_loss(m)(out, tgt)
    n_loc = out["logits"].shape[1]
    num_pos = 9
    # every logit 0: positives (num_pos, one class) + negatives (all others)
    expect_cls = (num_pos * 0.25 + (n_loc * 2 - num_pos) * 0.75) * 0.25 * math.log(2) / num_pos
    assert abs(float(losses["loss_fcos_cls"]) - expect_cls) < 1e-4
    assert float(losses["loss_fcos_loc"]) < 1e-5
    assert torch.isfinite(losses["loss_mask"])


def test_empty_image_zero_losses_finite_gradients():
    torch.manual_seed(0)
    m = build_model("blendmask_tiny", num_classes=3).train()
    out = m(torch.rand(2, 3, 64, 96) * 255)
    tgt = [{"gt_boxes": torch.zeros((0, 4)), "gt_classes": torch.zeros((0,), dtype=torch.int64),
            "gt_masks": torch.zeros((0, 64, 96), dtype=torch.uint8)} for _ in range(2)]
    losses = family_of(m).make_loss(m)(out, tgt)
    assert float(losses["loss_fcos_loc"]) == 0.0 and float(losses["loss_fcos_ctr"]) == 0.0
    assert float(losses["loss_mask"]) == 0.0 and torch.isfinite(losses["loss_fcos_cls"])
    sum(losses.values()).backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_post_nms_cut_keeps_ties_as_official():
    """``post_nms_topk`` cuts as AdelaiDet / centermask2 ``select_over_all_levels``: the
    ``topk``-th largest score (``torch.kthvalue(scores, n - topk + 1)``) is a threshold and every
    detection scoring ``>=`` it is kept, so ties with the last one are all kept."""
    from segcore.modeling.fcos import fcos_detect

    n = 12
    locs = torch.stack([torch.arange(n, dtype=torch.float32) * 40 + 4, torch.full((n,), 4.0)], 1)
    probs = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1])
    out = {"logits": torch.logit(probs)[None, :, None], "ctrness": torch.full((1, n), 20.0),
           "bbox_reg": torch.full((1, n, 4), 2.0), "locations": locs, "loc_strides": torch.full((n,), 8.0),
           "level_sizes": [(1, n)]}   # boxes 32 px wide, 40 px apart: no suppression
    for topk in (3, 4, 5, 6, 7, 12, 100):
        det = fcos_detect(out, pre_nms_thresh=0.05, post_nms_topk=topk)[0]
        scores = fcos_detect(out, pre_nms_thresh=0.05, post_nms_topk=0)[0]["scores"]
        if topk < len(scores):
            thresh = torch.kthvalue(scores, len(scores) - topk + 1).values
            expected = int((scores >= thresh).sum())
        else:
            expected = len(scores)
        assert len(det["scores"]) == expected, topk
    assert len(fcos_detect(out, pre_nms_thresh=0.05, post_nms_topk=4)[0]["scores"]) == 6   # 0.6 x 3 kept
    assert len(fcos_detect(out, pre_nms_thresh=0.05, post_nms_topk=7)[0]["scores"]) == 7
