"""Self-describing checkpoints: round trip and every refusal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from srkd.data.transforms.color import DEFAULT_COLOR_NORM
from srkd.errors import CheckpointError
from srkd.models import (
    compact_checkpoint,
    create_model,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from srkd.models.checkpoint import FORMAT_VERSION

CLASSES = ["wall", "floor", "chair"]
FEATURES = ["color", "normal"]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model("test_spunet", num_classes=3)
    with torch.no_grad():  # make buffers non-default so the round trip checks them too
        model.conv_input[1].running_mean.fill_(0.25)
    path = save_checkpoint(
        tmp_path / "run" / "model.pt",
        model,
        class_names=CLASSES,
        feature_names=FEATURES, color_norm="pointcept",
        train_params={"lr": np.float32(0.002), "epochs": 3, "weights": {"kl": 0.3}},
        extra={"miou": 0.5},
    )
    return path, model


def test_compact_checkpoint_stores_float16_and_loads_as_float32(saved, tmp_path) -> None:
    path, model = saved
    small = compact_checkpoint(path, tmp_path / "small.pt")
    raw = torch.load(small, weights_only=True)
    kinds = {v.dtype for v in raw["state_dict"].values()}
    assert torch.float16 in kinds and torch.float32 not in kinds  # integer buffers stay integers
    loaded, meta = load_checkpoint(small, expect_classes=CLASSES)
    assert meta.extra["storage_dtype"] == "float16" and meta.train_params["epochs"] == 3
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(loaded.state_dict()[name], value, rtol=1e-3, atol=1e-4), name
    assert small.stat().st_size < 0.6 * path.stat().st_size


def test_round_trip(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    loaded, meta = load_checkpoint(path, expect_classes=CLASSES, expect_features=FEATURES)
    assert meta.model_name == "test_spunet" and meta.model_args == {"num_classes": 3}
    assert meta.class_names == tuple(CLASSES) and meta.num_classes == 3
    assert meta.feature_names == tuple(FEATURES) and meta.in_channels == 6
    assert meta.train_params == {"lr": pytest.approx(0.002), "epochs": 3, "weights": {"kl": 0.3}}
    assert meta.extra == {"miou": 0.5} and meta.format_version == FORMAT_VERSION == 2
    assert meta.color_norm == "pointcept"
    assert not loaded.training
    want = model.state_dict()
    got = loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    pointcept_like = tmp_path / "model_best.pth"
    torch.save({"epoch": 3, "state_dict": {"module.backbone.x": torch.zeros(2)}}, pointcept_like)
    with pytest.raises(CheckpointError, match="load_pointcept_checkpoint"):
        load_checkpoint(pointcept_like)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(garbage)


def _rewrite(path: Path, **changes) -> Path:
    data = torch.load(path, weights_only=True)
    data.update(changes)
    out = path.with_name("edited.pt")
    torch.save(data, out)
    return out


def test_refuses_other_classes_and_features(saved: tuple[Path, torch.nn.Module]) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match="predicts 3 classes, 20 expected"):
        load_checkpoint(path, expect_classes=20)
    with pytest.raises(CheckpointError, match="'chair' vs 'table'"):
        load_checkpoint(path, expect_classes=["wall", "floor", "table"])
    with pytest.raises(CheckpointError, match="3 class names in the checkpoint, 2 expected"):
        load_checkpoint(path, expect_classes=["wall", "floor"])
    with pytest.raises(CheckpointError, match=r"expects input features \['color', 'normal'\]"):
        load_checkpoint(path, expect_features=["color"])


def test_refuses_unknown_model_newer_format_and_wrong_weights(saved: tuple[Path, torch.nn.Module]) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match="'resnet9000'.*known:.*test_spunet"):
        load_checkpoint(_rewrite(path, model_name="resnet9000"))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(_rewrite(path, format_version=99))
    data = torch.load(path, weights_only=True)
    state = dict(data["state_dict"])
    del state["final.weight"]
    with pytest.raises(CheckpointError, match="missing.*final.weight"):
        load_checkpoint(_rewrite(path, state_dict=state))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(_rewrite(path, model_args={"num_classes": 4}))


def test_save_refuses_bad_descriptions(tmp_path: Path) -> None:
    model = create_model("test_spunet", num_classes=3)
    with pytest.raises(CheckpointError, match="3 classes but 2 class names"):
        save_checkpoint(tmp_path / "a.pt", model, class_names=["a", "b"], feature_names=FEATURES, color_norm="pointcept")
    with pytest.raises(CheckpointError, match="not a registered preset"):
        save_checkpoint(
            tmp_path / "a.pt", model, model_name="nope", class_names=CLASSES, feature_names=FEATURES, color_norm="pointcept"
        )
    with pytest.raises(CheckpointError, match="train_params.fn"):
        save_checkpoint(
            tmp_path / "a.pt", model, class_names=CLASSES, feature_names=FEATURES, color_norm="pointcept", train_params={"fn": print}
        )
    assert not (tmp_path / "a.pt").exists()


def test_file_sha256(tmp_path: Path) -> None:
    p = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert file_sha256(p, chunk_size=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointError, match="no such file"):
        file_sha256(tmp_path / "missing")


DEMO_TEACHER = Path(__file__).resolve().parents[2] / "srkd" / "assets" / "demo_teacher.pt"


def test_shipped_demo_teacher_is_small_safe_and_trained(tmp_path) -> None:
    """The teacher the demo distils from: under 2 MB, float16 storage, weights_only, and really
    trained (it segments a synthetic room it never saw far above chance)."""
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.data.scannet.classes import SCANNET20_CLASSES
    from srkd.data.synthetic.rooms import generate_dataset
    from srkd.scoring import score_model

    assert DEMO_TEACHER.stat().st_size < 2_000_000
    raw = torch.load(DEMO_TEACHER, weights_only=True)  # plain tensors and values only
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    model, meta = load_checkpoint(DEMO_TEACHER, expect_classes=SCANNET20_CLASSES, expect_features=FEATURES)
    assert meta.model_name == "demo_teacher_mini" and meta.train_params["method"] == "ce"
    assert meta.format_version == FORMAT_VERSION and meta.color_norm == DEFAULT_COLOR_NORM
    spec = get_dataset_spec("scannet")
    generate_dataset(tmp_path, 2, seed=99, val_fraction=0.5, n_points=6000)  # rooms of another seed
    source = ScanNetScenes(tmp_path, "val", spec)
    scores = score_model(model, [source.load(s) for s in source.scene_ids], spec.num_classes,
                         meta.train_params["grid_size"], spec.feature_names, color_norm=meta.color_norm)
    assert scores.allacc > 0.6  # an untrained model of this size scores ~0.05-0.2


def test_ptv3_checkpoints_record_their_decoder_semantics(tmp_path: Path) -> None:
    model = create_model("test_ptv3", unpooling="v3m2")
    path = save_checkpoint(tmp_path / "m.pt", model, class_names=[str(i) for i in range(20)],
                           feature_names=FEATURES, color_norm="legacy")
    meta = load_checkpoint(path)[1]
    assert meta.model_args["unpooling"] == "v3m2" and meta.color_norm == "legacy"
    # a preset default is recorded too, so a later change of the default cannot alter a saved model
    default = save_checkpoint(tmp_path / "d.pt", create_model("test_ptv3"),
                              class_names=[str(i) for i in range(20)], feature_names=FEATURES,
                              color_norm="pointcept")
    assert load_checkpoint(default)[1].model_args == {"unpooling": "v3m1"}


def test_format_1_checkpoints_load_as_srkd_0_1_built_them(tmp_path: Path) -> None:
    # srkd 0.1 recorded neither the colour normalisation ("legacy" then) nor PTv3's unpooling
    # (its decoder convolved the sum: "v3m2")
    torch.manual_seed(0)
    model = create_model("test_ptv3", unpooling="v3m2").eval()
    path = save_checkpoint(tmp_path / "m.pt", model, class_names=[str(i) for i in range(20)],
                           feature_names=FEATURES, color_norm="legacy")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 1
    del raw["model_args"]["unpooling"], raw["feature_spec"]["color_norm"]
    torch.save(raw, path)
    loaded, meta = load_checkpoint(path)
    assert loaded.unpooling == "v3m2" and meta.color_norm == "legacy" and meta.format_version == 1


def test_unknown_colour_normalisation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown colour normalisation"):
        save_checkpoint(tmp_path / "m.pt", create_model("test_spunet", num_classes=3), class_names=CLASSES,
                        feature_names=FEATURES, color_norm="rgb")
    assert not (tmp_path / "m.pt").exists()
