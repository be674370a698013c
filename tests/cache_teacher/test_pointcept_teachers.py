"""`srkd cache-teacher` with Pointcept PT-v3m2 (Sonata) and CDSegNet checkpoints, recognised from
their tensors (no --teacher-model): the cache records the family, the input fields and the noise seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from srkd.cache import CacheReader
from srkd.models import create_model

from .conftest import GRID


def _pointcept_checkpoint(path: Path, preset: str, **args) -> Path:
    torch.manual_seed(0)
    model = create_model(preset, **args)
    state = {(f"module.{k}" if k.startswith("seg_head") else f"module.backbone.{k}"): v
             for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, path)
    return path


@pytest.mark.parametrize(
    ("preset", "family", "features", "extra"),
    [
        ("test_sonata", "PT-v3m2", ["coord", "color", "normal"], {}),
        ("test_cdsegnet", "CDSegNet", ["color", "normal"], {"noise_seed": 3}),
    ],
)
def test_cache_records_family_inputs_and_noise_seed(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset, family, features, extra
) -> None:
    from cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    ckpt = _pointcept_checkpoint(tmp_path / "model_best.pth", preset)
    seed = ["--noise-seed", str(extra["noise_seed"])] if extra else []
    result = CliRunner().invoke(app, [
        "cache-teacher", "--teacher", str(ckpt), "--data-root", str(dataset_root), "--out", str(tmp_path / "c"),
        "--workers", "0", "--device", "cpu", "--grid-size", str(GRID), "--max-scenes", "1", *seed,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = CacheReader(tmp_path / "c").spec
    assert spec.teacher_args["family"] == family and spec.teacher_args["input_features"] == features
    assert spec.teacher_args.get("noise_seed") == extra.get("noise_seed")  # recorded for CDSegNet only


def test_an_unsupported_checkpoint_is_refused_in_one_line(dataset_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    torch.save({"state_dict": {"module.student.backbone.embedding.stem.linear.weight": torch.zeros(8, 9)}},
               tmp_path / "pretrain.pth")  # fmt: skip
    result = CliRunner().invoke(app, [
        "cache-teacher", "--teacher", str(tmp_path / "pretrain.pth"), "--data-root", str(dataset_root),
        "--out", str(tmp_path / "c"), "--workers", "0", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 1 and "pretraining checkpoint" in result.output
    assert not (tmp_path / "c").exists()
