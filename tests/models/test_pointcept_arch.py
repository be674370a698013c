"""Recognising a Pointcept-style checkpoint's network from its tensors, and the one-line refusals."""

from __future__ import annotations

import pytest
import torch

from srkd.errors import CheckpointError
from srkd.models import create_model, load_pointcept_checkpoint
from srkd.models.pointcept import read_state_dict
from srkd.models.pointcept_arch import preset_for, recognize

from .test_pointcept_equivalence import _fixture


def _state(name: str) -> dict[str, torch.Tensor]:
    return read_state_dict(_fixture(name))[0]


def test_v3m1_and_v3m2_are_told_apart_with_their_shapes():
    v1, v2 = recognize(_state("small")), recognize(_state("v3m2_small"))
    assert (v1.family, v1.in_channels, v1.num_classes) == ("PT-v3m1", 6, 20)
    assert (v2.family, v2.in_channels, v2.num_classes) == ("PT-v3m2", 9, 20)
    assert v2.branches[""] == {"enc_channels": (8, 8, 16, 16), "enc_depths": (1, 1, 1, 2),
                               "dec_channels": (8, 8, 16), "dec_depths": (1, 1, 1)}


def test_recognised_shapes_build_a_model_that_loads_strictly():
    preset, args = preset_for(recognize(_state("v3m2_small")))
    assert preset == "sonata_semseg" and args["variant"] == "v3m2" and args["in_channels"] == 9
    model = create_model(preset, **args)
    assert load_pointcept_checkpoint(_fixture("v3m2_small"), model).ok


def test_preset_shapes_give_the_preset_itself():
    with torch.device("meta"):  # shapes only
        state = dict(create_model("sonata_semseg", num_classes=13).state_dict())
    assert preset_for(recognize(state)) == ("sonata_semseg", {"num_classes": 13, "in_channels": 9})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"enc.enc0.block0.attn.rpe.rpe_table": torch.zeros(3, 1)}), "enable_rpe"),
        (lambda s: s.update({"enc.enc1.block0.norm1.0.norm.0.weight": torch.zeros(8)}), "PDNorm"),
        (lambda s: s.update({"enc.enc0.block0.ls1.0.gamma": torch.zeros(8)}), "layer scale"),
        (lambda s: s.pop("seg_head.weight"), "no segmentation head"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("dec.")], "encoder-only"),
        (lambda s: s.update({"student.backbone.x": torch.zeros(1)}), "pretraining"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("embedding.")], "not a Pointcept PTv3"),
    ],
)
def test_what_srkd_cannot_compute_is_refused_in_one_line(change, message):
    state = _state("v3m2_small")
    change(state)
    with pytest.raises(CheckpointError, match=message) as err:
        recognize(state, "model_best.pth")
    assert "\n" not in str(err.value) and "model_best.pth" in str(err.value)


def test_a_v3m2_checkpoint_in_a_v3m1_preset_is_refused_naming_the_right_one(tmp_path):
    from srkd.data.scannet import get_dataset_spec
    from srkd.models.teacher import TeacherRef, load_teacher

    ckpt = tmp_path / "model_best.pth"
    torch.save(_fixture("v3m2_small")["state_dict"], ckpt)
    with pytest.raises(CheckpointError, match="PT-v3m2 network.*--teacher-model sonata_semseg"):
        load_teacher(TeacherRef(ckpt, "ptv3_base"), get_dataset_spec("scannet"))
    model, info = load_teacher(TeacherRef(ckpt), get_dataset_spec("scannet"))
    assert info.family == "PT-v3m2" and info.feature_names == ("coord", "color", "normal")
    assert info.cache_args()["input_features"] == ["coord", "color", "normal"] and model.in_channels == 9


def test_a_mask_token_is_loaded_around_not_refused():
    # a PT-v3m2 built with mask_token=True holds embedding.mask_token; a semseg pass never uses it
    state = _state("v3m2_small")
    state["embedding.mask_token"] = torch.zeros(1, 8)
    preset, args = preset_for(recognize(state))
    report = load_pointcept_checkpoint(state, create_model(preset, **args))
    assert report.ok and report.unexpected == ["embedding.mask_token"]
