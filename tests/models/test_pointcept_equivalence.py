"""srkd's PTv3 computes what Pointcept's own PT-v3m1 and PT-v3m2 (Sonata) code computes, on
stored Pointcept outputs.

The fixtures (tests/models/fixtures/pointcept_v3m{1,2}_{small,base}.pt) hold inputs and the logits
of Pointcept's PT-v3m1 / PT-v3m2 (commit d74c646, CPU, flash off, order shuffling off), written by
tests/models/make_pointcept_fixtures.py; see pointcept_fixture.py for the format.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srkd.data.collate import PointBatch
from srkd.models import create_model, load_pointcept_checkpoint
from srkd.models.ptv3 import PointTransformerV3
from tests.models.pointcept_fixture import (
    BASE_CONFIG,
    SMALL_CONFIG,
    V3M2_BASE_CONFIG,
    V3M2_SMALL_CONFIG,
    generated_weights,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = 1e-4  # max |logit difference| allowed (fp32; the fixtures agree to ~1e-5)


def _fixture(name: str) -> dict:
    """pointcept_v3m1_<name>.pt, or pointcept_<name>.pt for a name with its family (v3m2_small)."""
    file = f"pointcept_{name}.pt" if name.startswith("v3m") else f"pointcept_v3m1_{name}.pt"
    return torch.load(FIXTURES / file, map_location="cpu", weights_only=True)


def _batch(fx: dict) -> PointBatch:
    n = fx["coord"].shape[0]
    return PointBatch(
        coord=fx["coord"], grid_coord=fx["grid_coord"].to(torch.int32), feat=fx["feat"],
        offset=fx["offset"], origin_index=torch.arange(n), segment=torch.full((n,), -1),
        scene_ids=[f"s{i}" for i in range(len(fx["offset"]))], views=torch.full((len(fx["offset"]),), -1),
    )  # fmt: skip


def _as_pointcept_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """srkd-named tensors under the keys a DDP Pointcept run saves (module.backbone.*, module.seg_head.*)."""
    return {"state_dict": {("module." + k if k.startswith("seg_head.") else f"module.backbone.{k}"): v
                           for k, v in state.items()}}


def _plain(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _small_model(unpooling: str, family: str = "v3m1") -> PointTransformerV3:
    fx = _fixture(f"{family}_small" if family != "v3m1" else "small")
    config = V3M2_SMALL_CONFIG if family == "v3m2" else SMALL_CONFIG
    assert fx["config"] == _plain(config)
    model = PointTransformerV3(**config, unpooling=unpooling, variant=family).eval()
    report = load_pointcept_checkpoint(fx, model)
    assert report.ok and not report.unexpected and len(report.loaded) == len(model.state_dict())
    return model


def _compare(model: torch.nn.Module, fx: dict) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(_batch(fx)).logits
    diff = float((logits - fx["logits"]).abs().max())
    agree = float((logits.argmax(1) == fx["logits"].argmax(1)).float().mean())
    return diff, agree


def test_small_config_matches_pointcept_logits():
    fx = _fixture("small")
    assert len(fx["offset"]) == 2 and fx["pointcept_commit"].startswith("d74c646")
    diff, agree = _compare(_small_model("v3m1"), fx)
    assert diff <= TOLERANCE and agree == 1.0, (diff, agree)


def test_v3m2_decoder_does_not_match_pointcept_v3m1():
    # the decoder's first xCPE on the sum (v3m2) instead of the projected skip (v3m1) changes
    # the logits far beyond the tolerance: the fixture can tell the two semantics apart
    diff, agree = _compare(_small_model("v3m2"), _fixture("small"))
    assert diff > 0.5 and agree < 0.95


def _check_preset(fixture: str, model: torch.nn.Module, config: dict) -> None:
    """`model` with weights regenerated from their names gives the fixture's logits."""
    fx = _fixture(fixture)
    assert fx["config"] == _plain(config)
    weights = generated_weights({k: tuple(v.shape) for k, v in model.state_dict().items()})
    report = load_pointcept_checkpoint(_as_pointcept_checkpoint(weights), model)
    assert report.ok and not report.unexpected
    diff, agree = _compare(model.eval(), fx)
    assert diff <= TOLERANCE and agree == 1.0, (diff, agree)


def test_ptv3_base_preset_matches_pointcept_base_config():
    model = create_model("ptv3_base", num_classes=20, in_channels=6)
    assert model.unpooling == "v3m1"
    _check_preset("base", model, BASE_CONFIG)


def test_v3m2_small_config_matches_pointcept_logits():
    fx = _fixture("v3m2_small")
    assert len(fx["offset"]) == 2 and fx["feat"].shape[1] == 9
    diff, agree = _compare(_small_model("v3m2", "v3m2"), fx)
    assert diff <= TOLERANCE and agree == 1.0, (diff, agree)


def test_sonata_semseg_preset_matches_pointcept_v3m2_base_config():
    # Sonata's semseg network (124.8M parameters)
    model = create_model("sonata_semseg", num_classes=20)
    assert model.in_channels == 9 and model.pointcept_family == "PT-v3m2"
    _check_preset("v3m2_base", model, V3M2_BASE_CONFIG)


def test_generated_weights_depend_on_key_and_shape_only():
    a = generated_weights({"x.weight": (4, 3), "y.running_var": (5,), "z.num_batches_tracked": ()})
    b = generated_weights({"z.num_batches_tracked": (), "x.weight": (4, 3), "y.running_var": (5,)})
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert bool((a["y.running_var"] > 0).all()) and a["z.num_batches_tracked"].dtype == torch.long


@pytest.mark.parametrize("mode", ["v3m0", ""])
def test_unknown_unpooling_is_refused(mode):
    from srkd.errors import ConfigError

    with pytest.raises(ConfigError, match="unpooling"):
        create_model("test_ptv3", unpooling=mode)
