"""`srkd train-teacher` -> `srkd cache-teacher` -> `srkd distill` through the CLI on a tiny
synthetic dataset, stages.yaml defaults, the online teacher, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from tests.distill.conftest import build_cache

SRKD_TERMS = {"ce", "lovasz", "kl", "relation", "feat_mse"}
FLAGS = ["--epochs", "1", "--batch-size", "2", "--grid-size", "0.1", "--device", "cpu",
         "--val-max-scenes", "1"]
# the small settings `srkd distill --cache DIR` reads from ./stages.yaml
STAGES = """\
params:
  distill:
    student: test_ptv3
    epochs: 1
    batch_size: 2
    grid_size: 0.1
    device: cpu
    val_max_scenes: 1
    weights: {n_relation_points: 128}
stages: {}
"""
# one xdist worker runs this module, so stage_one (a trained teacher and its cache) is made once
pytestmark = pytest.mark.xdist_group("distill_cli")


def invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def log_records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "val"]


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory, data_root):
    """A teacher trained with `srkd train-teacher` and its cache from `srkd cache-teacher`."""
    work = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # no stages.yaml here: built-in defaults + flags only
        mp.delenv("SRKD_STAGES", raising=False)
        mp.delenv("SRKD_SET", raising=False)
        res = invoke(["train-teacher", "--model", "test_spunet", "--data-root", data_root,
                      "--out", work / "teacher", *FLAGS])
        assert res.exit_code == 0, res.output
        res = invoke(["cache-teacher", "--teacher", work / "teacher" / "model.pt", "--data-root",
                      data_root, "--out", work / "cache", "--views", "2", "--grid-size", "0.1",
                      "--workers", "0", "--device", "cpu"])
        assert res.exit_code == 0, res.output
    return work


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder holding the tiny stages.yaml."""
    (tmp_path / "stages.yaml").write_text(STAGES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)
    return tmp_path


def test_train_teacher_writes_models_and_log(stage_one):
    run_dir = stage_one / "teacher"
    for name in ("model.pt", "model_last.pt", "log.jsonl", "train_state.pt", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "tensorboard").exists()  # off unless asked for
    steps, vals = log_records(run_dir)
    assert steps and all(set(r) >= {"ce", "lovasz", "lr", "points_per_s"} for r in steps)
    assert not set(steps[0]) & {"kl", "relation", "feat_mse", "cwd"}
    assert all(math.isfinite(r[k]) for r in steps for k in ("loss", "ce", "lovasz"))
    assert vals and 0.0 <= vals[-1]["miou"] <= 1.0 and vals[-1]["epoch"] == 1
    ckpt = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)
    assert ckpt["model_name"] == "test_spunet" and ckpt["train_params"]["method"] == "ce"


def test_distill_with_only_the_cache_flag(stage_one, data_root, in_tmp):
    res = invoke(["distill", "--cache", stage_one / "cache"])
    assert res.exit_code == 0, res.output
    run_dir = in_tmp / "runs" / "student"  # the built-in --out, relative to the folder
    for name in ("model.pt", "model_last.pt", "log.jsonl"):
        assert (run_dir / name).is_file(), name
    steps, vals = log_records(run_dir)
    assert len(steps) == 2 and vals  # 4 train scenes / batch 2, one epoch, then validation
    for r in steps:
        assert set(r) >= SRKD_TERMS
        assert all(math.isfinite(r[k]) for k in SRKD_TERMS | {"loss"})
        assert r["relation"] > 0 and r["kl"] > 0
        # what the total sees of each term, and its share
        assert sum(r[f"{t}_weighted"] for t in SRKD_TERMS) == pytest.approx(r["loss"], rel=1e-4)
        assert sum(r[f"{t}_share"] for t in SRKD_TERMS) == pytest.approx(1.0)
    assert res.output.count("loss shares at step 1: ce ") == 1 and "relation" in res.output
    params = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["train_params"]
    # dataset and data root came from the cache's metadata, the rest from stages.yaml
    assert params["dataset"] == "scannet"
    assert Path(params["data_root"]) == Path(data_root).resolve()
    assert params["model"] == "test_ptv3" and params["recipe"]["n_relation_points"] == 128
    assert params["targets"] == "view" and params["cache_fingerprint"]


def test_distill_ensemble_targets(stage_one, in_tmp):
    res = invoke(["distill", "--cache", stage_one / "cache", "--targets", "ensemble",
                  "--method", "kd", "--out", "kd"])
    assert res.exit_code == 0, res.output
    steps, _ = log_records(in_tmp / "kd")
    assert set(steps[0]) & {"ce", "lovasz", "kl", "relation", "feat_mse"} == {"ce", "lovasz", "kl"}


def test_method_ce_needs_no_cache_and_writes_tensorboard(data_root, in_tmp):
    from tests.test_run_log import scalars

    res = invoke(["distill", "--method", "ce", "--data-root", data_root, "--out", "alone",
                  "--tensorboard"])
    assert res.exit_code == 0, res.output
    steps, vals = log_records(in_tmp / "alone")
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    assert not set(steps[0]) & {"kl", "relation", "feat_mse", "cwd"}
    got = scalars(in_tmp / "alone" / "tensorboard")
    assert {"train/loss", "train/ce", "train/lovasz", "train/lr", "train/points_per_s",
            "val/miou", "val/macc", "val/allacc"} <= set(got)
    assert [s for s, _ in got["train/ce"]] == [r["step"] for r in steps] == [1, 2]
    assert got["val/miou"] == [(2, pytest.approx(vals[0]["miou"]))]


def test_tensorboard_from_stages_yaml_and_its_missing_package(data_root, in_tmp, monkeypatch):
    """params.distill.tensorboard is read like any option; without the package the command
    stops before any training work, with one line saying how to install it."""
    import sys

    (in_tmp / "stages.yaml").write_text(STAGES.replace("    epochs: 1\n", "    epochs: 1\n    tensorboard: true\n"))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    res = invoke(["distill", "--method", "ce", "--data-root", data_root, "--out", "tb"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--tensorboard needs the tensorboard package" in " ".join(res.output.split())
    assert not (in_tmp / "tb").exists()


def test_online_teacher_uses_the_same_losses(stage_one, data_root, in_tmp):
    res = invoke(["distill", "--online-teacher", stage_one / "teacher" / "model.pt",
                  "--data-root", data_root, "--out", "online"])
    assert res.exit_code == 0, res.output
    steps, _ = log_records(in_tmp / "online")
    assert steps and all(set(r) >= SRKD_TERMS for r in steps)
    assert all(math.isfinite(r[k]) for r in steps for k in SRKD_TERMS)


@pytest.mark.parametrize("case", ["no_teacher", "dataset_mismatch", "missing_dir", "bad_weight"])
def test_bad_input_is_one_clear_error(case, stage_one, data_root, in_tmp):
    cache = stage_one / "cache"
    args, message = {
        "no_teacher": (["--data-root", data_root], "needs --cache"),
        "dataset_mismatch": (["--cache", cache, "--dataset", "scannet200"], "does not match the cache"),
        "missing_dir": (["--cache", in_tmp / "nowhere"], "no teacher cache at"),
        "bad_weight": (["--cache", cache, "--weight", "kl_weight=1"], "unknown loss override"),
    }[case]
    res = invoke(["distill", *args])
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output


def test_cache_with_another_class_count(data_root, teacher_ckpt, in_tmp):
    cache = build_cache(in_tmp / "c200", data_root, teacher_ckpt, views=1, ensemble=False,
                        class_names=[f"class{i}" for i in range(200)])
    res = invoke(["distill", "--cache", cache])
    assert res.exit_code == 1 and "holds 200 classes" in res.output and "has 20" in res.output


def test_cache_without_ensemble_or_missing_scenes(data_root, teacher_ckpt, in_tmp):
    cache = build_cache(in_tmp / "two", data_root, teacher_ckpt, views=1, ensemble=False, scenes=2)
    res = invoke(["distill", "--cache", cache, "--targets", "ensemble"])
    assert res.exit_code == 1 and "holds no ensemble entry" in res.output
    res = invoke(["distill", "--cache", cache])
    assert res.exit_code == 1 and "2 of 4 scenes" in res.output and "srkd cache-teacher" in res.output


def _copy_with_new_content(src: Path, dst: Path, seed: int) -> Path:
    """`src`'s layout (same scenes, same point counts) with other values in every coord.npy."""
    import shutil

    import numpy as np

    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    for coord in sorted(dst.glob("*/*/coord.npy")):
        values = np.load(coord)
        np.save(coord, (values + rng.normal(0, 0.01, values.shape)).astype(values.dtype))
    return dst


def test_cache_used_with_other_data_is_refused_naming_the_scene(stage_one, data_root, in_tmp):
    other = _copy_with_new_content(data_root, in_tmp / "regenerated", seed=5)
    res = invoke(["distill", "--cache", stage_one / "cache", "--data-root", other])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "is not the data the teacher cache" in res.output and "synthetic_0000" in res.output
    assert not (in_tmp / "runs").exists() or not any((in_tmp / "runs").rglob("model.pt"))


def test_cache_moved_with_its_data_distils_without_a_rebuild(stage_one, data_root, in_tmp):
    import shutil

    moved_data = shutil.copytree(data_root, in_tmp / "elsewhere" / "data")
    moved_cache = shutil.copytree(stage_one / "cache", in_tmp / "elsewhere" / "cache")
    res = invoke(["distill", "--cache", moved_cache, "--data-root", moved_data, "--out", in_tmp / "run"])
    assert res.exit_code == 0, res.output
    assert (in_tmp / "run" / "model.pt").is_file()
    # without --data-root the cache's recorded root is only a hint; a missing one is named
    from srkd.cache import CacheReader

    recorded = Path(CacheReader(moved_cache).spec.data_root)
    shutil.move(recorded, in_tmp / "gone")
    try:
        res = invoke(["distill", "--cache", moved_cache, "--out", in_tmp / "run2"])
        assert res.exit_code == 1 and "does not exist here" in res.output and "--data-root" in res.output
    finally:
        shutil.move(in_tmp / "gone", recorded)
