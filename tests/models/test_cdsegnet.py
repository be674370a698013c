"""srkd's CDSegNet computes what CDSegNet's own test-time inference computes, for a noise seed.

The fixture (tests/models/fixtures/cdsegnet_small.pt) holds an input and the logits of
CDSegNet's DefaultSegmentorV2.inference (commit 87b603d, CPU, flash off, order shuffling off)
after torch.manual_seed(noise_seed) and after torch.manual_seed(noise_seed + 1), written by
tests/models/make_cdsegnet_fixtures.py with weights regenerated from CDSegNet's parameter names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srkd.errors import CheckpointError
from srkd.models import count_parameters, create_model, load_pointcept_checkpoint
from srkd.models.pointcept_arch import preset_for, recognize
from tests.models.pointcept_fixture import generated_weights
from tests.models.test_pointcept_equivalence import TOLERANCE, _batch, _compare

FIXTURE = Path(__file__).parent / "fixtures" / "cdsegnet_small.pt"


@pytest.fixture(scope="module")
def fx() -> dict:
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def _checkpoint(fx: dict) -> dict:
    weights = generated_weights({k: tuple(v) for k, v in fx["shapes"].items()})
    return {"state_dict": {f"module.backbone.{k}": v for k, v in weights.items()}}


def _model(fx: dict, seed: int) -> torch.nn.Module:
    model = create_model("test_cdsegnet", noise_seed=seed).eval()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fx["shapes"]  # CDSegNet's names
    report = load_pointcept_checkpoint(_checkpoint(fx), model)
    assert report.ok and not report.unexpected
    return model


def test_small_cdsegnet_matches_cdsegnet_inference_for_two_noise_seeds(fx):
    seed = fx["noise_seed"]
    for s, expected in ((seed, fx["logits"]), (seed + 1, fx["logits_next_seed"])):
        diff, agree = _compare(_model(fx, s), {**fx, "logits": expected})
        assert diff <= TOLERANCE and agree == 1.0, (s, diff, agree)


def test_the_output_depends_on_the_noise_draw_and_repeats_for_a_seed(fx):
    model = _model(fx, fx["noise_seed"])
    with torch.no_grad():
        a, b = model(_batch(fx)).logits, model(_batch(fx)).logits
    assert torch.equal(a, b)  # one seed, one draw: a teacher is a function of its input
    moved = float((fx["logits"].argmax(1) != fx["logits_next_seed"].argmax(1)).float().mean())
    assert 0.0 < moved < 0.5  # CDSegNet's own labels move between seeds


def test_cdsegnet_checkpoints_are_recognised(fx):
    state = {k: v for k, v in _checkpoint(fx)["state_dict"].items()}
    from srkd.models.pointcept import read_state_dict

    arch = recognize(read_state_dict(state)[0])
    assert (arch.family, arch.in_channels, arch.num_classes) == ("CDSegNet", 6, 20)
    preset, args = preset_for(arch)
    assert preset == "cdsegnet" and args["c"]["stride"] == (4, 4)
    assert load_pointcept_checkpoint(state, create_model(preset, **args)).ok
    state["module.backbone._tm_dec0.cross_block1.q_cpe.1.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="tm_bidirectional"):
        recognize(read_state_dict(state)[0])


@pytest.mark.parametrize(
    ("name", "args", "count"),
    [
        ("cdsegnet", {}, 101_387_354),  # ScanNet, 20 classes (the SRKD release's teacher, ~101.4M)
        ("cdsegnet", {"num_classes": 200}, 101_399_054),  # ScanNet200
        ("cdsegnet", {"num_classes": 16, "in_channels": 4, "c_in_channels": 4}, 101_370_964),  # nuScenes
        ("sonata_semseg", {}, 124_794_148),
    ],
)
def test_preset_parameter_counts(name, args, count):
    with torch.device("meta"):  # shapes only: no memory, no time
        assert count_parameters(create_model(name, **args)) == count
