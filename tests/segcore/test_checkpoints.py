"""segcore.checkpoints: format, weights_only loading, validation errors."""

from __future__ import annotations

import pytest
import torch

from segcore.checkpoints import FORMAT, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from segcore.modeling.registry import build_model

CATS = [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}, {"id": 11, "name": "c"}]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("yolact_tiny", num_classes=3, input_size=96)


def test_roundtrip(tiny, tmp_path, monkeypatch):
    path = tmp_path / "sub" / "m.pth"
    opt = torch.optim.SGD(tiny.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(path, tiny, categories=CATS, iteration=7, optimizer=opt, meta={"note": "x"})
    assert path.is_file() and not path.with_name("m.pth.tmp").exists()

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    model, info = load_checkpoint(path)
    assert calls and all(c is True for c in calls)
    assert not model.training
    assert info["format"] == FORMAT and info["arch"] == "yolact_tiny" and info["iteration"] == 7
    assert info["categories"] == CATS and info["num_classes"] == 3 and info["input_size"] == 96
    assert info["meta"] == {"note": "x"} and isinstance(info["optimizer"], dict) and "model" not in info
    assert model.info == tiny.info
    ref = tiny.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_save_validates_categories(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="'categories' has 2 entries"):
        save_checkpoint(tmp_path / "m.pth", tiny, categories=CATS[:2])


def _write(tmp_path, tiny, **changes):
    path = tmp_path / "c.pth"
    save_checkpoint(path, tiny, categories=CATS)
    ckpt = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if v is ...:
            del ckpt[k]
        else:
            ckpt[k] = v
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("changes, pattern", [
    ({"format": "other"}, r"c\.pth: key 'format' is 'other'"),
    ({"format": ...}, r"c\.pth: key 'format' missing"),
    ({"arch": "nope"}, r"c\.pth: key 'arch' is 'nope', not a known architecture"),
    ({"categories": CATS[:1]}, r"c\.pth: key 'categories' has 1 entries but 'num_classes' is 3"),
    ({"categories": [{"id": "x", "name": "a"}] * 3}, r"c\.pth: key 'categories\[0\]'"),
    ({"num_classes": "3"}, r"c\.pth: key 'num_classes' must be int"),
    ({"model": ...}, r"c\.pth: key 'model' missing"),
    ({"arch_kwargs": {"input_size": 96, "bogus": 1}}, r"c\.pth: key 'arch_kwargs' cannot build"),
    ({"input_size": 128}, r"c\.pth: key 'input_size' is 128"),
])
def test_invalid_checkpoints(tiny, tmp_path, changes, pattern):
    path = _write(tmp_path, tiny, **changes)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


def test_state_dict_mismatch(tiny, tmp_path):
    ckpt_path = _write(tmp_path, tiny)
    ckpt = torch.load(ckpt_path, weights_only=True)
    key = next(iter(ckpt["model"]))
    ckpt["model"][key] = torch.zeros(1)
    torch.save(ckpt, ckpt_path)
    with pytest.raises(CheckpointError, match=r"c\.pth: key 'model'"):
        load_checkpoint(ckpt_path)
    del ckpt["model"][key]
    torch.save(ckpt, ckpt_path)
    with pytest.raises(CheckpointError, match=r"c\.pth: key 'model' does not match .*missing 1"):
        load_checkpoint(ckpt_path)


class _Evil:
    def __reduce__(self):  # would run code with weights_only=False
        return (print, ("pwned",))


def test_unreadable_files(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "g.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"g\.pth: cannot be read with torch.load\(weights_only=True\)"):
        load_checkpoint(garbage)
    evil = tmp_path / "evil.pth"
    torch.save({"format": FORMAT, "x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pth: cannot be read"):
        load_checkpoint(evil)
    bare = tmp_path / "bare.pth"
    torch.save(tiny.state_dict(), bare)
    with pytest.raises(CheckpointError, match=r"bare\.pth: key 'format' missing.*bare state_dict"):
        load_checkpoint(bare)


@pytest.mark.parametrize("arch", ["yolact_tiny", "blendmask_tiny", "centermask_tiny"])
def test_loaded_model_equals_saved_without_drawing_random_init(arch, tmp_path):
    torch.manual_seed(1)
    saved = build_model(arch, num_classes=2).eval()
    path = tmp_path / "m.pth"
    save_checkpoint(path, saved, categories=CATS[:2])
    rng = torch.get_rng_state()
    model, _ = load_checkpoint(path)  # built with random init skipped, then a strict load
    assert torch.equal(torch.get_rng_state(), rng)  # no random number was drawn
    ref_params, ref_buffers = dict(saved.named_parameters()), dict(saved.named_buffers())
    assert dict(model.named_parameters()).keys() == ref_params.keys()
    for k, v in model.named_parameters():
        assert torch.equal(v, ref_params[k]), k
    for k, v in model.named_buffers():  # non-persistent ones (pixel_mean, ...) included
        assert torch.equal(v, ref_buffers[k]), k
    # the skip is scoped to the build: initialisation draws random numbers again afterwards
    assert torch.nn.init.normal_(torch.zeros(64)).abs().sum() > 0
    assert torch.zeros(64).uniform_().abs().sum() > 0
