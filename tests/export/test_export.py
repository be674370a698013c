"""`srkd export` and `srkd predict --runtime onnx` against srkd's own inference."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from srkd.errors import CheckpointError, ConfigError
from srkd.export.export import export_checkpoint
from srkd.models.deploy import load_plain_segmenter
from srkd.runtime import load_student
from srkd.runtime.spec import read_spec
from tests.export.helpers import real_crop, room, save_student, write_room_ply

# looked up, not imported: onnxscript takes seconds to import, and collection (once per xdist
# worker) need not pay them; the export itself imports it
for _package in ("onnxruntime", "onnxscript"):  # onnxscript: torch's ONNX exporter
    if importlib.util.find_spec(_package) is None:
        pytest.skip(f"{_package} is not installed", allow_module_level=True)
runner = CliRunner()
# one xdist worker runs this module, so each exported fixture (tens of seconds) is built once
pytestmark = pytest.mark.xdist_group("export")


@pytest.fixture(scope="module")
def export_of(tmp_path_factory):
    """preset -> (checkpoint, export folder) of a tiny student of that preset, exported to ONNX
    through the CLI once per module."""
    made = {}

    def get(preset: str):
        if preset not in made:
            tmp = tmp_path_factory.mktemp(preset)
            ckpt = save_student(tmp / "model.pt", preset)
            result = runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp / "deploy")])
            assert result.exit_code == 0, result.output
            assert "same labels" in result.output
            made[preset] = ckpt, tmp / "deploy"
        return made[preset]

    return get


@pytest.fixture(scope="module", params=["test_ptv3", "test_spunet"])
def exported(request, export_of):
    """(checkpoint, export folder) of each tiny student preset."""
    return export_of(request.param)


def srkd_logits(ckpt, coord, feat):
    seg, _ = load_plain_segmenter(ckpt)
    with torch.no_grad():
        return seg(torch.from_numpy(coord), torch.from_numpy(feat), torch.tensor([len(coord)])).numpy()


def agree(got, want):
    rel = np.abs(got - want).max() / np.abs(want).max()
    return rel, (got.argmax(1) == want.argmax(1)).mean()


def test_spec_describes_the_network(exported):
    ckpt, folder = exported
    spec = read_spec(folder)
    raw = json.loads((folder / "student.json").read_text())
    assert (folder / "network.onnx").is_file() and raw["format"] == "srkd-student"
    assert spec.grid_size == 0.02 and spec.features == ("color", "normal") and len(spec.classes) == 20
    assert spec.color_scale == pytest.approx(1 / 255) and spec.color_shift == 0.0
    assert list(spec.inputs)[0] == "feat" and "nbr0_k5" in spec.inputs and spec.opset == 23
    assert spec.check["argmax_agreement"] >= 0.999
    from srkd.models import file_sha256

    assert spec.checkpoint_sha256 == file_sha256(ckpt) and spec.checkpoint_name == "model.pt"


def test_runtime_logits_match_srkd_on_rooms_of_other_sizes(exported):
    ckpt, folder = exported
    student = load_student(folder, threads=1)
    for seed, n, keep in ((3, 7000, 7000), (4, 1000, 25)):  # 25 points: shorter than one patch
        coord, feat = (a[:keep] for a in room(seed, n))
        rel, labels = agree(student.logits(coord, feat), srkd_logits(ckpt, coord, feat))
        assert rel <= 1e-4 and labels >= 0.999


def test_runtime_runs_a_batch_one_sample_at_a_time(exported):
    ckpt, folder = exported
    (c1, f1), (c2, f2) = room(3, 2000), room(4, 1500)
    got = load_student(folder, threads=1).logits(np.concatenate([c1, c2]), np.concatenate([f1, f2]),
                                                 offset=np.array([2000, 3500]))  # fmt: skip
    want = np.concatenate([srkd_logits(ckpt, c1, f1), srkd_logits(ckpt, c2, f2)])
    rel, labels = agree(got, want)
    assert rel <= 1e-4 and labels >= 0.999 and not read_spec(folder).plan.masks


def test_runtime_logits_match_srkd_on_a_real_scan(exported, scannet_real):
    ckpt, folder = exported
    coord, feat = real_crop(scannet_real, "scene0005_00")
    rel, labels = agree(load_student(folder, threads=1).logits(coord, feat), srkd_logits(ckpt, coord, feat))
    assert rel <= 1e-4 and labels >= 0.999


def _predict(args, out):
    result = runner.invoke(app, ["predict", *args, "--no-tta", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result


def test_predict_runtime_onnx_labels_a_room_as_srkd_does(exported, tmp_path):
    ckpt, folder = exported
    ply = write_room_ply(tmp_path / "room.ply", 5, 6000)
    _predict([str(ply), "--checkpoint", str(ckpt)], tmp_path / "torch")
    _predict([str(ply), "--runtime", "onnx", "--model", str(folder)], tmp_path / "onnx")
    want, got = (np.load(tmp_path / d / "room.labels.npy") for d in ("torch", "onnx"))
    assert (got == want).mean() >= 0.999
    from srkd.data.scannet.ply import read_mesh

    mesh = read_mesh(ply)
    labels = load_student(folder).label(mesh.vertices, color=mesh.colors, normal=mesh.normals)
    assert (labels == want).mean() >= 0.999


@pytest.mark.slow  # one architecture: the raw-mesh path (reading, normals, voxels) is the same for both
def test_predict_runtime_onnx_labels_the_raw_scannet_mesh(export_of, scannet_raw_sample, tmp_path):
    ckpt, folder = export_of("test_ptv3")
    ply = next(scannet_raw_sample.glob("scans/*/*_vh_clean_2.ply"))
    _predict([str(ply), "--checkpoint", str(ckpt)], tmp_path / "torch")
    result = _predict([str(ply), "--runtime", "onnx", "--model", str(folder)], tmp_path / "onnx")
    name = ply.stem
    want, got = (np.load(tmp_path / d / f"{name}.labels.npy") for d in ("torch", "onnx"))
    assert (got == want).mean() >= 0.999, result.output


def test_predict_refuses_mixed_runtime_options(exported, tmp_path):
    ckpt, folder = exported
    ply = write_room_ply(tmp_path / "r.ply", 1, 1000)
    for args, words in (([], "needs --checkpoint"),
                        (["--runtime", "onnx", "--checkpoint", str(ckpt)], "give --model"),
                        (["--runtime", "onnx", "--model", str(tmp_path)], "not an srkd export"),
                        (["--runtime", "onnx", "--model", str(folder), "--grid-size", "0.05"], "voxel size")):
        result = runner.invoke(app, ["predict", str(ply), *args, "--out", str(tmp_path / "o")])
        assert result.exit_code == 1 and words in result.output, result.output


def test_export_refusals(tmp_path):
    ckpt = save_student(tmp_path / "m.pt", "test_spunet")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_checkpoint(ckpt, tmp_path / "x", fmt="tflite")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["export", "-c", str(ckpt), "--out", str(tmp_path / "busy")])
    assert result.exit_code == 1 and "not an srkd export folder" in result.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "z")])
    assert result.exit_code == 1 and "needs --checkpoint" in result.output
    for bad in (["--format", "tflite"], ["--opset", "12"]):
        assert runner.invoke(app, ["export", "-c", str(ckpt), *bad]).exit_code == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["export", "-c", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "y")])
    assert result.exit_code == 1 and not (tmp_path / "y").exists()


def test_export_refuses_features_no_runtime_feeds():
    from srkd.export.export import _check_refusals

    with pytest.raises(CheckpointError, match="not ones a runtime can feed"):
        _check_refusals("onnx", 18, ("color", "curvature"))


def test_pt2_export_reloads_and_matches(tmp_path):
    ckpt = save_student(tmp_path / "m.pt", "test_spunet")
    result = export_checkpoint(ckpt, tmp_path / "pt2", fmt="pt2")
    assert result.network.name == "network.pt2" and result.agreement >= 0.999
    from srkd.export.network import network_inputs

    coord, feat = room(6, 3000)
    program = torch.export.load(str(result.network)).module()
    with torch.no_grad():
        got = program(*network_inputs(result.spec.plan, coord, feat, np.array([len(coord)]), 0.02)).numpy()
    rel, labels = agree(got, srkd_logits(ckpt, coord, feat))
    assert rel <= 1e-4 and labels >= 0.999
    with pytest.raises(ConfigError, match="runs ONNX exports"):
        load_student(tmp_path / "pt2")


DEPLOY_VENV_ENV = "SRKD_DEPLOY_VENV"


def deploy_venv() -> Path:
    """A virtual environment with numpy and onnxruntime only (no torch, no spconv, no system site
    packages), made once under ~/.cache/srkd (or $SRKD_DEPLOY_VENV); skips the test when pip
    cannot install them (no network, no wheel for this platform). A file lock beside it lets one
    process build it while others (xdist workers, other checkouts' test runs) wait and reuse it."""
    import subprocess
    import sys

    from filelock import FileLock

    root = Path(os.environ.get(DEPLOY_VENV_ENV) or Path.home() / ".cache" / "srkd" / "deploy-venv")
    python = root / "bin" / "python"
    ready = root / ".srkd-ready"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.with_name(root.name + ".lock")):
        if not ready.is_file():
            try:
                subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, capture_output=True,
                               timeout=120)  # fmt: skip
                subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "onnxruntime"], check=True,
                               capture_output=True, timeout=600)  # fmt: skip
            except (subprocess.SubprocessError, OSError) as exc:
                pytest.skip(f"cannot build a numpy + onnxruntime venv here ({type(exc).__name__})")
            ready.write_text("numpy onnxruntime\n")
    return python


def test_example_labels_a_ply_without_torch(exported, tmp_path):
    import subprocess

    ckpt, folder = exported
    python = deploy_venv()
    repo = Path(__file__).resolve().parents[2]
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, timeout=120)
    assert probe.returncode != 0, "the deploy venv must not have torch"
    ply = write_room_ply(tmp_path / "room.ply", 8, 4000)
    out = tmp_path / "labels.npy"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    run = subprocess.run([str(python), str(repo / "examples" / "label_ply.py"), str(folder), str(ply), str(out)],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    _predict([str(ply), "--checkpoint", str(ckpt)], tmp_path / "torch")
    want = np.load(tmp_path / "torch" / "room.labels.npy")
    assert (np.load(out) == want).mean() >= 0.999
    assert "%" in run.stdout
