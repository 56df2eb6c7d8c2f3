"""Official centermask2 key lists (``keys_centermask_V_39_eSE_FPN_ms_3x.txt``,
``keys_centermask_lite_V_19_eSE_FPN_ms_4x.txt``) import with zero missing / unexpected keys; the
filled models run forward + post-processing with finite outputs of the documented shapes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from segcore.importers import WeightImportError, import_official_weights
from segcore.modeling.registry import family_of

REF = Path(__file__).resolve().parents[3] / "shared" / "reference"


def _keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    path = REF / name
    if not path.is_file():
        pytest.fail(f"{path} not found: these import tests need ../shared/reference beside the repo")
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^(\S+) \(([\d, ]*)\)$", line.strip())
        if m:
            shape = tuple(int(v) for v in m.group(2).replace(" ", "").split(",") if v)
            out.append((m.group(1), shape))
    return out


def _fake_state_dict(keys):
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in keys:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    return sd


@pytest.mark.parametrize("keyfile,arch,tensors,channels", [
    ("keys_centermask_V_39_eSE_FPN_ms_3x.txt", "centermask_v39", 293, 256),
    ("keys_centermask_lite_V_19_eSE_FPN_ms_4x.txt", "centermask_lite_v19", 165, 128),
])
def test_official_keys_import(tmp_path, keyfile, arch, tensors, channels):
    keys = _keys(keyfile)
    assert len(keys) == tensors
    assert any("/" in k for k, _ in keys)  # VoVNet names
    sd = _fake_state_dict(keys)
    path = tmp_path / "model.pth"
    torch.save({"model": sd, "iteration": 1}, path)
    model, report, cats = import_official_weights(path, arch)
    assert report.missing == [] and report.ignored == [] and report.mapped == len(keys) and len(cats) == 80
    own = model.state_dict()
    assert set(own) == {k for k, _ in keys}  # zero missing, zero unexpected
    for k, shape in keys:
        assert tuple(own[k].shape) == shape
        assert torch.equal(own[k].float(), sd[k].float()), k
    assert model.info.arch_kwargs["norm"] == "FrozenBN"

    h, w = 256, 320
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w) * 255, score_threshold=0.0)
        n_loc = sum(-(-h // s) * -(-w // s) for s in (8, 16, 32, 64, 128))  # P6 / P7: stride-2 convs, pad 1
        assert out["logits"].shape == (1, n_loc, 80) and out["bbox_reg"].shape == (1, n_loc, 4)
        assert out["ctrness"].shape == (1, n_loc) and out["locations"].shape == (n_loc, 2)
        assert [tuple(f.shape) for f in out["features"]] == [(1, channels, h // s, w // s) for s in (8, 16, 32)]
        assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
        assert all(torch.isfinite(f).all() for f in out["features"])
        inst = family_of(model).make_postprocess(model)(out, [(2 * h, 2 * w)], input_sizes=[(h, w)])[0]
    assert 0 < len(inst) <= 50
    assert inst.pred_masks.shape == (len(inst), 2 * h, 2 * w) and inst.pred_masks.dtype == torch.bool
    # mask scores (box score x MaskIoU) are not clamped, as officially: they may leave [0, 1] a little
    assert torch.isfinite(inst.scores).all() and ((inst.scores >= -0.05) & (inst.scores <= 1.05)).all()
    assert inst.box_scores is not None and ((inst.box_scores >= 0) & (inst.box_scores <= 1)).all()
    assert torch.isfinite(inst.pred_boxes).all()


def test_aliases_bare_state_dict_and_refusals(tmp_path):
    keys = _keys("keys_centermask_lite_V_19_eSE_FPN_ms_4x.txt")
    sd = {k.replace(".ctrness.", ".centerness."): v for k, v in _fake_state_dict(keys).items()}
    sd["pixel_mean"] = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1)
    sd["pixel_std"] = torch.ones(3, 1, 1)
    sd["backbone.bottom_up.stem.stem_1/norm.num_batches_tracked"] = torch.tensor(0)
    path = tmp_path / "bare.pth"
    torch.save(sd, path)
    model, report, _ = import_official_weights(path, "centermask_lite_v19")
    assert report.missing == [] and sorted(report.ignored) == sorted(
        ["pixel_mean", "pixel_std", "backbone.bottom_up.stem.stem_1/norm.num_batches_tracked"])
    assert torch.equal(model.proposal_generator.fcos_head.ctrness.weight,
                       sd["proposal_generator.fcos_head.centerness.weight"])

    sd["roi_heads.box_head.fc1.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(WeightImportError, match=r"roi_heads\.box_head\.fc1\.weight"):
        import_official_weights(path, "centermask_lite_v19")
    del sd["roi_heads.box_head.fc1.weight"]
    key = "roi_heads.mask_head.mask_fcn1.weight"
    sd[key] = torch.zeros(64, 128, 3, 3)
    torch.save(sd, path)
    with pytest.raises(WeightImportError, match=re.escape(f"{key} (64, 128, 3, 3) vs (128, 128, 3, 3)")):
        import_official_weights(path, "centermask_lite_v19")
    with pytest.raises(WeightImportError, match="shape mismatch|keys not in"):  # Lite file into the full model
        import_official_weights(path, "centermask_v39")
