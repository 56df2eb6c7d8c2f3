"""segcore.ops.paste_masks: the one mask paste of BlendMask and CenterMask (detectron2 semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcore.ops import paste_masks


def _detectron2_paste(probs, boxes, h, w, threshold):
    """detectron2 ``_do_paste_mask`` over the whole image (skip_empty=False), one box at a time."""
    out = []
    for p, (x0, y0, x1, y1) in zip(probs, boxes.tolist()):
        xs = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        ys = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=2)[None]
        out.append(F.grid_sample(p[None, None], grid, align_corners=False)[0, 0] >= threshold)
    return torch.stack(out)


def _boxes(n, h, w, gen):
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w + 20.0, h + 20.0]) - 10.0
    wh = torch.rand(n, 2, generator=gen) * 30.0 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def test_per_box_and_whole_image_paths_agree_and_equal_detectron2():
    gen = torch.Generator().manual_seed(0)
    n, h, w = 40, 37, 53
    probs = torch.rand(n, 14, 14, generator=gen)
    probs[:4] = 1.0  # saturated masks: only the box window may be True
    boxes = _boxes(n, h, w, gen)
    boxes[7] = torch.tensor([3.5, 2.25, 3.75, 2.5])  # sub-pixel
    for threshold in (0.5, 0.7):
        ref = _detectron2_paste(probs, boxes, h, w, threshold)
        cpu = paste_masks(probs, boxes, (h, w), threshold)  # per box on the CPU
        whole = paste_masks(probs, boxes, (h, w), threshold, per_box=False)  # the CUDA path
        assert cpu.dtype == torch.bool and cpu.shape == (n, h, w)
        assert torch.equal(cpu, whole) and torch.equal(cpu, ref)
    low = 0.3  # below 0.5 only the box window is pasted, by both paths alike
    assert torch.equal(paste_masks(probs, boxes, (h, w), low), paste_masks(probs, boxes, (h, w), low, per_box=False))


def test_full_box_degenerate_and_empty():
    m = paste_masks(torch.ones(3, 28, 28), torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 5.0, 5.0],
                                                          [10.0, 10.0, 10.0, 20.0]]), (64, 48))
    assert m.shape == (3, 64, 48)
    assert m[0].sum() == 20 * 40 and m[0, 20:60, 10:30].all()
    assert m[1, :5, :5].all() and m[1].sum() == 25
    assert not m[2].any()  # degenerate box
    assert paste_masks(torch.ones(0, 28, 28), torch.zeros(0, 4), (64, 48)).shape == (0, 64, 48)
