"""`srkd predict` and the plain-tensor PlainSegmenter, with tiny models on synthetic scans.

One module so that the spconv import is paid once; every scene is a few hundred points."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from srkd.data.scannet.classes import SCANNET20_CLASSES, SCANNET20_COLORS
from srkd.data.scannet.layout import write_scene
from srkd.data.scannet.ply import read_mesh, read_ply, write_ply
from srkd.data.voxelize import grid_sample
from srkd.errors import ConfigError, DataError
from srkd.inference import infer_scene, precise_views
from srkd.models import create_model, save_checkpoint
from srkd.models.deploy import PlainSegmenter, voxel_coords
from srkd.predict.inputs import read_input
from srkd.predict.run import load_predictor, predict_cloud, run_predict

GRID = 0.1


def _room(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n points in a 2 x 1.5 x 1 m box; every point has a near twin, so voxels hold several."""
    half = rng.uniform([0, 0, 0], [2.0, 1.5, 1.0], size=(n // 2, 3))
    coord = np.concatenate([half, half + rng.normal(0, 0.01, half.shape)]).astype(np.float32)
    normal = rng.normal(size=coord.shape)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    color = rng.integers(0, 256, size=coord.shape).astype(np.uint8)
    return {"coord": coord, "color": color, "normal": normal.astype(np.float32)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("test_spunet", num_classes=20, in_channels=6).eval()
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    return save_checkpoint(path, model, class_names=SCANNET20_CLASSES, feature_names=("color", "normal"),
                           color_norm="pointcept", train_params={"grid_size": GRID})  # fmt: skip


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A scene folder, a mesh PLY and a point-cloud PLY of a few hundred points each."""
    rng = np.random.default_rng(3)
    folder = write_scene(tmp_path / "data", "val", "scene0100_00", _room(rng, 400))
    np.save(folder / "segment20.npy", np.zeros(400, np.int64))  # labels are ignored
    mesh = _room(rng, 300)
    faces = np.stack([np.arange(0, 297), np.arange(1, 298), np.arange(2, 299)], axis=1)
    cloud = _room(rng, 250)
    return {
        "folder": folder,
        "mesh": write_ply(tmp_path / "room_vh_clean_2.ply", mesh["coord"], mesh["color"], faces),
        "points": write_ply(tmp_path / "scan.ply", cloud["coord"], cloud["color"]),
    }


def test_voxel_coords_match_grid_sample_per_sample(rng):
    a = rng.uniform(-3, 3, size=(200, 3)).astype(np.float32)
    b = rng.uniform(10, 11, size=(50, 3)).astype(np.float32)
    got = voxel_coords(torch.from_numpy(np.concatenate([a, b])), torch.tensor([200, 250]), 0.07)
    assert got.dtype == torch.int32
    assert np.array_equal(got[:200].numpy(), grid_sample(a, 0.07, mode="test").grid_coord)
    assert np.array_equal(got[200:].numpy(), grid_sample(b, 0.07, mode="test").grid_coord)


def test_plain_segmenter_batches_like_separate_calls_and_checks_inputs(checkpoint, rng):
    seg = load_predictor(checkpoint, device="cpu").segmenter
    x, y = _room(rng, 200), _room(rng, 120)

    def feat(d: dict) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([d["color"] / 255.0, d["normal"]], 1).astype(np.float32))

    with torch.no_grad():
        one = seg(torch.from_numpy(x["coord"]), feat(x), torch.tensor([200]))
        two = seg(torch.from_numpy(y["coord"]), feat(y), torch.tensor([120]))
        both = seg(torch.from_numpy(np.concatenate([x["coord"], y["coord"]])),
                   torch.cat([feat(x), feat(y)]), torch.tensor([200, 320]))  # fmt: skip
    assert both.shape == (320, 20) and both.dtype == torch.float32
    assert torch.allclose(both, torch.cat([one, two]), atol=1e-5)
    coord, f = torch.from_numpy(x["coord"]), feat(x)
    bad = [((coord[:, :2], f, torch.tensor([200])), "coord must be"),
           ((coord, f[:, :5], torch.tensor([200])), r"feat must have shape \(200, 6\)"),
           ((coord, f, torch.tensor([150])), "offset"),
           ((coord * float("nan"), f, torch.tensor([200])), "non-finite")]  # fmt: skip
    for args, message in bad:
        with pytest.raises(DataError, match=message):
            seg(*args)
    with pytest.raises(ConfigError, match="grid_size"):
        PlainSegmenter(seg.model, 0.0)


@pytest.mark.parametrize("tta", [False, True])
def test_predict_sums_equal_evaluate_inference(checkpoint, inputs, tta):
    """predict (through PlainSegmenter) scores exactly as `srkd evaluate` (infer_scene)."""
    p = load_predictor(checkpoint, device="cpu")
    cloud = read_input(inputs["points"], p.feature_names).cloud
    if tta:  # 13 views: a smaller cloud keeps this to seconds
        cloud = cloud.select(np.arange(60))
    got = predict_cloud(p, cloud, tta)
    want = infer_scene(p.segmenter.model, cloud, precise_views(cloud, tta), GRID, p.feature_names,
                       color_norm=p.color_norm).prob_sum  # fmt: skip
    assert got.shape == (cloud.num_points, 20)
    assert np.allclose(got, want, atol=1e-6)
    assert got.sum(axis=1).min() >= (13 if tta else 1) - 1e-6  # every point scored in every view


def test_run_predict_writes_labels_and_ply_for_each_input_kind(checkpoint, inputs, tmp_path):
    seen: list[tuple[int, int]] = []
    run = run_predict(checkpoint, list(inputs.values()), tmp_path / "out", tta=False, device="cpu",
                      progress=lambda done, total, _: seen.append((done, total)))  # fmt: skip
    assert [r.kind for r in run.results] == ["folder", "mesh ply", "point ply"]
    assert [r.normals for r in run.results] == ["file", "mesh faces", "PCA k=16"]
    assert seen[-1] == (3, 3) and run.failures == [] and run.predictor.dataset == "scannet"
    for r, n in zip(run.results, (400, 300, 250)):
        labels = np.load(r.labels_path)
        assert labels.dtype == np.int64 and labels.shape == (n,) and r.points == n
        assert labels.min() >= 0 and labels.max() < 20 and r.histogram.sum() == n
        mesh = read_mesh(r.ply_path)
        assert np.array_equal(mesh.colors, np.asarray(SCANNET20_COLORS, np.uint8)[labels])
        assert np.array_equal(read_ply(r.ply_path)["vertex"]["label"], labels)
        assert len(mesh.faces) == (297 if r.kind == "mesh ply" else 0)
    folder_coord = np.load(inputs["folder"] / "coord.npy")
    assert np.array_equal(read_mesh(run.results[0].ply_path).vertices, folder_coord)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{n}{s}" for n in ("scene0100_00", "room_vh_clean_2", "scan") for s in (".labels.npy", ".ply"))


def test_run_predict_refuses_before_work_and_keep_going_skips_bad_files(checkpoint, inputs, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="does not exist"):
        run_predict(checkpoint, [inputs["mesh"], tmp_path / "nope.ply"], out, tta=False, device="cpu")
    with pytest.raises(ConfigError, match="would both write"):
        run_predict(checkpoint, [inputs["mesh"], inputs["mesh"]], out, tta=False, device="cpu")
    with pytest.raises(ConfigError, match="would overwrite the input"):
        run_predict(checkpoint, [inputs["points"]], inputs["points"].parent, tta=False, device="cpu")
    assert not out.exists()  # nothing ran
    broken = tmp_path / "broken.ply"
    broken.write_bytes(inputs["points"].read_bytes()[:-100])  # truncated body
    with pytest.raises(DataError, match="truncated"):
        run_predict(checkpoint, [broken, inputs["mesh"]], out, tta=False, device="cpu")
    run = run_predict(checkpoint, [broken, inputs["mesh"]], out, tta=False, device="cpu", keep_going=True)
    assert [r.name for r in run.results] == ["room_vh_clean_2"]
    assert run.failures[0][0] == broken and "truncated" in run.failures[0][1]
    assert not (out / "broken.ply").exists() and (out / "room_vh_clean_2.ply").exists()


def test_outputs_are_atomic(checkpoint, inputs, tmp_path, monkeypatch):
    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        run_predict(checkpoint, [inputs["points"]], out, tta=False, device="cpu")
    assert list(out.iterdir()) == []  # no half-written file, no temporary left behind


def test_cli_exit_codes_and_summary(checkpoint, inputs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli_out"
    ok = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), str(inputs["mesh"]),
                             "--out", str(out), "--no-tta", "--device", "cpu"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "room_vh_clean_2" in ok.output and "mesh ply" in ok.output
    assert np.load(out / "room_vh_clean_2.labels.npy").shape == (300,)
    missing = runner.invoke(app, ["predict", "-c", str(checkpoint), str(tmp_path / "x.ply"), "--out", str(out)])
    assert missing.exit_code == 1 and "x.ply does not exist" in missing.output
    grey = write_ply(tmp_path / "grey.ply", np.random.default_rng(0).uniform(size=(30, 3)))
    bad = runner.invoke(app, ["predict", "-c", str(checkpoint), str(grey), str(inputs["points"]),
                              "--out", str(out), "--no-tta", "--keep-going"])  # fmt: skip
    assert bad.exit_code == 1 and "has no colours" in bad.output and "1 of 2 inputs failed" in bad.output
    assert (out / "scan.labels.npy").exists() and not (out / "grey.ply").exists()
    no_ckpt = runner.invoke(app, ["predict", "-c", str(tmp_path / "none.pt"), str(inputs["mesh"])])
    assert no_ckpt.exit_code == 1 and "none.pt does not exist" in no_ckpt.output


def test_ptv3_through_plain_segmenter_equals_evaluate(inputs, tmp_path):
    """The PTv3 path (serialisation, attention patches) gives evaluate's probabilities too."""
    torch.manual_seed(1)
    model = create_model("test_ptv3", num_classes=20, in_channels=6).eval()
    path = save_checkpoint(tmp_path / "ptv3.pt", model, class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="legacy",
                           train_params={"grid_size": GRID})  # fmt: skip
    p = load_predictor(path, device="cpu")
    assert p.color_norm == "legacy"
    cloud = read_input(inputs["folder"], p.feature_names).cloud
    want = infer_scene(p.segmenter.model, cloud, precise_views(cloud, False), GRID, p.feature_names,
                       color_norm="legacy").prob_sum  # fmt: skip
    assert np.allclose(predict_cloud(p, cloud, tta=False), want, atol=1e-6)


def test_bf16_prediction_is_evaluates_bf16_and_close_to_fp32(inputs, tmp_path):
    """--precision bf16: predict runs the model under evaluate's bf16 autocast (the same sums),
    which really changes the numbers, not the labels of this small model."""
    torch.manual_seed(1)
    model = create_model("test_ptv3", num_classes=20, in_channels=6).eval()
    path = save_checkpoint(tmp_path / "ptv3.pt", model, class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="pointcept",
                           train_params={"grid_size": GRID})  # fmt: skip
    p32, p16 = (load_predictor(path, device="cpu", precision=x) for x in ("fp32", "bf16"))
    cloud = read_input(inputs["folder"], p16.feature_names).cloud
    got = predict_cloud(p16, cloud, tta=False)
    want = infer_scene(p16.segmenter.model, cloud, precise_views(cloud, False), GRID, p16.feature_names,
                       color_norm="pointcept", precision="bf16").prob_sum  # fmt: skip
    assert np.allclose(got, want, atol=1e-6)
    fp32 = predict_cloud(p32, cloud, tta=False)
    assert not np.allclose(got, fp32, atol=1e-6) and np.allclose(got, fp32, atol=0.05)
    assert (got.argmax(1) == fp32.argmax(1)).mean() >= 0.95


def test_bf16_with_an_export_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--precision bf16 runs a checkpoint"):
        run_predict(None, [], tmp_path / "out", runtime="onnx", model=tmp_path, precision="bf16")
    runner = CliRunner()
    bad = runner.invoke(app, ["predict", "-c", "x.pt", "--precision", "fp16", "scan.ply"])
    assert bad.exit_code != 0 and "fp16" in bad.output


def test_a_lidar_checkpoint_is_refused_with_a_pointer_to_evaluate(tmp_path):
    from srkd.data.scannet import get_dataset_spec
    from srkd.models.deploy import load_plain_segmenter

    spec = get_dataset_spec("nuscenes")
    model = create_model("test_spunet", num_classes=spec.num_classes, in_channels=4).eval()
    path = save_checkpoint(tmp_path / "lidar.pt", model, class_names=spec.class_names,
                           feature_names=spec.feature_names, color_norm="pointcept")  # fmt: skip
    segmenter, _ = load_plain_segmenter(path)
    assert segmenter.grid_size == spec.grid_size == 0.05  # no recorded grid: the dataset's
    with pytest.raises(ConfigError, match="lidar model .*srkd evaluate --dataset nuscenes"):
        load_predictor(path, device="cpu")


def test_the_real_raw_scannet_mesh_becomes_a_labelled_ply(checkpoint, scannet_raw_sample, tmp_path):
    """The issue's acceptance case on the real raw scan (a tiny model: the labels are not the
    point, the reading of the real mesh, the normals and the outputs are)."""
    mesh = next(scannet_raw_sample.rglob("*_vh_clean_2.ply"))
    res = CliRunner().invoke(app, ["predict", "-c", str(checkpoint), str(mesh), "--out",
                                   str(tmp_path / "out"), "--no-tta", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    n = len(read_mesh(mesh).vertices)
    labels = np.load(tmp_path / "out" / f"{mesh.stem}.labels.npy")
    assert labels.shape == (n,) and labels.dtype == np.int64 and labels.min() >= 0
    assert len(read_mesh(tmp_path / "out" / mesh.name).vertices) == n
