"""CenterMask parts: Eq. 2 level assignment, RoIAlign pooler, SAG-Mask / SAM, MaskIoU, losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from segcore.modeling.centermask import (CenterMaskRoIHeads, MaskIoUHead, MultiLevelRoIAlign, SAGMaskHead,
                                         SpatialAttention, assign_boxes_to_levels_by_ratio,
                                         assign_boxes_to_levels_fpn, mask_rcnn_loss, mask_rcnn_targets,
                                         mask_scores, maskiou_loss, maskiou_targets,
                                         roi_losses, select_positive_proposals)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def _box(side_w, side_h, x0=0.0, y0=0.0):
    return [x0, y0, x0 + side_w, y0 + side_h]


def test_level_assignment_eq2_hand_picked():
    area = 1024 * 1024
    boxes = torch.tensor([
        _box(224, 224),     # paper example: ceil(5 - log2(20.9)) = ceil(0.61) = 1 -> clamped P3
        _box(1024, 1024),   # whole image: ratio 1 -> ceil(5) = 5
        _box(1024, 600),    # > half the image: ratio 1.7 -> ceil(4.22) = 5
        _box(1024, 512),    # exactly half: ratio 2 -> 4 (ceil of an integer)
        _box(512, 512),     # ratio 4 -> 3
        _box(512, 400),     # ratio 5.12 -> ceil(2.64) = 3
        _box(724, 600),     # ratio 2.41 -> ceil(3.73) = 4
        _box(10, 10),       # tiny -> P3
        _box(0, 10),        # empty -> P3
    ])
    levels = assign_boxes_to_levels_by_ratio(boxes, area)
    assert levels.tolist() == [3, 5, 5, 4, 3, 3, 4, 3, 3]
    assert levels.dtype == torch.int64
    # unclamped formula for the same boxes (k_max = 5)
    for b, k in zip(boxes.tolist(), levels.tolist()):
        a = (b[2] - b[0]) * (b[3] - b[1])
        if a > 0:
            assert k == min(max(math.ceil(5 - math.log2(area / a)), 3), 5)
    # per-box image areas: the same box is relatively larger in a smaller image
    per = assign_boxes_to_levels_by_ratio(torch.tensor([_box(224, 224)] * 2), torch.tensor([area, 300.0 * 300.0]))
    assert per.tolist() == [3, 5]
    # Eq. 1 (FPN) puts the paper's 224^2 RoI on P4, which Eq. 2 avoids
    assert assign_boxes_to_levels_fpn(boxes[:1]).tolist() == [4]
    # with k_max = 7 (the paper's general form) the 224^2 RoI still lands on P3
    assert assign_boxes_to_levels_by_ratio(boxes[:1], area, min_level=3, max_level=7).tolist() == [3]
    with pytest.raises(ValueError):
        assign_boxes_to_levels_by_ratio(torch.zeros(3, 5), area)


def test_pooler_uses_assigned_level_and_roi_align_v2():
    torch.manual_seed(0)
    feats = [torch.randn(2, 4, 256 // s, 256 // s) for s in (8, 16, 32)]
    pooler = MultiLevelRoIAlign(14, (8, 16, 32))
    boxes = [torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 0.0, 250.0, 200.0]]),
             torch.tensor([[30.0, 20.0, 190.0, 180.0]])]
    sizes = [(256, 256), (256, 256)]
    out = pooler(feats, boxes, sizes)
    assert out.shape == (3, 4, 14, 14)
    levels = assign_boxes_to_levels_by_ratio(torch.cat(boxes), 256 * 256).tolist()
    assert levels == [3, 5, 4]
    for r, (img, box, level) in enumerate([(0, boxes[0][0], 3), (0, boxes[0][1], 5), (1, boxes[1][0], 4)]):
        stride = 2 ** level
        expected = roi_align(feats[level - 3], torch.cat([torch.tensor([[float(img)]]), box[None]], 1), 14,
                             spatial_scale=1 / stride, sampling_ratio=0, aligned=True)
        torch.testing.assert_close(out[r:r + 1], expected)
    assert pooler(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], sizes).shape == (0, 4, 14, 14)


def test_spatial_attention_matches_direct_computation():
    torch.manual_seed(0)
    sam = SpatialAttention()
    x = torch.randn(3, 5, 6, 7)
    w = sam.conv.weight  # [1, 2, 3, 3]
    avg = x.sum(dim=1, keepdim=True) / x.shape[1]
    mx = torch.stack([x[:, c] for c in range(x.shape[1])], 0).max(dim=0).values[:, None]
    pad = F.pad(torch.cat([avg, mx], 1), (1, 1, 1, 1))
    att = torch.zeros(3, 1, 6, 7)
    for i in range(3):
        for j in range(3):
            att += (pad[:, :, i:i + 6, j:j + 7] * w[0, :, i, j][None, :, None, None]).sum(1, keepdim=True)
    torch.testing.assert_close(sam(x), x * (1 / (1 + torch.exp(-att))))
    assert sam.conv.bias is None
    assert sam(torch.zeros(0, 5, 6, 7)).shape == (0, 5, 6, 7)


def _key_shapes(fname, prefix):
    out = {}
    for line in (REFERENCE / fname).read_text().splitlines():
        if line.startswith(prefix):
            key, shape = line.rsplit(" (", 1)
            out[key] = tuple(int(d) for d in shape.rstrip(",)").split(",") if d.strip())
    return out


@pytest.mark.parametrize("lite", [False, True])
def test_head_keys_and_shapes(lite):
    ch, n = (128, 2) if lite else (256, 4)
    heads = CenterMaskRoIHeads(80, in_channels=ch, conv_dims=ch, num_convs=n)
    got = {f"roi_heads.{k}": tuple(v.shape) for k, v in heads.state_dict().items()}
    expected = {}
    for i in range(1, n + 1):
        expected[f"roi_heads.mask_head.mask_fcn{i}.weight"] = (ch, ch, 3, 3)
        expected[f"roi_heads.mask_head.mask_fcn{i}.bias"] = (ch,)
        expected[f"roi_heads.maskiou_head.maskiou_fcn{i}.weight"] = (ch, ch + 1 if i == 1 else ch, 3, 3)
        expected[f"roi_heads.maskiou_head.maskiou_fcn{i}.bias"] = (ch,)
    expected.update({
        "roi_heads.mask_head.spatialAtt.conv.weight": (1, 2, 3, 3),
        "roi_heads.mask_head.deconv.weight": (ch, ch, 2, 2), "roi_heads.mask_head.deconv.bias": (ch,),
        "roi_heads.mask_head.predictor.weight": (80, ch, 1, 1), "roi_heads.mask_head.predictor.bias": (80,),
        "roi_heads.maskiou_head.maskiou_fc1.weight": (1024, ch * 49),
        "roi_heads.maskiou_head.maskiou_fc1.bias": (1024,),
        "roi_heads.maskiou_head.maskiou_fc2.weight": (1024, 1024), "roi_heads.maskiou_head.maskiou_fc2.bias": (1024,),
        "roi_heads.maskiou_head.maskiou.weight": (80, 1024), "roi_heads.maskiou_head.maskiou.bias": (80,),
    })
    assert got == expected  # written from keys_centermask_{V_39,lite_V_19}_*.txt
    fname = "keys_centermask_lite_V_19_eSE_FPN_ms_4x.txt" if lite else "keys_centermask_V_39_eSE_FPN_ms_3x.txt"
    if (REFERENCE / fname).is_file():
        assert got == _key_shapes(fname, "roi_heads.")


def test_head_output_shapes():
    torch.manual_seed(0)
    head, iou_head = SAGMaskHead(16, 16, 2, num_classes=5), MaskIoUHead(16, 16, 2, num_classes=5)
    x = torch.randn(3, 16, 14, 14)
    logits = head(x)
    assert logits.shape == (3, 5, 28, 28)
    assert iou_head(x, logits[:, :1].sigmoid()).shape == (3, 5)
    assert head(torch.zeros(0, 16, 14, 14)).shape == (0, 5, 28, 28)
    assert SAGMaskHead(16, 16, 2, 5, class_agnostic=True)(x).shape == (3, 1, 28, 28)


def test_mask_targets_crop_and_ratio():
    gt = torch.zeros(1, 64, 64, dtype=torch.uint8)
    gt[0, 16:48, 16:48] = 1
    boxes = torch.tensor([[16.0, 16.0, 48.0, 48.0], [16.0, 16.0, 32.0, 48.0], [0.0, 0.0, 64.0, 64.0]])
    t, ratio = mask_rcnn_targets(gt, boxes, torch.zeros(3, dtype=torch.int64), 28)
    assert t.shape == (3, 28, 28) and t.dtype == torch.float32
    assert t[0].min() == 1                       # box == object: all foreground
    assert t[1].min() == 1                       # left half of the object, still all inside
    assert t[2, :7].sum() == 0 and t[2, 7:21, 7:21].min() == 1   # object in the middle half
    torch.testing.assert_close(ratio, torch.tensor([1.0, 0.5, 1.0]), atol=0.02, rtol=0)
    # MaskIoU target: a perfect mask in a box that holds half the object scores 0.5, not 1
    iou = maskiou_targets(t * 20 - 10, t, ratio)
    torch.testing.assert_close(iou, torch.tensor([1.0, 0.5, 1.0]), atol=0.03, rtol=0)


def test_losses_finite_and_zero_rois():
    logits = torch.randn(0, 5, 28, 28, requires_grad=True)
    loss = mask_rcnn_loss(logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    pred = torch.randn(0, 5, requires_grad=True)
    assert maskiou_loss(pred, torch.zeros(0, dtype=torch.int64), torch.zeros(0)).item() == 0.0
    # L2 on the gt class over positive targets only
    pred = torch.tensor([[0.2, 0.9], [0.5, 0.1], [0.3, 0.3]])
    loss = maskiou_loss(pred, torch.tensor([1, 0, 1]), torch.tensor([0.5, 1.0, 0.0]))
    torch.testing.assert_close(loss, torch.tensor(0.5 * ((0.9 - 0.5) ** 2 + (0.5 - 1.0) ** 2) / 2))
    torch.testing.assert_close(mask_scores(torch.tensor([0.8, 0.5]), pred[:2], torch.tensor([1, 0])),
                               torch.tensor([0.72, 0.25]))


def test_roi_heads_train_and_predict():
    torch.manual_seed(0)
    heads = CenterMaskRoIHeads(3, in_channels=8, conv_dims=8, num_convs=2)
    feats = [torch.randn(2, 8, 128 // s, 128 // s, requires_grad=True) for s in (8, 16, 32)]
    masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
    masks[0, 10:60, 20:90] = 1
    masks[1, 70:120, 30:70] = 1
    targets = [{"gt_boxes": torch.tensor([[20.0, 10.0, 90.0, 60.0], [30.0, 70.0, 70.0, 120.0]]),
                "gt_classes": torch.tensor([2, 0]), "gt_masks": masks},
               {"gt_boxes": torch.zeros(0, 4), "gt_classes": torch.zeros(0, dtype=torch.int64),
                "gt_masks": torch.zeros(0, 128, 128, dtype=torch.uint8)}]
    proposals = [torch.tensor([[22.0, 12.0, 88.0, 62.0], [0.0, 0.0, 10.0, 10.0]]), torch.zeros(0, 4)]
    losses = roi_losses(heads.forward_train(feats, proposals, targets, [(128, 128)] * 2))
    assert set(losses) == {"loss_mask", "loss_maskiou"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert feats[0].grad is not None
    # all-empty batch: zero losses, still differentiable
    heads.zero_grad(set_to_none=True)
    empty_out = heads.forward_train(feats, [torch.zeros(0, 4)] * 2, [targets[1], targets[1]], [(128, 128)] * 2)
    empty = roi_losses(empty_out)
    assert all(v.item() == 0.0 for v in empty.values())
    sum(empty.values()).backward()  # every head parameter is in the graph (zero gradients): DDP needs it
    assert all(p.grad is not None for p in heads.parameters())
    b, gi = select_positive_proposals(proposals[0], targets[0]["gt_boxes"])
    assert gi.tolist() == [0, 0, 1]  # the close proposal + both appended gt boxes
    heads.eval()
    with torch.no_grad():
        probs, scores = heads.predict([f.detach() for f in feats], [targets[0]["gt_boxes"], torch.zeros(0, 4)],
                                      [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.int64)],
                                      [torch.tensor([0.9, 0.4]), torch.zeros(0)], [(128, 128)] * 2)
    assert probs[0].shape == (2, 28, 28) and probs[1].shape == (0, 28, 28)
    assert scores[0].shape == (2,) and torch.isfinite(scores[0]).all()
