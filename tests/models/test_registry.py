"""The model registry and create_model."""

from __future__ import annotations

import pytest

from srkd.errors import ConfigError
from srkd.models import MODELS, count_parameters, create_model, list_models
from srkd.models.spunet import SpUNet


def test_spunet_presets_are_registered() -> None:
    names = list_models()
    assert {"spunet_small", "spunet_base", "test_spunet"} <= set(names)
    assert names == sorted(names)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; known: .*spunet_small"):
        create_model("nope")


def test_overrides_reach_the_constructor_and_are_recorded() -> None:
    model = create_model("test_spunet", num_classes=7, in_channels=3)
    assert isinstance(model, SpUNet) and model.num_classes == 7 and model.in_channels == 3
    assert model.srkd_name == "test_spunet" and model.srkd_args == {"num_classes": 7, "in_channels": 3}
    with pytest.raises(ConfigError, match="does not take"):
        create_model("test_spunet", not_an_arg=1)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        MODELS.register(lambda **kw: None, name="test_spunet")


def test_count_parameters() -> None:
    model = create_model("test_spunet")
    total = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters()) > 0
    model.final.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - model.final.weight.numel()
