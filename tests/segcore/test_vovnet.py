"""VoVNetV2 (segcore.modeling.vovnet): official key names, element counts, eSE, DCN, timm parity.

Key lists: ``../shared/reference/keys_vovnet{19,39,39dcn}_backbone.txt`` (built from the official
centermask2 classes). Their sha256 over the ``key (shape)`` lines is pinned here so the test runs
without the reference folder; when the folder is beside the repo, the lists are also compared
line by line (clearer failure messages).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segcore.modeling.vovnet import (VOVNET_SPECS, DeformConvUnit, EffectiveSE, VoVNet,
                                     convert_timm_vovnet_state_dict, vovnet_backbone)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"

# name -> (reference file, tensors, elements, sha256 of "\n".join("key (shape)") in file order)
KEY_LISTS = {
    "V-19": ("keys_vovnet19_backbone.txt", 103, 10190272,
             "2f21a4284bfd38c5214b9b8832fe7dda37a884463ba3d91e1e9e792f87aee2ce"),
    "V-39": ("keys_vovnet39_backbone.txt", 207, 25204544,
             "f1f17a35224bad9a86a6841badc77a41b21c4fa5e061b1d34401f210c78ae3ad"),
    "V-39-dcn": ("keys_vovnet39dcn_backbone.txt", 257, 26978147,
                 "1b17e23d8ece64ffbbb407e347d8e8160b6a244ec79931c45c60bd0c204d25bd"),
}


def _key_lines(model) -> list[str]:
    lines = []
    for k, v in model.state_dict().items():
        shape = "(" + ", ".join(str(d) for d in v.shape) + ("," if v.dim() == 1 else "") + ")"
        lines.append(f"backbone.bottom_up.{k} {shape}")
    return lines


@pytest.mark.parametrize("name", sorted(KEY_LISTS))
def test_official_keys_and_shapes(name):
    fname, tensors, elements, digest = KEY_LISTS[name]
    model = vovnet_backbone(name)
    lines = _key_lines(model)
    ref = REFERENCE / fname
    if ref.is_file():
        expected = [ln for ln in ref.read_text().splitlines() if ln.strip() and not ln.startswith("##")]
        assert set(lines) ^ set(expected) == set()
        assert lines == expected  # same order too
    assert len(lines) == tensors
    assert sum(v.numel() for v in model.state_dict().values()) == elements
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == digest
    assert not any(k.endswith("num_batches_tracked") for k in model.state_dict())


def test_element_counts_of_all_specs():
    # counts of the official classes (model_refs.md section 6, incl. FrozenBN buffers)
    expected = {"V-19-slim-dw-eSE": 1390352, "V-19-slim-eSE": 2658288, "V-19-eSE": 10190272,
                "V-39-eSE": 25204544, "V-57-eSE": 41486528, "V-99-eSE": 69577664}
    for spec, n in expected.items():
        # meta device: no memory, no init cost
        with torch.device("meta"):
            model = VoVNet(spec)
        assert sum(v.numel() for v in model.state_dict().values()) == n, spec


def test_forward_shapes_strides_and_residual():
    model = VoVNet("V-19-slim-dw-eSE", out_features=("stem", "stage2", "stage3", "stage4", "stage5")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    for name, stride in model.strides.items():
        assert out[name].shape == (1, model.out_channels[name], 64 // stride, 96 // stride), name
    assert model.out_channels == {"stem": 64, "stage2": 112, "stage3": 256, "stage4": 384, "stage5": 512}
    with torch.device("meta"):
        v39 = VoVNet("V-39-eSE")
    assert not v39.stage4.OSA4_1.identity and v39.stage4.OSA4_2.identity
    assert not hasattr(v39.stage2, "Pooling") and isinstance(v39.stage3.Pooling, torch.nn.MaxPool2d)


def test_ese_keeps_channels_and_matches_direct_computation():
    torch.manual_seed(0)
    ese = EffectiveSE(12)
    x = torch.randn(2, 12, 5, 7)
    y = ese(x)
    assert y.shape == x.shape
    pooled = x.mean(dim=(2, 3))                                   # [N, C]
    z = pooled @ ese.fc.weight[:, :, 0, 0].T + ese.fc.bias        # one FC, C -> C
    gate = torch.clamp(z + 3, 0, 6) / 6                           # hard sigmoid
    torch.testing.assert_close(y, x * gate[:, :, None, None])


def test_frozen_bn_default_and_freeze_at():
    model = VoVNet("V-19-slim-dw-eSE", freeze_at=2)
    assert type(model.stem[1]).__name__ == "FrozenBatchNorm2d"
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(not p.requires_grad for p in model.stage2.parameters())
    assert all(p.requires_grad for p in model.stage3.parameters())
    with pytest.raises(ValueError, match="spec"):
        VoVNet("V-21")
    with pytest.raises(ValueError, match="norm"):
        VoVNet("V-19-slim-eSE", norm="GN")


def test_dcn_unit_zero_offsets_is_half_weighted_conv():
    torch.manual_seed(0)
    unit = DeformConvUnit("OSA3_1_0", 6, 4, "FrozenBN").eval()
    x = torch.randn(1, 6, 9, 11)
    conv = getattr(unit, "OSA3_1_0/conv")
    # zero-initialised offsets and mask logits: no shift, every tap weighted sigmoid(0) = 0.5
    expected = F.relu(getattr(unit, "OSA3_1_0/norm")(0.5 * F.conv2d(x, conv.weight, padding=1)))
    torch.testing.assert_close(unit(x), expected, rtol=1e-5, atol=1e-5)
    assert getattr(unit, "OSA3_1_0/conv_offset").out_channels == 27
    assert not any(n.endswith("conv.bias") for n, _ in unit.named_parameters())


def _timm_pair(timm_name: str, spec: str, seed: int):
    import timm  # test-only dependency, in the dev extra: a missing timm fails here on purpose

    tm = timm.create_model(timm_name, pretrained=False).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BN statistics and conv biases so every buffer matters
        for mod in tm.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.uniform_(-0.2, 0.2, generator=g)
                mod.running_mean.uniform_(-0.2, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
            elif isinstance(mod, torch.nn.Conv2d) and mod.bias is not None:
                mod.bias.uniform_(-1.0, 1.0, generator=g)
    ours = VoVNet(spec).eval()
    ours.load_state_dict(convert_timm_vovnet_state_dict(tm.state_dict(), spec), strict=True)
    return tm, ours, torch.randn(2, 3, 96, 128, generator=g)


def _timm_stages(tm, x):
    y, outs = tm.stem(x), []
    for stage in tm.stages:
        y = stage(y)
        outs.append(y)
    return outs


@pytest.mark.parametrize("timm_name,spec", [("ese_vovnet19b_dw", "V-19-dw-eSE"),
                                            ("ese_vovnet39b", "V-39-eSE"),
                                            ("ese_vovnet57b", "V-57-eSE")])
def test_parity_with_timm(timm_name, spec):
    """Same weights in timm's independent VoVNet (eval-mode BN) and ours (FrozenBN) -> same
    stage2..stage5 maps. Compared in float64 so float32 summation-order noise (it grows with the
    residual sums of V-57 to ~1e-3 on maps of magnitude ~500) does not hide a real mismatch."""
    tm, ours, x = _timm_pair(timm_name, spec, seed=1)
    tm, ours, x = tm.double(), ours.double(), x.double()
    with torch.no_grad():
        expected = _timm_stages(tm, x)
        got = ours(x)
    for i, name in enumerate(("stage2", "stage3", "stage4", "stage5")):
        assert got[name].shape == expected[i].shape
        assert (got[name] - expected[i]).abs().max().item() < 1e-5, name


def test_parity_with_timm_float32_v19_dw():
    tm, ours, x = _timm_pair("ese_vovnet19b_dw", "V-19-dw-eSE", seed=2)
    with torch.no_grad():
        expected = _timm_stages(tm, x)
        got = ours(x)
    for i, name in enumerate(("stage2", "stage3", "stage4", "stage5")):
        assert (got[name] - expected[i]).abs().max().item() < 1e-5, name


def test_timm_conversion_fills_identity_ese():
    sd = convert_timm_vovnet_state_dict({}, "V-39-eSE")
    # timm has no eSE on OSA4_1 / OSA5_1 (not the last module of their stage): gate exactly 1
    assert torch.equal(sd["stage4.OSA4_1.ese.fc.bias"], torch.full((768,), 3.0))
    ese = EffectiveSE(768)
    ese.load_state_dict({"fc.weight": sd["stage4.OSA4_1.ese.fc.weight"], "fc.bias": sd["stage4.OSA4_1.ese.fc.bias"]})
    x = torch.randn(1, 768, 3, 3)
    assert torch.equal(ese(x), x)
    with pytest.raises(KeyError):
        convert_timm_vovnet_state_dict({"stages.0.weird.weight": torch.zeros(1)}, "V-39-eSE")
    assert set(VOVNET_SPECS) >= {"V-19-eSE", "V-19-slim-eSE", "V-19-slim-dw-eSE", "V-39-eSE", "V-57-eSE",
                                 "V-99-eSE"}
