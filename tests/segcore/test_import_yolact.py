"""Official YOLACT / YOLACT++ checkpoint import: every official configuration, refusals.

For each configuration a state_dict keyed and shaped exactly as the official key list
(``tests/fixtures/yolact_keys_<config>_config.txt``, copied from ``../shared/reference``; made by
instantiating the official dbolya/yolact modules) is filled with seeded random values
(``yolact_parity_weights.parity_state_dict``), saved, imported through
``import_official_weights``, and run once at its native input size.
Expected shapes are those the official code gives (forward of the official modules on CPU):
v1 at 550: 19,248 priors, 138 x 138 x 32 prototypes; YOLACT++ at 550: 57,744 priors (9 per
cell); im700: 30,963 priors (P3..P7 88, 44, 22, 11, 6), 176 x 176 x 32 prototypes.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path

import pytest
import torch

from segcore.importers import WeightImportError, import_official_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("yolact_parity_weights", FIXTURES / "yolact_parity_weights.py")
pw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pw)

# arch -> (official config, S, priors, proto side)
CONFIGS = {
    "yolact_r101_550": ("base", 550, 19248, 138),
    "yolact_r50_550": ("resnet50", 550, 19248, 138),
    "yolact_darknet53_550": ("darknet53", 550, 19248, 138),
    "yolact_r101_700": ("im700", 700, 30963, 176),
    "yolact_plus_r50_550": ("plus_resnet50", 550, 57744, 138),
    "yolact_plus_r101_550": ("plus_base", 550, 57744, 138),
}


def official_shapes(config: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (FIXTURES / f"yolact_keys_{config}_config.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            shapes[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    return shapes


@pytest.fixture(scope="module")
def r50_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "yolact_resnet50_54_800000.pth"
    torch.save(pw.parity_state_dict(official_shapes("resnet50"), 0), path)
    return path


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_official_configuration_imports_and_runs(arch, tmp_path):
    config, size, num_priors, proto_side = CONFIGS[arch]
    shapes = official_shapes(config)
    state = pw.parity_state_dict(shapes, 7)
    path = tmp_path / f"yolact_{config}_54_800000.pth"
    torch.save(state, path)
    del state
    model, report, categories = import_official_weights(path, arch)
    assert report.missing == [] and report.ignored == []
    assert report.mapped == len(shapes)  # every official key consumed
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert model.info.num_classes == 80 and len(categories) == 80 and not model.training
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size) * 255)
    k = 32
    assert out["loc"].shape == (1, num_priors, 4)
    assert out["conf"].shape == (1, num_priors, 81)
    assert out["mask_coef"].shape == (1, num_priors, k)
    assert out["proto"].shape == (1, proto_side, proto_side, k)
    assert out["priors"].shape == (num_priors, 4)
    assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
    assert (model.maskiou_net is not None) == arch.startswith("yolact_plus")
    assert len(out["detections"]) == 1 and out["detections"][0]["masks"].shape[1:] == (proto_side, proto_side)


def test_legacy_keys_ignored_and_reported(r50_file, tmp_path):
    state = torch.load(r50_file, weights_only=True)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)  # v1.0 files
    state["fpn.downsample_layers.2.bias"] = torch.zeros(256)
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(1)  # dropped by official load_weights
    path = tmp_path / "legacy.pth"
    torch.save(state, path)
    model, report, _ = import_official_weights(path, "yolact_r50_550")
    assert report.ignored == ["backbone.layer1.0.conv1.weight", "fpn.downsample_layers.2.bias",
                              "fpn.downsample_layers.2.weight"]
    assert report.mapped == 354 and report.missing == []
    assert torch.equal(model.state_dict()["fpn.lat_layers.0.weight"], state["fpn.lat_layers.0.weight"])


def test_unknown_keys_refused_one_line(r50_file, tmp_path):
    state = torch.load(r50_file, weights_only=True)
    state["head.extra.weight"] = torch.zeros(3)
    state["fpn.something"] = torch.zeros(3)
    torch.save(state, tmp_path / "u.pth")
    with pytest.raises(WeightImportError) as err:
        import_official_weights(tmp_path / "u.pth", "yolact_r50_550")
    msg = str(err.value)
    assert "\n" not in msg and "u.pth" in msg
    assert "2 keys unknown" in msg and "fpn.something" in msg and "head.extra.weight" in msg


def test_wrong_shape_refused_naming_key_and_shapes(r50_file, tmp_path):
    state = torch.load(r50_file, weights_only=True)
    state["fpn.pred_layers.1.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(state, tmp_path / "s.pth")
    with pytest.raises(WeightImportError) as err:
        import_official_weights(tmp_path / "s.pth", "yolact_r50_550")
    msg = str(err.value)
    assert "\n" not in msg
    assert "fpn.pred_layers.1.weight (256, 256, 1, 1) (expected (256, 256, 3, 3))" in msg


def test_wrong_architecture_refused(r50_file):
    with pytest.raises(WeightImportError, match="keys missing for --arch yolact_r101_550"):
        import_official_weights(r50_file, "yolact_r101_550")  # R50 file, R101 arch: missing keys
    with pytest.raises(WeightImportError, match=r"shape mismatch for yolact_plus_r50_550: "
                       r"prediction_layers.0.bbox_layer.weight \(12, 256, 3, 3\) \(expected \(36, 256, 3, 3\)\)"):
        import_official_weights(r50_file, "yolact_plus_r50_550")  # v1 file into ++: 3 vs 9 priors per cell


def test_custom_class_count_inferred(tmp_path):
    shapes = official_shapes("resnet50")
    shapes["prediction_layers.0.conf_layer.weight"] = (3 * 6, 256, 3, 3)  # K = 5
    shapes["prediction_layers.0.conf_layer.bias"] = (18,)
    shapes["semantic_seg_conv.weight"] = (5, 256, 1, 1)
    shapes["semantic_seg_conv.bias"] = (5,)
    torch.save(pw.parity_state_dict(shapes, 3), tmp_path / "k5.pth")
    model, report, categories = import_official_weights(tmp_path / "k5.pth", "yolact_r50_550")
    assert model.info.num_classes == 5 and [c["id"] for c in categories] == [1, 2, 3, 4, 5]


def test_mmdetection_checkpoint_refused_with_reason(tmp_path):
    sd = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7), "neck.lateral_convs.0.conv.weight": torch.zeros(1),
          "bbox_head.conv_cls.weight": torch.zeros(1), "mask_head.protonet.0.weight": torch.zeros(1)}
    torch.save({"meta": {"mmdet_version": "2.5.0"}, "state_dict": sd}, tmp_path / "yolact_r50_1x8_coco.pth")
    with pytest.raises(WeightImportError, match="mmdetection YOLACT checkpoint.*P6 from C5") as err:
        import_official_weights(tmp_path / "yolact_r50_1x8_coco.pth", "yolact_r50_550")
    assert "\n" not in str(err.value)


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_code_executing_pickle_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"prediction_layers.0.conf_layer.weight": _Evil()}, f)
    with pytest.raises(WeightImportError, match="not a loadable weights-only checkpoint"):
        import_official_weights(path, "yolact_r50_550")
    assert not (tmp_path / "PWNED").exists()
