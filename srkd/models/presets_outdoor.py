"""PTv3 presets of the outdoor (lidar) recipe: input coord + strength (4 channels), 16 classes.

Widths, and why:
    ptv3_base_outdoor   Pointcept's nuScenes PTv3 (configs/nuscenes/semseg-pt-v3m1-0-base.py):
                        the same encoder / decoder as the ScanNet base (enc 32/64/128/256/512,
                        depths 2/2/2/6/2; dec 64/64/128/256), in_channels 4, 16 classes, PT-v3m1
                        decoder. The release's nuScenes teacher is CDSegNet, a PTv3 variant whose
                        backbone has these widths; this preset is the teacher a Pointcept nuScenes
                        PTv3 checkpoint loads into (`--teacher-model ptv3_base_outdoor`).
    ptv3_half_outdoor   the SRKD student (docs/method.md): every width of the base halved (enc
                        16/32/64/128/256, dec 32/32/64/128, same depths and heads), as indoors:
                        the release uses one student architecture for both domains.
    test_ptv3_outdoor   a tiny three-stage PTv3 for tests (the indoor test_ptv3 widths).
A SemanticKITTI model takes the same presets with `num_classes=19`. Every preset takes
overrides like the indoor ones (`create_model("ptv3_half_outdoor", num_classes=19)`).
"""

from __future__ import annotations

from srkd.models._registry import MODELS
from srkd.models.ptv3 import PTV3_BASE, PTV3_HALF, TEST_PTV3, PointTransformerV3

OUTDOOR_INPUT: dict = dict(in_channels=4, num_classes=16)
"""coord (3) + strength (1) in, nuScenes-16 out (override num_classes=19 for SemanticKITTI)."""


def _build(preset: dict, overrides: dict) -> PointTransformerV3:
    return PointTransformerV3(**{**OUTDOOR_INPUT, **preset, **overrides})


@MODELS.register
def ptv3_base_outdoor(**overrides) -> PointTransformerV3:
    """Pointcept's nuScenes PTv3 base (PT-v3m1), coord + strength input."""
    return _build(PTV3_BASE, overrides)


@MODELS.register
def ptv3_half_outdoor(**overrides) -> PointTransformerV3:
    """SRKD outdoor student: ptv3_base_outdoor with every width halved."""
    return _build(PTV3_HALF, overrides)


@MODELS.register
def test_ptv3_outdoor(**overrides) -> PointTransformerV3:
    """Tiny three-stage PTv3 with the outdoor input, for tests."""
    return _build(TEST_PTV3, overrides)
