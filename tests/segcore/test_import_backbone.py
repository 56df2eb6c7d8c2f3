"""ImageNet backbone files for the detectron2-style models: detectron2's MSRA R-50.pkl (Caffe2
blob names, stride on the 1x1 conv) fills backbone.bottom_up of BlendMask / CenterMask-R50,
read without executing code; unknown blobs are refused; `import-weights` and `train --init`
accept it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from segcore.importers import WeightImportError, import_official_weights
from segcore.importers.backbone import c2_resnet_to_d2, is_backbone_file, load_backbone_weights
from segcore.modeling.registry import build_model


def msra_r50_blobs(seed: int = 0) -> dict:
    """Blob names and shapes of detectron2's ImageNetPretrained/MSRA/R-50.pkl (Caffe2 ResNet-50:
    stem 7x7/64, stages res2..res5 with 3, 4, 6, 3 bottlenecks, branch1 projection on block 0,
    BN folded into _bn_s / _bn_b, a near-zero conv1_b, the fc1000 classifier, momentum blobs)."""
    rng = np.random.default_rng(seed)

    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    blobs = {"conv1_w": arr(64, 3, 7, 7), "conv1_b": arr(64) * 1e-9,
             "res_conv1_bn_s": arr(64), "res_conv1_bn_b": arr(64)}
    in_ch = 64
    for stage, n in zip(range(2, 6), (3, 4, 6, 3)):
        mid, out = 64 * 2 ** (stage - 2), 256 * 2 ** (stage - 2)
        for b in range(n):
            p = f"res{stage}_{b}_"
            c_in = in_ch if b == 0 else out
            for branch, shape in (("branch2a", (mid, c_in, 1, 1)), ("branch2b", (mid, mid, 3, 3)),
                                  ("branch2c", (out, mid, 1, 1))) \
                    + ((("branch1", (out, c_in, 1, 1)),) if b == 0 else ()):
                blobs[p + branch + "_w"] = arr(*shape)
                blobs[p + branch + "_bn_s"] = arr(shape[0])
                blobs[p + branch + "_bn_b"] = arr(shape[0])
        in_ch = out
    blobs["res2_0_branch2a_w_momentum"] = arr(64, 64, 1, 1)
    blobs["fc1000_w"] = arr(1000, 2048)
    blobs["fc1000_b"] = arr(1000)
    return blobs


@pytest.fixture(scope="module")
def r50_pkl(tmp_path_factory):
    blobs = msra_r50_blobs()
    path = tmp_path_factory.mktemp("w") / "R-50.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"blobs": blobs, "__author__": "MSRA"}, fh)
    return path, blobs


def test_msra_r50_fills_the_blendmask_backbone(r50_pkl):
    path, blobs = r50_pkl
    torch.manual_seed(0)
    model = build_model("blendmask_r50", num_classes=3)
    head_before = model.top_layer.weight.clone()
    report = load_backbone_weights(model, path)
    assert report.missing == [] and report.mapped == 53 * 3          # 53 convs: weight + bn scale + bn bias
    assert sorted(report.ignored) == ["conv1_b", "fc1000_b", "fc1000_w", "res2_0_branch2a_w_momentum"]
    bu = model.backbone.bottom_up
    assert torch.equal(bu.stem.conv1.weight, torch.from_numpy(blobs["conv1_w"]))
    assert torch.equal(bu.res3[0].conv1.weight, torch.from_numpy(blobs["res3_0_branch2a_w"]))
    assert torch.equal(bu.res4[5].conv3.norm.weight, torch.from_numpy(blobs["res4_5_branch2c_bn_s"]))
    assert torch.equal(bu.res5[0].shortcut.norm.bias, torch.from_numpy(blobs["res5_0_branch1_bn_b"]))
    assert bu.res3[0].conv1.stride == (2, 2) and bu.res3[0].conv2.stride == (1, 1)   # MSRA: stride in 1x1
    assert torch.equal(bu.res2[0].conv1.norm.running_var, torch.ones(64))               # folded BN: var 1
    assert torch.equal(model.top_layer.weight, head_before)                              # heads untouched


def test_import_weights_accepts_a_backbone_file_and_says_so(r50_pkl):
    path, _ = r50_pkl
    model, report, categories = import_official_weights(path, "centermask_r50")
    assert "backbone only" in report.summary() and report.missing == [] and report.mapped == 159
    assert len(categories) == 80 and model.info.num_classes == 80


def test_unknown_blobs_and_wrong_families_are_refused(r50_pkl):
    path, blobs = r50_pkl
    with pytest.raises(WeightImportError, match="res6_0_branch2a_w"):
        c2_resnet_to_d2({**blobs, "res6_0_branch2a_w": np.zeros(1, np.float32)}, source="x.pkl")
    small = build_model("blendmask_tiny", num_classes=2)
    with pytest.raises(WeightImportError, match="keys not in the D2ResNet backbone of blendmask_tiny"):
        load_backbone_weights(small, path)
    yolact = build_model("yolact_tiny", num_classes=2)
    with pytest.raises(WeightImportError, match="no backbone.bottom_up"):
        load_backbone_weights(yolact, path)


def test_backbone_file_detection():
    assert is_backbone_file({"conv1_w": 0, "res2_0_branch2a_w": 0})
    assert is_backbone_file({"backbone.bottom_up.stem.conv1.weight": 0, "backbone.bottom_up.res2.0.conv1.weight": 0})
    assert is_backbone_file({"stem.stem_1/conv.weight": 0, "stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight": 0})
    assert not is_backbone_file({"backbone.bottom_up.stem.conv1.weight": 0, "backbone.fpn_lateral3.weight": 0})


def test_train_init_and_offline_lookup_use_the_msra_file(r50_pkl, tmp_path, monkeypatch):
    from annotator.jobs.train import find_imagenet_backbone, load_init_weights

    path, blobs = r50_pkl
    model = build_model("centermask_r50", num_classes=2)
    notes = load_init_weights(model, path)
    assert "backbone only" in notes[0] and "mapped 159" in notes[0]
    assert torch.equal(model.backbone.bottom_up.res4[2].conv2.weight, torch.from_numpy(blobs["res4_2_branch2b_w"]))

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_imagenet_backbone("blendmask_r50") is None
    cached = tmp_path / "cache" / "annotator" / "weights" / "R-50.pkl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    assert find_imagenet_backbone("blendmask_r50") == cached
    assert find_imagenet_backbone("centermask_r50") == cached
    assert find_imagenet_backbone("blendmask_r101") is None and find_imagenet_backbone("centermask_v39") is None
