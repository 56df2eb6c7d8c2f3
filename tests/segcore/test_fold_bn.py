"""BatchNorm folding for inference (issue 17, inference graph work): the predictor folds every
inference BatchNorm that follows a convolution used once; outputs equal the unfolded network's
up to float rounding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from segcore.modeling import build_model
from segcore.modeling.fold_bn import fold_batchnorm
from segcore.predictor import Predictor


def _random_bn_statistics(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)


@pytest.mark.parametrize("arch,expected_left", [("yolact_tiny", 0), ("blendmask_tiny", 0), ("centermask_tiny", 0),
                                                ("yolact_plus_r50_550", 0), ("blendmask_rt_r50", 9)])
def test_predictor_folds_batchnorm_with_equal_outputs(arch, expected_left):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3)
    _random_bn_statistics(model)
    cats = [{"id": i + 1, "name": str(i)} for i in range(3)]
    plain = Predictor(model, cats, device="cpu", precision="fp32", fold_bn=False)
    folded = Predictor(model, cats, device="cpu", precision="fp32")
    total = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    left = sum(type(m) is nn.BatchNorm2d for m in folded.model.modules())
    assert left == expected_left and folded.folded_bn == total - expected_left
    assert sum(type(m) is nn.BatchNorm2d for m in model.modules()) == total  # the caller's model is untouched
    image = np.random.default_rng(1).integers(0, 255, (200, 260, 3), dtype=np.uint8)
    with torch.inference_mode():
        x, hw = plain.preprocess_batch([image])
        a = plain.model(x, image_sizes=hw, score_threshold=0.0)
        b = folded.model(x, image_sizes=hw, score_threshold=0.0)
    compared = 0
    for key, va in a.items():
        if torch.is_tensor(va) and va.is_floating_point() and key not in ("priors",):
            vb = b[key]
            scale = float(va.abs().max()) + 1e-6
            assert float((va - vb).abs().max()) <= 1e-3 * scale, key
            compared += 1
    assert compared >= 2


def test_shared_convolution_is_not_folded_and_training_is_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn_a, self.bn_b = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
            self.single = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU())

        def forward(self, x):
            return self.single(self.bn_a(self.conv(x)) + self.bn_b(self.conv(x * 2)))

    net = Shared()
    _random_bn_statistics(net)
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(net)
    net.eval()
    ref = copy.deepcopy(net)
    assert fold_batchnorm(net) == 1  # only the Sequential's pair: the shared conv feeds two BatchNorms
    assert isinstance(net.bn_a, nn.BatchNorm2d) and isinstance(net.single[1], nn.Identity)
    x = torch.rand(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)
