"""DCNv2 layer (torchvision ``deform_conv2d``) against a transcription of the official CUDA kernel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from segcore.modeling.backbones import resnet_backbone
from segcore.ops.dcn import ModulatedDeformConv2d

_FIX = Path(__file__).resolve().parents[1] / "fixtures" / "yolact_parity_make.py"
_spec = importlib.util.spec_from_file_location("yolact_parity_make", _FIX)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def test_dcn_matches_official_kernel_layout():
    torch.manual_seed(0)
    m = ModulatedDeformConv2d(8, 16, 3, stride=2, padding=1)
    torch.nn.init.normal_(m.conv_offset_mask.weight, std=0.5)  # offsets of several pixels, some outside
    torch.nn.init.normal_(m.bias)
    official = ref.DCN(8, 16, 3, 2, 1)
    official.load_state_dict(m.state_dict())
    x = torch.randn(2, 8, 13, 11)
    out = m(x)
    assert out.shape == (2, 16, 7, 6)
    assert torch.allclose(out, official(x), atol=1e-5)
    # the (dy, dx) order matters: swapping it gives another result
    off = m.conv_offset_mask(x)
    swapped = torch.stack([off[:, 1:18:2], off[:, 0:18:2]], 2).flatten(1, 2)
    other = torchvision.ops.deform_conv2d(x, swapped, m.weight, m.bias, stride=2, padding=1,
                                          mask=torch.sigmoid(off[:, 18:]))
    assert (other - out).abs().max() > 1e-2


def test_fresh_dcn_is_half_weighted_conv_and_placement():
    m = ModulatedDeformConv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 9)
    assert torch.allclose(m(x), F.conv2d(x, m.weight, m.bias, padding=1) * 0.5, atol=1e-5)
    # official resnet50_dcnv2_backbone: every block of C3-C5; resnet101_dcn_inter3: 11 blocks
    r50 = resnet_backbone("resnet50", dcn_layers=[0, 4, 6, 3])
    r101 = resnet_backbone("resnet101", dcn_layers=[0, 4, 23, 3], dcn_interval=3)
    dcn = lambda b: [n[: -len(".conv2")] for n, mod in b.named_modules() if isinstance(mod, ModulatedDeformConv2d)]  # noqa: E731
    assert len(dcn(r50)) == 13 and not any(n.startswith("layers.0.") for n in dcn(r50))
    assert dcn(r101) == ["layers.1.0", "layers.1.3"] + [f"layers.2.{i}" for i in range(0, 22, 3)] + ["layers.3.0"]
