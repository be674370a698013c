"""Distillation with limited labels, the label-only controls, and bit-for-bit repeatable runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from srkd.distill.run import run
from srkd.errors import ConfigError, DataError

from .conftest import build_cache, tiny_run_config


def config(out: Path, cache: Path | None, **overrides):
    values = dict(epochs=1, checkpoint_every=100, eval_every=0, val_max_scenes=None, seed=1)
    return tiny_run_config(out, cache, **{**values, **overrides})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["state_dict"]


def first_row(run_dir: Path) -> dict:
    return json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])


def test_the_same_run_twice_gives_the_same_student_bit_for_bit(cache_dir, tmp_path):
    for name in ("a", "b"):
        run(config(tmp_path / name, cache_dir))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_limited_labels_train_every_point_on_the_teacher(cache_dir, tmp_path):
    """20 labels per scene: CE sees almost nothing, but KL (over every point) is as large as
    with dense labels, and the first step logs the relation targets' diagnostics."""
    dense = tmp_path / "dense"
    run(config(dense, cache_dir))
    scarce = tmp_path / "scarce"
    run(config(scarce, cache_dir, labelled_points=20))
    row_dense, row_scarce = first_row(dense), first_row(scarce)
    assert row_scarce["kl"] == pytest.approx(row_dense["kl"], rel=1e-6)  # same points, same targets
    assert row_scarce["ce"] != pytest.approx(row_dense["ce"], rel=1e-3)
    for key in ("relation_target_entropy", "relation_same_class_mass", "relation_same_class_chance"):
        assert 0.0 <= row_scarce[key] <= 1.0
    params = torch.load(scarce / "model.pt", map_location="cpu", weights_only=False)["train_params"]
    assert params["labelled_points"] == 20
    # the release's KL averages over labelled points only: with no label it is silent
    silent = tmp_path / "release"
    run(config(silent, cache_dir, method="srkd-release", labelled_scenes=0.01))
    assert min(json.loads(r).get("kl", 1.0) for r in (silent / "log.jsonl").read_text().splitlines()
               if json.loads(r)["kind"] == "train") < row_dense["kl"]


def test_unlabelled_scenes_train_from_the_cache_under_a_budget(data_root, teacher_ckpt, tmp_path):
    """A train split with a scene that has no label file: cache-teacher caches it, distill needs
    a label budget to admit it (a missing label file is otherwise an error naming it)."""
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    scene = sorted((root / "train").iterdir())[0]
    (scene / "segment20.npy").unlink()
    cache = build_cache(tmp_path / "cache", root, teacher_ckpt, views=1, ensemble=False,
                        require_labels=False)
    with pytest.raises(DataError, match="segment20.npy"):
        run(config(tmp_path / "dense", cache))
    result = run(config(tmp_path / "budget", cache, labelled_scenes=1.0))
    assert result.step == 2


def test_label_controls(cache_dir, tmp_path):
    views = tmp_path / "alone-views"
    run(config(views, cache_dir, method="ce", targets="labels"))
    assert set(k for k in first_row(views) if k in ("kl", "relation", "cwd")) == set()
    cwd = tmp_path / "cwd-labels"
    run(config(cwd, cache_dir, method="cwd", targets="labels"))
    assert first_row(cwd)["cwd"] > 0
    with pytest.raises(ConfigError, match="--targets labels.*relation"):
        run(config(tmp_path / "bad", cache_dir, method="srkd", targets="labels"))


def test_balanced_terms_reach_the_loss(cache_dir, tmp_path):
    out = tmp_path / "balanced"
    run(config(out, cache_dir, method="kd",
               loss_overrides={"balanced_kl": True, "balanced_ce": True}))
    plain = tmp_path / "plain"
    run(config(plain, cache_dir, method="kd"))
    assert first_row(out)["kl"] != pytest.approx(first_row(plain)["kl"], rel=1e-4)
    assert np.isfinite(first_row(out)["loss"])


def test_an_online_sonata_teacher_gets_its_coordinates(data_root, tmp_path):
    """A Pointcept Sonata checkpoint (coord + colour + normal input) runs online in every step."""
    from srkd.models import create_model

    torch.manual_seed(0)
    model = create_model("test_sonata")
    state = {(f"module.{k}" if k.startswith("seg_head") else f"module.backbone.{k}"): v
             for k, v in model.state_dict().items()}
    ckpt = tmp_path / "model_best.pth"
    torch.save({"epoch": 1, "state_dict": state}, ckpt)
    out = tmp_path / "online"
    result = run(config(out, None, data_root=data_root, online_teacher=ckpt, method="kd"))
    assert result.step == 2 and first_row(out)["kl"] > 0
