"""Fast NMS (YOLACT paper, "Fast NMS"; official layers/functions/detection.py)."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from segcore.ops import fast_nms, fast_nms_keep


def test_duplicate_suppressed_separate_kept():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    idx, classes, det_scores = fast_nms(boxes, scores, iou_threshold=0.5)
    assert idx.tolist() == [0, 2]
    assert classes.tolist() == [0, 0]
    torch.testing.assert_close(det_scores, torch.tensor([0.9, 0.7]))


def test_relaxation_suppressed_box_still_suppresses():
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C barely overlap.
    # Greedy NMS keeps A and C; Fast NMS lets the removed B remove C too.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]])
    keep = fast_nms_keep(boxes, 0.5)
    assert keep.tolist() == [True, False, False]
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.zeros(3, dtype=torch.int64), 0.5).tolist() == [0, 2]


def test_threshold_is_inclusive_keep():
    # IoU exactly 1/3: kept at threshold 1/3 ("keep if max IoU <= threshold"), dropped below it
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]])
    assert fast_nms_keep(boxes, 1 / 3 + 1e-6).tolist() == [True, True]
    assert fast_nms_keep(boxes, 0.3).tolist() == [True, False]


def test_per_class_and_no_second_threshold():
    # overlapping boxes of different classes do not suppress each other
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]])
    idx, classes, _ = fast_nms(boxes, torch.tensor([[0.9, 0.0], [0.0, 0.8]]), score_threshold=0.05)
    assert idx.tolist() == [0, 1] and classes.tolist() == [0, 1]
    # without a second threshold every (box, class) pair that survives NMS is returned
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.01], [0.02, 0.8]])
    idx, classes, det_scores = fast_nms(boxes, scores, iou_threshold=0.5)
    assert list(zip(idx.tolist(), classes.tolist())) == [(0, 0), (1, 1), (1, 0), (0, 1)]
    torch.testing.assert_close(det_scores, torch.tensor([0.9, 0.8, 0.02, 0.01]))
    idx, classes, _ = fast_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05)
    assert idx.tolist() == [0, 1] and classes.tolist() == [0, 1]


def test_agrees_with_batched_nms_without_chains():
    # well separated clusters of near-duplicates: greedy and Fast NMS must agree
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[20.0, 20], [100, 30], [60, 120], [150, 150], [30, 90]])
    boxes, labels = [], []
    for c, centre in enumerate(centres):
        for _ in range(6):
            jitter = torch.rand(4, generator=g) * 2
            boxes.append(torch.cat([centre - 10, centre + 10]) + jitter)
            labels.append(c % 2)
    boxes = torch.stack(boxes)
    labels = torch.tensor(labels)
    flat_scores = torch.rand(len(boxes), generator=g) * 0.9 + 0.1
    scores = torch.zeros(len(boxes), 2)
    scores[torch.arange(len(boxes)), labels] = flat_scores
    idx, classes, det_scores = fast_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.0)
    expected = batched_nms(boxes, flat_scores, labels, 0.5)
    assert idx.tolist() == expected.tolist()
    assert classes.tolist() == labels[expected].tolist()
    assert len(idx) == 5


def test_top_k_max_detections_and_empty():
    boxes = torch.tensor([[i * 20.0, 0, i * 20 + 10, 10] for i in range(10)])
    scores = torch.linspace(0.9, 0.1, 10)[:, None]
    idx, _, _ = fast_nms(boxes, scores, top_k=4)
    assert idx.tolist() == [0, 1, 2, 3]
    idx, _, det_scores = fast_nms(boxes, scores, max_detections=3)
    assert idx.tolist() == [0, 1, 2]
    assert torch.all(det_scores[:-1] >= det_scores[1:])
    idx, classes, det_scores = fast_nms(torch.zeros(0, 4), torch.zeros(0, 3))
    assert idx.shape == classes.shape == det_scores.shape == (0,)


def test_pairwise_iou_equals_torchvision_box_iou():
    """Fast NMS's batched IoU gives torchvision's values bit for bit (same float ops), identical
    and zero-area boxes included."""
    from torchvision.ops import box_iou

    from segcore.ops.nms import _pairwise_iou

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(7, 50, 2, generator=gen) * 300
    boxes = torch.cat([xy, xy + torch.rand(7, 50, 2, generator=gen) * 80], dim=-1)
    boxes[0, :4] = boxes[0, 0]          # identical boxes: IoU 1
    boxes[1, 3, 2:] = boxes[1, 3, :2]   # a zero-area box
    want = torch.stack([box_iou(b, b) for b in boxes])
    got = _pairwise_iou(boxes)
    assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0))
    assert float(got[0, 0, 1]) == 1.0


def _full_fast_nms(boxes, scores, iou_threshold, top_k, max_detections, score_threshold):
    """Fast NMS with the IoU matrix of every class's top_k (the official computation)."""
    cls_scores, order = scores.t().topk(min(top_k, scores.shape[0]), dim=1)
    keep = fast_nms_keep(boxes[order], iou_threshold)
    if score_threshold is not None:
        keep &= cls_scores > score_threshold
    classes = torch.arange(scores.shape[1])[:, None].expand_as(keep)[keep]
    det_scores, best = cls_scores[keep].topk(min(max_detections, int(keep.sum())))
    return order[keep][best], classes[best], det_scores


def test_only_decisive_ranks_are_ranked_and_results_are_unchanged():
    from segcore.ops.nms import _kept_pairs

    skipped = 0
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        n, k = (3000, 80) if seed % 3 else (400, 3)
        xy = torch.rand(n, 2, generator=g) * 500
        boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 120], dim=1)
        logits = torch.randn(n, k + 1, generator=g) * (1 + seed % 4)
        if seed % 2:  # saturated classes as in a random-init YOLACT: every rank scores ~1 in one,
            logits[: n // 2, 1] += 9  # fewer ranks in the other (deep classes of unequal depth)
            logits[: n // 16, 2] += 9
        scores = torch.softmax(logits, dim=1)[:, 1:]
        for max_det, thr in ((100, None), (100, 0.05), (10, None), (300, None)):
            got = fast_nms(boxes, scores, iou_threshold=0.5, top_k=200, max_detections=max_det,
                           score_threshold=thr)
            want = _full_fast_nms(boxes, scores, 0.5, 200, max_det, thr)
            assert torch.equal(got[2], want[2])  # the same scores in the same (descending) order
            # the same (candidate, class) pairs; tied scores may come in either order, as officially
            assert sorted(zip(*(t.tolist() for t in got))) == sorted(zip(*(t.tolist() for t in want)))
        classes, indices, _ = _kept_pairs(boxes, scores, 0.5, 200, 100, None)
        partial = set(zip(classes.tolist(), indices.tolist()))
        full = _full_fast_nms(boxes, scores, 0.5, 200, 10**6, None)
        full = set(zip(full[1].tolist(), full[0].tolist()))
        assert partial <= full  # never keeps what the full computation drops
        skipped += len(partial) < len(full)  # ranks below the bar were not ranked
    assert skipped >= 6  # the saving happens (80-class sets, saturated or not), not only the fallback
