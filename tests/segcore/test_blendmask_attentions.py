"""BlendMask's attentions at inference are computed only at the indexed locations
(``segcore.modeling.blendmask.model.Attentions``): the same values as the dense top layer."""

import numpy as np
import pytest
import torch

from segcore.modeling import build_model
from segcore.modeling.blendmask.model import Attentions
from segcore.modeling.fcos import flatten_levels


def _towers(seed=0, b=2, c=8, sizes=((9, 13), (5, 7), (3, 4))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, h, w, generator=g) for h, w in sizes]


def test_indexed_attentions_equal_the_dense_conv_at_every_level_and_border():
    torch.manual_seed(0)
    towers = _towers()
    layer = torch.nn.Conv2d(8, 4 * 3 * 3, 3, 1, 1)
    dense = flatten_levels([layer(t) for t in towers]).detach()
    att = Attentions(towers, layer)
    assert att.shape == dense.shape
    n = dense.shape[1]
    # every location (borders and corners of every level included), shuffled, on both images
    inds = torch.randperm(n)
    for i in range(2):
        got = att[i, inds]
        assert got.dtype == torch.float32 and got.shape == (n, 36)
        torch.testing.assert_close(got, dense[i, inds], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(att.dense(), dense)
    assert att[0, np.array([n - 1, 0])].shape == (2, 36)          # numpy indices
    assert att[1, []].shape == (0, 36)
    with pytest.raises(ValueError, match="locations"):
        att[0, [n]]


def test_indexed_attentions_are_float32_under_bf16_autocast():
    towers = [t.bfloat16() for t in _towers(1)]
    layer = torch.nn.Conv2d(8, 36, 3, 1, 1)
    ref = flatten_levels([layer(t.float()) for t in towers]).detach()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = Attentions(towers, layer)[0, torch.arange(ref.shape[1])]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref[0], rtol=1e-5, atol=1e-5)


def test_attentions_refuse_another_kernel():
    with pytest.raises(ValueError, match="3x3"):
        Attentions(_towers(), torch.nn.Conv2d(8, 36, 1))


def test_eval_forward_gives_the_training_forwards_attentions():
    """The model in eval mode returns Attentions whose values are the dense top layer's, as the
    training forward (same weights, same input) computes them."""
    torch.manual_seed(0)
    model = build_model("blendmask_tiny", num_classes=3)
    for m in model.modules():  # BatchNorm behaves the same in both modes: use running stats
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    x = torch.rand(1, 3, 128, 160) * 255
    with torch.no_grad():
        model.eval()
        lazy = model(x)["top_feats"]
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        dense = model(x)["top_feats"]
    assert isinstance(lazy, Attentions) and torch.is_tensor(dense) and lazy.shape == dense.shape
    inds = torch.arange(dense.shape[1])
    torch.testing.assert_close(lazy[0, inds], dense[0], rtol=1e-5, atol=1e-5)
