"""YOLACT network: output shapes, official state_dict layout, priors, backbone weights."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from segcore.modeling import build_model
from segcore.modeling.backbones import resnet_backbone
from segcore.modeling.yolact import PriorCache, make_priors, scaled_pred_scales


@pytest.fixture(scope="module")
def r50_outputs():
    torch.manual_seed(0)
    model = build_model("yolact_r50_550", num_classes=80).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 550, 550) * 255)
    return model, out


def test_r50_550_output_shapes(r50_outputs):
    _, out = r50_outputs
    assert set(out) == {"loc", "conf", "mask_coef", "proto", "priors", "detections"}  # no segm in eval mode
    assert out["loc"].shape == (1, 19248, 4)
    assert out["conf"].shape == (1, 19248, 81)
    assert out["mask_coef"].shape == (1, 19248, 32)
    assert out["proto"].shape == (1, 138, 138, 32)
    assert out["priors"].shape == (19248, 4)
    assert out["proto"].min() >= 0  # ReLU prototypes
    assert out["mask_coef"].abs().max() <= 1  # tanh coefficients
    assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))


def test_r50_550_state_dict_matches_official_layout(r50_outputs):
    model, _ = r50_outputs
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # reference: keys_yolact_resnet50_config.txt (official yolact_resnet50_config, 354 tensors)
    assert len(shapes) == 354
    assert shapes["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["backbone.layers.0.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["backbone.layers.3.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["fpn.lat_layers.0.weight"] == (256, 2048, 1, 1)  # index 0 is on C5
    assert shapes["fpn.lat_layers.2.weight"] == (256, 512, 1, 1)
    assert shapes["fpn.downsample_layers.1.weight"] == (256, 256, 3, 3)
    assert [k for k in shapes if k.startswith("proto_net.") and k.endswith(".weight")] == [
        f"proto_net.{i}.weight" for i in (0, 2, 4, 8, 10)
    ]
    assert shapes["proto_net.10.weight"] == (32, 256, 1, 1)
    assert shapes["prediction_layers.0.upfeature.0.weight"] == (256, 256, 3, 3)
    assert shapes["prediction_layers.0.bbox_layer.weight"] == (12, 256, 3, 3)
    assert shapes["prediction_layers.0.conf_layer.weight"] == (243, 256, 3, 3)
    assert shapes["prediction_layers.0.mask_layer.weight"] == (96, 256, 3, 3)
    assert shapes["semantic_seg_conv.weight"] == (80, 256, 1, 1)
    assert "pixel_mean" not in shapes and "pixel_std" not in shapes  # non-persistent buffers


def test_r101_backbone_layout():
    backbone = resnet_backbone("resnet101")
    assert len(backbone.layers[2]) == 23
    assert backbone.out_channels == [512, 1024, 2048]


def test_priors_first_cell_are_official_square_anchors():
    priors = make_priors([(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)], [24, 48, 96, 192, 384], [1, 0.5, 2], 550)
    assert priors.shape == (19248, 4) and priors.dtype == torch.float32
    first = priors[:3] * 550
    centre = 0.5 / 69 * 550
    expected = torch.tensor([[centre, centre, s, s] for s in (24.0, 24 * math.sqrt(0.5), 24 * math.sqrt(2))])
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-3)
    assert first[1, 2].item() == pytest.approx(16.97, abs=0.01)
    assert first[2, 2].item() == pytest.approx(33.94, abs=0.01)
    # second cell is to the right (row-major), same sizes
    assert priors[3, 0].item() == pytest.approx(1.5 / 69)
    assert priors[3, 1].item() == pytest.approx(0.5 / 69)
    # first prior of P4 uses scale 48
    assert priors[69 * 69 * 3, 2].item() * 550 == pytest.approx(48.0, abs=1e-3)


def test_non_square_priors_and_scaled_scales():
    priors = make_priors([(2, 2)], [24], [0.5], 100, square_anchors=False)
    assert priors[0, 2].item() == pytest.approx(24 * math.sqrt(0.5) / 100)
    assert priors[0, 3].item() == pytest.approx(24 / math.sqrt(0.5) / 100)
    assert scaled_pred_scales(550) == [24, 48, 96, 192, 384]
    assert scaled_pred_scales(700) == [30, 61, 122, 244, 488]  # official yolact_im700_config
    assert scaled_pred_scales(320) == [13, 27, 55, 111, 223]


def test_prior_cache_reuses_tensor():
    cache = PriorCache([24, 48, 96, 192, 384], [1, 0.5, 2], 550)
    sizes = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    assert cache(sizes, "cpu") is cache(sizes, torch.device("cpu"))
    assert cache.num_per_cell == 3


def test_tiny_train_mode_segm_and_channels_last_bf16():
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=3, input_size=128)
    images = torch.rand(2, 3, 128, 128) * 255
    out = model(images)
    assert out["segm"].shape == (2, 3, 16, 16)
    assert out["proto"].shape == (2, 32, 32, 16)
    assert out["loc"].shape[1] == out["priors"].shape[0] == 3 * (16**2 + 8**2 + 4**2 + 2**2 + 1)
    model.eval()
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(images.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        ref = build_model("yolact_tiny", num_classes=3, input_size=128).eval()
        ref.load_state_dict(model.state_dict())
        slow = ref(images)
    assert "segm" not in fast
    assert fast["conf"].shape == slow["conf"].shape
    torch.testing.assert_close(fast["conf"].float(), slow["conf"], rtol=0.1, atol=0.15)


def test_forward_rejects_wrong_input_size():
    model = build_model("yolact_tiny", num_classes=2, input_size=64)
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        model(torch.zeros(1, 3, 96, 96))


def test_backbone_weights_from_torchvision_state_dict(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("yolact_tiny", num_classes=2, input_size=64, backbone_weights=str(path))
    torch.testing.assert_close(model.backbone.layers[3][1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    assert "backbone_weights" not in model.info.arch_kwargs

    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        build_model("yolact_tiny", num_classes=2, input_size=64, backbone_weights=tmp_path / "bad.pth")
