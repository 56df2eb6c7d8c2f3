"""Box coding and crop helpers (official layers/box_utils.py semantics)."""

from __future__ import annotations

import torch

from segcore.ops import box_crop_mask, box_ioa, center_form, crop_masks, decode_boxes, encode_boxes, point_form


def test_point_center_round_trip():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(point_form(center_form(boxes)), boxes)
    torch.testing.assert_close(center_form(boxes)[0], torch.tensor([0.3, 0.55, 0.4, 0.7]))


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=g), torch.rand(50, 2, generator=g) * 0.3 + 0.02], 1)
    xy = torch.rand(50, 2, generator=g) * 0.6
    boxes = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 0.3 + 0.01], 1)
    loc = encode_boxes(boxes, priors)
    torch.testing.assert_close(decode_boxes(loc, priors), boxes, rtol=1e-5, atol=1e-6)
    # zero regression decodes to the prior itself; variances (0.1, 0.2)
    torch.testing.assert_close(decode_boxes(torch.zeros(50, 4), priors), point_form(priors))
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    shifted = torch.tensor([[0.42, 0.4, 0.62, 0.6]])  # centre +0.02 in x = 0.1 * 0.2 * 1
    torch.testing.assert_close(encode_boxes(shifted, prior), torch.tensor([[1.0, 0.0, 0.0, 0.0]]), atol=1e-5, rtol=0)


def test_box_ioa_for_crowd():
    priors = torch.tensor([[0.0, 0, 2, 2], [10, 10, 12, 12]])
    crowd = torch.tensor([[1.0, 0, 20, 20]])
    torch.testing.assert_close(box_ioa(priors, crowd), torch.tensor([[0.5], [1.0]]))


def test_crop_with_padding():
    boxes = torch.tensor([[0.25, 0.25, 0.5, 0.75]])  # on an 8x8 mask: x 2..4, y 2..6
    inside = box_crop_mask(boxes, 8, 8, padding=0)[0]
    assert inside.sum() == 2 * 4 and inside[2:6, 2:4].all()
    padded = box_crop_mask(boxes, 8, 8, padding=1)[0]
    assert padded[1:7, 1:5].all() and padded.sum() == 6 * 4
    masks = torch.ones(1, 8, 8)
    assert crop_masks(masks, boxes, padding=1).sum() == 24
