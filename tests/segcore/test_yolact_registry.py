"""Architecture registry."""

from __future__ import annotations

import pytest
import torch

from segcore.modeling import ARCHITECTURES, build_model, list_architectures, register


def test_known_architectures():
    assert {"yolact_r50_550", "yolact_r101_550", "yolact_tiny"} <= set(list_architectures())
    assert list_architectures() == sorted(ARCHITECTURES)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="yolact_tiny"):
        build_model("yolact_nope", num_classes=3)


def test_duplicate_refused():
    with pytest.raises(ValueError, match="already registered"):
        register("yolact_tiny")(lambda **kw: None)


def test_register_new_and_num_classes_check():
    name = "test_dummy_arch_registry"
    register(name)(lambda *, num_classes: torch.nn.Linear(1, num_classes))
    try:
        assert build_model(name, num_classes=2).out_features == 2
        with pytest.raises(ValueError):
            build_model(name, num_classes=0)
    finally:
        del ARCHITECTURES[name]


def test_attributes_and_rebuild():
    model = build_model("yolact_tiny", num_classes=5, input_size=96, num_prototypes=8)
    assert model.arch_name == "yolact_tiny"
    assert model.num_classes == 5 and model.input_size == 96
    assert model.arch_kwargs["num_prototypes"] == 8
    rebuilt = build_model(model.arch_name, num_classes=model.num_classes, **model.arch_kwargs)
    assert rebuilt.load_state_dict(model.state_dict()) is not None
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert model.priors.pred_scales == [int(s / 550 * 96) for s in (24, 48, 96, 192, 384)]
