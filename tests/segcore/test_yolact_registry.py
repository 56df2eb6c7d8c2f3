"""Architecture registry and the model contract's ModelInfo."""

from __future__ import annotations

import pytest
import torch

from segcore.modeling import ARCHITECTURES, ModelInfo, build_model, family_of, list_architectures, register


def test_known_architectures():
    assert {"yolact_r50_550", "yolact_r101_550", "yolact_tiny"} <= set(list_architectures())
    assert list_architectures() == sorted(ARCHITECTURES)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="yolact_tiny"):
        build_model("yolact_nope", num_classes=3)


def test_duplicate_refused():
    with pytest.raises(ValueError, match="already registered"):
        register("yolact_tiny", family="yolact")(lambda **kw: None)


def test_register_new_needs_model_info_and_checks_num_classes():
    name = "test_dummy_arch_registry"

    def builder(*, num_classes):
        m = torch.nn.Linear(1, num_classes)
        m.info = ModelInfo(arch=name, family="yolact", num_classes=num_classes, input_size=32)
        return m

    register(name, family="yolact")(builder)
    register(name + "_bare", family="yolact")(lambda *, num_classes: torch.nn.Linear(1, num_classes))
    try:
        assert build_model(name, num_classes=2).out_features == 2
        with pytest.raises(ValueError):
            build_model(name, num_classes=0)
        with pytest.raises(ValueError, match="did not set model.info"):
            build_model(name + "_bare", num_classes=2)
    finally:
        del ARCHITECTURES[name], ARCHITECTURES[name + "_bare"]


def test_model_info_and_rebuild():
    model = build_model("yolact_tiny", num_classes=5, input_size=96, num_prototypes=8)
    info = model.info
    assert isinstance(info, ModelInfo) and info.arch == "yolact_tiny" and info.family == "yolact"
    assert family_of(model).name == "yolact"
    assert info.num_classes == 5 and info.input_size == 96 and info.input_policy == "square"
    assert info.arch_kwargs["num_prototypes"] == 8
    with pytest.raises(AttributeError):
        info.arch = "x"  # frozen: set once by the builder
    rebuilt = build_model(info.arch, num_classes=info.num_classes, **info.arch_kwargs)
    result = rebuilt.load_state_dict(model.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert model.priors.pred_scales == [int(s / 550 * 96) for s in (24, 48, 96, 192, 384)]


def test_model_info_rejects_bad_policies():
    with pytest.raises(ValueError, match="input_policy"):
        ModelInfo(arch="a", family="f", num_classes=1, input_size=32, input_policy="round")
    with pytest.raises(ValueError, match="max_size"):
        ModelInfo(arch="a", family="f", num_classes=1, input_size=64, input_policy="short_side", max_size=32,
                  size_divisibility=32)
