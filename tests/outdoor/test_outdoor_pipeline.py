"""The outdoor recipe end to end on tiny simulated lidar data, through the CLI:
generate-synthetic --kind outdoor -> cache-teacher -> distill -> evaluate, for nuScenes and
SemanticKITTI (one module-scoped run per dataset; tiny PTv3 models, 8-beam scans)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

TINY_LIDAR = ["--beams", "8", "--azimuth-steps", "180"]
DATASETS = ("nuscenes", "semantickitti")
# one xdist worker runs this module, so each dataset's run (several seconds) is made once
pytestmark = pytest.mark.xdist_group("outdoor_pipeline")


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def make_teacher(path: Path, dataset: str) -> Path:
    """A randomly initialised tiny outdoor PTv3 saved as an srkd checkpoint."""
    import torch

    from srkd.data.scannet import get_dataset_spec
    from srkd.models import create_model, save_checkpoint

    ds = get_dataset_spec(dataset)
    torch.manual_seed(0)
    model = create_model("test_ptv3_outdoor", num_classes=ds.num_classes, in_channels=ds.feature_dim)
    return save_checkpoint(path, model, class_names=ds.class_names, feature_names=ds.feature_names,
                           color_norm="pointcept")


@pytest.fixture(scope="module", params=DATASETS)
def run(request, tmp_path_factory) -> dict:
    """Every stage of one dataset's outdoor run; returns the paths and the command outputs."""
    dataset = request.param
    work = tmp_path_factory.mktemp(f"outdoor_{dataset}")
    out = {"dataset": dataset, "work": work}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # no stages.yaml here
        mp.delenv("SRKD_STAGES", raising=False)
        mp.delenv("SRKD_SET", raising=False)
        res = invoke(["generate-synthetic", "--kind", "outdoor", "--format", dataset, "--out",
                      work / "data", "--scenes", "3", "--keyframes", "1", *TINY_LIDAR])
        assert res.exit_code == 0, res.output
        teacher = make_teacher(work / "teacher.pt", dataset)
        res = invoke(["cache-teacher", "--dataset", dataset, "--teacher", teacher, "--data-root",
                      work / "data", "--out", work / "cache", "--views", "2", "--workers", "0",
                      "--device", "cpu"])
        assert res.exit_code == 0, res.output
        out["cache_output"] = res.output
        res = invoke(["distill", "--cache", work / "cache", "--student", "test_ptv3_outdoor",
                      "--out", work / "student", "--epochs", "1", "--batch-size", "1",
                      "--grid-size", "0.05", "--device", "cpu", "--val-max-scenes", "1",
                      "--weight", "n_relation_points=64"])
        assert res.exit_code == 0, res.output
        res = invoke(["evaluate", "--checkpoint", work / "student" / "model.pt", "--cache",
                      work / "cache", "--split", "train", "--out", work / "eval", "--device", "cpu",
                      "--max-scenes", "1", "--latency-runs", "0"])
        assert res.exit_code == 0, res.output
    return out


def test_cache_records_the_outdoor_grid_views_and_input(run):
    from srkd.cache import CacheReader

    reader = CacheReader(run["work"] / "cache")
    spec = reader.spec
    assert spec.dataset == run["dataset"] and spec.grid_size == 0.05  # the dataset's default
    assert spec.view_settings["domain"] == "outdoor"
    assert "center_shift" not in json.dumps(spec.view_settings["chain_names"])
    scene = reader.scene_ids[0]
    assert reader.view_params(scene, 0)["record"] == []  # the canonical view is the scan as stored
    names = [e["name"] for e in reader.view_params(scene, 1)["record"]]
    assert names == ["rotate", "scale", "flip"]


def test_distill_uses_the_outdoor_recipe(run):
    log = [json.loads(line) for line in (run["work"] / "student" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps and {"ce", "lovasz", "kl", "relation", "feat_mse"} <= set(steps[0])
    from srkd.models import load_checkpoint

    _, info = load_checkpoint(run["work"] / "student" / "model.pt", map_location="cpu")
    assert tuple(info.feature_names) == ("coord", "strength") and info.in_channels == 4
    recipe = info.train_params["recipe"]
    assert recipe["dataset"] == run["dataset"]
    assert recipe["temperature"] == 1.0 and recipe["tau"] == 1.0 and recipe["weights"]["kl"] == 0.1
    assert info.train_params["grid_size"] == 0.05


def test_evaluate_scores_ten_outdoor_views(run):
    metrics = json.loads((run["work"] / "eval" / "metrics.json").read_text())
    student, teacher = metrics["models"]
    assert student["split"]["dataset"] == run["dataset"]
    assert student["split"]["tta_views"] == 10  # 5 scales x (no flip, flip)
    classes = 16 if run["dataset"] == "nuscenes" else 19
    assert len(metrics["class_names"]) == classes == student["scores"]["num_classes"]
    assert student["scores"]["num_points"] == teacher["scores"]["num_points"] > 0
    assert 0.0 <= student["scores"]["miou"] <= 1.0


def test_a_run_without_grid_or_weight_decay_takes_the_datasets(run):
    """RunConfig grid_size None and OptimConfig weight_decay None mean the DatasetSpec's values
    (0.05 m and 0.005 outdoors); the checkpoint records the numbers used."""
    from srkd.distill.config import OptimConfig, RunConfig
    from srkd.distill.run import run as train_run
    from srkd.models import load_checkpoint

    out = run["work"] / "alone"
    cfg = RunConfig(model="test_ptv3_outdoor", out=out, dataset=run["dataset"],
                    data_root=run["work"] / "data", method="ce", epochs=1, batch_size=1,
                    optim=OptimConfig(weight_decay=None), val_split=None, device="cpu",
                    amp=False)  # type: ignore[arg-type]
    train_run(cfg)
    _, info = load_checkpoint(out / "model.pt", map_location="cpu")
    assert info.train_params["grid_size"] == 0.05
    assert info.train_params["optim"]["weight_decay"] == 0.005


def test_inspect_cache_verifies_and_scores_an_outdoor_cache(run):
    res = invoke(["inspect-cache", run["work"] / "cache", "--verify"])
    assert res.exit_code == 0, res.output
    assert "every scene decodes" in res.output and "cached teacher" in res.output and "mIoU" in res.output
