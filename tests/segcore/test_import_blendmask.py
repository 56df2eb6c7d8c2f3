"""Official AdelaiDet BlendMask key lists import with zero missing / unexpected keys; safe .pkl."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.importers import WeightImportError, import_official_weights
from segcore.importers._pickle import load_numpy_pickle

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


@pytest.mark.parametrize("keyfile,arch,input_hw,levels", [
    ("keys_blendmask_R_50_1x.txt", "blendmask_r50", (128, 160), 5),
    ("keys_blendmask_RT_R_50.txt", "blendmask_rt_r50", (128, 160), 3),
])
def test_official_keys_import(tmp_path, keyfile, arch, input_hw, levels):
    keys = _keys(keyfile)
    sd = _fake_state_dict(keys)
    path = tmp_path / "model.pth"
    torch.save({"model": sd, "iteration": 1}, path)
    model, report, cats = import_official_weights(path, arch)
    assert report.missing == [] and report.mapped == len(keys) and len(cats) == 80
    own = model.state_dict()
    assert set(own) == {k for k, _ in keys}
    for k, shape in keys:
        assert tuple(own[k].shape) == shape
        assert torch.equal(own[k].float(), sd[k].float()), k
    with torch.no_grad():
        out = model(torch.rand(1, 3, *input_hw) * 255)
    h, w = input_hw
    n_loc = sum(-(-h // s) * -(-w // s) for s in (8, 16, 32, 64, 128)[:levels])  # P6 / P7: stride-2 convs, pad 1
    assert out["logits"].shape == (1, n_loc, 80) and out["bbox_reg"].shape == (1, n_loc, 4)
    assert out["ctrness"].shape == (1, n_loc) and out["top_feats"].shape == (1, n_loc, 784)
    assert out["bases"].shape == (1, 4, h // 4, w // 4)
    assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))


def test_centerness_alias_bare_state_dict_and_unknown_keys(tmp_path):
    keys = _keys("keys_blendmask_R_50_1x.txt")
    sd = {k.replace(".ctrness.", ".centerness."): v for k, v in _fake_state_dict(keys).items()}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bare.pth"
    torch.save(sd, path)
    _, report, _ = import_official_weights(path, "blendmask_r50")
    assert report.missing == []
    sd["roi_heads.extra.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(WeightImportError, match="roi_heads.extra.weight"):
        import_official_weights(path, "blendmask_r50")


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_numpy_pickle_is_restricted(tmp_path):
    good = tmp_path / "R-50.pkl"
    with open(good, "wb") as fh:
        pickle.dump({"model": {"conv1_w": np.ones((2, 3), np.float32)}, "__author__": "x"}, fh)
    arrays = load_numpy_pickle(good)
    assert list(arrays) == ["conv1_w"] and arrays["conv1_w"].shape == (2, 3)
    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    with pytest.raises(WeightImportError, match="not allowed"):
        load_numpy_pickle(bad)
