"""youngwanLEE/CenterMask (maskrcnn-benchmark) checkpoints: the key lists of the official models
(``tests/fixtures/keys_centermask_mrcnn_*.txt``, built from the official classes) map onto segcore's
CenterMask with zero missing / unexpected keys and every value in place; ``import_official_weights``
then refuses the file with one line naming the FCOS box-regression difference; unknown keys and
unsupported layouts are refused with the keys listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import segcore.modeling  # noqa: F401  (registers the architectures)
from segcore.importers import WeightImportError, import_official_weights, read_state_dict
from segcore.modeling.centermask.importer import convert_maskrcnn_benchmark_state_dict, is_maskrcnn_benchmark
from segcore.modeling.registry import build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V39 = "keys_centermask_mrcnn_V_39_eSE_FPN_ms_3x.txt"
LITE = "keys_centermask_mrcnn_V_19_eSE_FPN_lite_res600_ms_bs16_4x.txt"
R50 = "keys_centermask_mrcnn_R_50_FPN_ms_3x.txt"
EPS = 1e-5


def _keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    lines = (FIXTURES / name).read_text().splitlines()
    assert lines[0].startswith("## ") and "youngwanLEE/CenterMask@" in lines[0]
    out = []
    for line in lines[1:]:
        m = re.fullmatch(r"(\S+) \(([\d, ]*)\)", line.strip())
        assert m, line
        out.append((m.group(1), tuple(int(v) for v in m.group(2).replace(" ", "").split(",") if v)))
    return out


def _fake_state_dict(keys) -> dict:
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in keys:
        if k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    return sd


def _save(tmp_path: Path, sd: dict, ddp: bool, name: str = "model_final.pth") -> Path:
    model = {("module." + k if ddp else k): v for k, v in sd.items()}
    path = tmp_path / name
    # what maskrcnn-benchmark's DetectronCheckpointer writes (optimizer / scheduler state: plain types)
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
                "scheduler": {"last_epoch": 0, "milestones": [210000, 250000], "warmup_method": "constant"},
                "iteration": 0}, path)
    return path


# (official key, segcore key) pairs checked by value: VoVNet / ResNet conv, FPN, FCOS, SAG-Mask, MaskIoU
_COMMON_PAIRS = [
    ("backbone.fpn.fpn_inner2.weight", "backbone.fpn_lateral3.weight"),
    ("backbone.fpn.fpn_inner4.bias", "backbone.fpn_lateral5.bias"),
    ("backbone.fpn.fpn_layer3.weight", "backbone.fpn_output4.weight"),
    ("backbone.fpn.top_blocks.p6.weight", "backbone.top_block.p6.weight"),
    ("backbone.fpn.top_blocks.p7.bias", "backbone.top_block.p7.bias"),
    ("rpn.head.cls_tower.1.weight", "proposal_generator.fcos_head.cls_tower.1.weight"),
    ("rpn.head.cls_logits.bias", "proposal_generator.fcos_head.cls_logits.bias"),
    ("rpn.head.centerness.weight", "proposal_generator.fcos_head.ctrness.weight"),
    ("rpn.head.centerness.bias", "proposal_generator.fcos_head.ctrness.bias"),
    ("rpn.head.scales.3.scale", "proposal_generator.fcos_head.scales.3.scale"),
    ("roi_heads.mask.feature_extractor.mask_fcn2.weight", "roi_heads.mask_head.mask_fcn2.weight"),
    ("roi_heads.mask.feature_extractor.spatialAtt.conv.weight", "roi_heads.mask_head.spatialAtt.conv.weight"),
    ("roi_heads.mask.predictor.conv5_mask.weight", "roi_heads.mask_head.deconv.weight"),
    ("roi_heads.maskiou.feature_extractor.maskiou_fcn1.weight", "roi_heads.maskiou_head.maskiou_fcn1.weight"),
    ("roi_heads.maskiou.feature_extractor.maskiou_fc1.weight", "roi_heads.maskiou_head.maskiou_fc1.weight"),
    ("roi_heads.maskiou.feature_extractor.maskiou_fc2.bias", "roi_heads.maskiou_head.maskiou_fc2.bias"),
]
_VOV_PAIRS = [
    ("backbone.body.stage3.OSA3_1.layers.2.OSA3_1_2/conv.weight",
     "backbone.bottom_up.stage3.OSA3_1.layers.2.OSA3_1_2/conv.weight"),
    ("backbone.body.stage5.OSA5_1.concat.OSA5_1_concat/conv.weight",
     "backbone.bottom_up.stage5.OSA5_1.concat.OSA5_1_concat/conv.weight"),
    ("backbone.body.stage2.OSA2_1.ese.fc.bias", "backbone.bottom_up.stage2.OSA2_1.ese.fc.bias"),
    ("backbone.body.stem.stem_3/norm.running_var", "backbone.bottom_up.stem.stem_3/norm.running_var"),
]
_R50_PAIRS = [
    ("backbone.body.layer2.1.conv2.weight", "backbone.bottom_up.res3.1.conv2.weight"),
    ("backbone.body.layer4.0.downsample.0.weight", "backbone.bottom_up.res5.0.shortcut.weight"),
    ("backbone.body.stem.bn1.running_mean", "backbone.bottom_up.stem.conv1.norm.running_mean"),
    ("backbone.body.layer1.0.bn3.bias", "backbone.bottom_up.res2.0.conv3.norm.bias"),
]
_NORMS = {  # official FrozenBN weight -> segcore key (weight * sqrt((var + eps) / var))
    V39: ("backbone.body.stage4.OSA4_2.layers.3.OSA4_2_3/norm",
          "backbone.bottom_up.stage4.OSA4_2.layers.3.OSA4_2_3/norm"),
    LITE: ("backbone.body.stage4.OSA4_1.layers.1.OSA4_1_1/norm",
           "backbone.bottom_up.stage4.OSA4_1.layers.1.OSA4_1_1/norm"),
    R50: ("backbone.body.layer3.2.bn2", "backbone.bottom_up.res4.2.conv2.norm"),
}


@pytest.mark.parametrize("keyfile,arch,tensors,channels,pairs,ddp", [
    (V39, "centermask_v39", 293, 256, _VOV_PAIRS, False),
    (V39, "centermask_v39", 293, 256, _VOV_PAIRS, True),
    (LITE, "centermask_lite_v19", 165, 128, _VOV_PAIRS, False),
    (LITE, "centermask_lite_v19", 165, 128, _VOV_PAIRS, True),
    (R50, "centermask_r50", 351, 256, _R50_PAIRS, True),
], ids=["V39", "V39-module.", "lite-V19", "lite-V19-module.", "R50-module."])
def test_official_keys_map_completely_then_refused(tmp_path, keyfile, arch, tensors, channels, pairs, ddp):
    keys = _keys(keyfile)
    assert len(keys) == tensors
    sd = _fake_state_dict(keys)
    path = _save(tmp_path, sd, ddp)

    read = read_state_dict(path)
    assert is_maskrcnn_benchmark(read) and all(k.startswith("module.") == ddp for k in read)
    conv = convert_maskrcnn_benchmark_state_dict(read, source=path)
    model = build_model(arch, num_classes=80, norm="FrozenBN")
    own = model.state_dict()
    assert set(conv) == set(own)  # zero missing, zero unexpected
    assert all(tuple(conv[k].shape) == tuple(own[k].shape) for k in own)
    model.load_state_dict(conv, strict=True)
    got = model.state_dict()

    # every official tensor landed exactly once with identical values, except the two class
    # predictors (background row 0 dropped) and the FrozenBN weights (eps folded in)
    def tag(t):
        return tuple(t.shape), t.contiguous().numpy().tobytes()

    landed = {}
    for k, v in got.items():
        landed.setdefault(tag(v), []).append(k)
    transformed = re.compile(r"(mask_fcn_logits|predictor\.maskiou)\."
                             r"|^backbone\.body\..*(norm|bn\d|downsample\.1)\.weight$")
    plain = [k for k in sd if not transformed.search(k)]
    assert len(plain) == tensors - (4 + sum(k.endswith("running_var") for k in sd))
    assert all(len(landed.get(tag(sd[k]), [])) == 1 for k in plain)
    for theirs, ours in _COMMON_PAIRS + pairs:
        assert torch.equal(got[ours], sd[theirs]), (theirs, ours)
    for theirs, ours in [("roi_heads.mask.predictor.mask_fcn_logits", "roi_heads.mask_head.predictor"),
                         ("roi_heads.maskiou.predictor.maskiou", "roi_heads.maskiou_head.maskiou")]:
        for p in ("weight", "bias"):  # background row 0 dropped
            assert torch.equal(got[f"{ours}.{p}"], sd[f"{theirs}.{p}"][1:]), (theirs, p)
    theirs, ours = _NORMS[keyfile]
    w, var = sd[f"{theirs}.weight"].double(), sd[f"{theirs}.running_var"].double()
    torch.testing.assert_close(got[f"{ours}.weight"].double(), w * torch.sqrt((var + EPS) / var), rtol=1e-6, atol=0)
    # ... so segcore's FrozenBN (eps 1e-5) computes what maskrcnn-benchmark's (no eps) did
    norm = dict(model.named_modules())[ours]
    x = torch.randn(2, w.numel(), 3, 3)
    scale = sd[f"{theirs}.weight"] * var.float().rsqrt()
    ref = (x - sd[f"{theirs}.running_mean"][:, None, None]) * scale[:, None, None] + sd[f"{theirs}.bias"][:, None, None]
    torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-6)

    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 160) * 255)
        assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
        assert [tuple(f.shape) for f in out["features"]] == [(1, channels, 128 // s, 160 // s) for s in (8, 16, 32)]
        rois = torch.randn(3, channels, 14, 14)
        masks = model.roi_heads.mask_head(rois)
        ious = model.roi_heads.maskiou_head(rois, masks[:, :1].sigmoid())
    assert masks.shape == (3, 80, 28, 28) and ious.shape == (3, 80)
    assert torch.isfinite(masks).all() and torch.isfinite(ious).all()

    # the whole import: keys, shapes, completeness pass; then the FCOS box regression is refused
    with pytest.raises(WeightImportError) as err:
        import_official_weights(path, arch)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "exp(scale * x)" in msg
    assert "rpn.head.bbox_pred" in msg and "relu(scale * x) * stride" in msg


def test_unknown_and_unsupported_keys_are_refused(tmp_path):
    sd = _fake_state_dict(_keys(LITE))

    def refused(extra: dict, pattern: str, *, ddp: bool = True, drop=(), arch="centermask_lite_v19"):
        bad = {k: v for k, v in sd.items() if k not in drop}
        bad.update(extra)
        path = _save(tmp_path, bad, ddp)
        with pytest.raises(WeightImportError, match=pattern) as err:
            import_official_weights(path, arch)
        assert "\n" not in str(err.value) and str(path) in str(err.value)

    key = "roi_heads.mask.feature_extractor.extra_conv.weight"
    refused({key: torch.zeros(3)}, r"no segcore counterpart: " + re.escape(key))
    refused({key: torch.zeros(3)}, re.escape(key), ddp=False)
    refused({"rpn.head.scales.7.scale": torch.ones(1)}, r"keys not in centermask_lite_v19: .*scales\.7\.scale")
    refused({"backbone.body.stage3.OSA3_1.layers.0.OSA3_1_0/conv.offset.weight": torch.zeros(27, 256, 3, 3)},
            r"deformable convolutions.*OSA3_1_0/conv\.offset\.weight")
    refused({"rpn.head.shared_tower.0.weight": torch.zeros(128, 128, 3, 3)}, r"FCOSSharedHead.*shared_tower")
    refused({"backbone.fpn.fpn_inner2.1.weight": torch.zeros(128)}, r"GroupNorm in the FPN")
    refused({"roi_heads.box.predictor.cls_score.weight": torch.zeros(81, 1024)}, r"a box head")
    refused({"roi_heads.mask.predictor.mask_fcn_logits.weight": torch.zeros(80, 128, 1, 1)},
            r"mask_fcn_logits\.weight has 80 rows, expected 81")
    refused({}, r"1 keys missing for --arch centermask_lite_v19.*ctrness\.bias", drop=("rpn.head.centerness.bias",))
    # a Lite file for the full model: shape mismatch named before the regression refusal
    refused({}, r"shape mismatch for centermask_v39: .*OSA2_1_concat/conv\.weight "
                r"\(256, 512, 1, 1\) vs \(256, 768, 1, 1\)", arch="centermask_v39")
    running = "backbone.body.stem.stem_1/norm.running_var"
    refused({running: torch.zeros(64)}, r"running_var <= 0.*" + re.escape(running))
