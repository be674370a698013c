"""Bad inputs on the data side: synthetic rooms that used to crash and a generation that fails
part-way, NaN / inf in a scene's arrays, and split names that would leave the data root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from srkd.data.scannet import ScanNetScenes, get_dataset_spec, list_scenes, load_scene
from srkd.data.scannet.layout import UNFINISHED, check_split, write_scene
from srkd.data.synthetic import rooms
from srkd.data.synthetic.rooms import (
    MANIFEST,
    generate_dataset,
    generate_scene,
    scene_id,
)
from srkd.errors import ConfigError, DataError

SCANNET = get_dataset_spec("scannet")
FEW = 1000  # points per generated scene: the layout, where the crashes were, ignores the count


def invoke(args: list[object]):
    from cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------ 1. synthetic rooms and output
# (seed, scene) pairs of seeds 0..79 whose layout drew a free-standing group wider than the room
# in one orientation: `ValueError: high - low < 0` before commit f861385 (the first three are the
# reported `srkd generate-synthetic --seed 8 --scenes 8` crash and its sweep).
CRASHED = [(8, 4), (10, 4), (27, 5), (32, 4), (34, 4), (54, 1), (64, 2), (71, 6), (7, 60)]


@pytest.mark.parametrize(("seed", "index"), CRASHED)
def test_rooms_that_crashed_the_layout_are_generated(seed, index):
    arrays = generate_scene(seed, index, FEW)
    assert len(arrays["coord"]) == FEW and np.isfinite(arrays["coord"]).all()


@pytest.mark.slow  # 80 scenes per block at ~30-80 ms each; four blocks share the xdist workers
@pytest.mark.parametrize("first_seed", range(0, 40, 10))
def test_every_scene_of_seeds_0_to_39_is_generated(first_seed):
    failed = []
    for seed in range(first_seed, first_seed + 10):
        for index in range(8):
            try:
                generate_scene(seed, index, FEW)
            except (ArithmeticError, IndexError, ValueError) as exc:  # list every failing pair
                failed.append((seed, index, f"{type(exc).__name__}: {exc}"))
    assert not failed, f"{len(failed)} of 80 scenes failed: {failed}"


def _fail_at(monkeypatch, index: int) -> None:
    """Make scene `index` fail as the room generator used to, mid-way through a dataset."""
    real = rooms.generate_scene

    def flaky(seed: int, i: int, n_points: int = 30_000) -> dict[str, np.ndarray]:
        if i == index:
            raise ValueError("high - low < 0")
        return real(seed, i, n_points)

    monkeypatch.setattr(rooms, "generate_scene", flaky)


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_generation_leaves_no_manifest_and_a_rerun_finishes(tmp_path, monkeypatch, workers):
    out = tmp_path / "syn"
    args = {"scenes": 8, "seed": 8, "val_fraction": 0.25, "n_points": FEW, "workers": workers}
    with monkeypatch.context() as m:
        _fail_at(m, 4)
        with pytest.raises(ValueError, match="high - low"):
            generate_dataset(out, **args)
    assert not (out / MANIFEST).exists()  # nothing claims 8 scenes
    assert json.loads((out / UNFINISHED).read_text())["scenes"] == 8
    with pytest.raises(DataError, match=r"unfinished .*re-run it with the same options"):
        list_scenes(out, "train")
    with pytest.raises(DataError, match="unfinished synthetic dataset generated with other"):
        generate_dataset(out, **{**args, "seed": 9})

    paths = generate_dataset(out, **args)  # the same command again finishes the folder
    assert len(paths) == 8 and not (out / UNFINISHED).exists()
    assert json.loads((out / MANIFEST).read_text())["scenes"] == 8
    assert list_scenes(out, "train") == [scene_id(i) for i in range(6)]


def test_regenerating_a_finished_dataset_that_fails_leaves_it_marked_unfinished(
    tmp_path, monkeypatch
):
    out = tmp_path / "syn"
    generate_dataset(out, scenes=3, seed=1, val_fraction=0.0, n_points=FEW)
    _fail_at(monkeypatch, 1)
    with pytest.raises(ValueError):
        generate_dataset(out, scenes=3, seed=1, val_fraction=0.0, n_points=FEW)
    assert (out / UNFINISHED).is_file() and not (out / MANIFEST).exists()


def test_cli_disk_error_midway_is_one_line_and_leaves_no_manifest(tmp_path, monkeypatch):
    out, calls = tmp_path / "syn", []
    real = rooms.write_scene

    def full_disk(root: Path, split: str, sid: str, arrays: dict[str, np.ndarray]) -> Path:
        calls.append(sid)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(root, split, sid, arrays)

    monkeypatch.setattr(rooms, "write_scene", full_disk)
    res = invoke(["generate-synthetic", "--out", out, "--seed", 8, "--scenes", 8, "--points", FEW])
    assert res.exit_code == 1
    assert "No space left on device" in res.output and UNFINISHED in res.output
    assert "Traceback" not in res.output
    assert not (out / MANIFEST).exists() and (out / UNFINISHED).is_file()


# ------------------------------------------------------------------------ 2. NaN / inf in a scene
def _scene(root: Path, split: str = "train", sid: str = "s0", n: int = 50) -> Path:
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(n, 3))
    arrays = {
        "coord": rng.uniform(0, 3, (n, 3)).astype(np.float32),
        "color": rng.uniform(0, 255, (n, 3)).astype(np.float32),  # float colour is accepted
        "normal": (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
        "segment20": rng.integers(0, 20, n),
    }
    return write_scene(root, split, sid, arrays)


def _spoil(folder: Path, stem: str, points: list[int], value: float) -> Path:
    path = folder / f"{stem}.npy"
    arr = np.load(path)
    arr[points, 1] = value
    np.save(path, arr)
    return path


@pytest.mark.parametrize(
    ("stem", "points", "value", "count"),
    [
        ("color", [7], np.nan, "1 non-finite color value(s) (NaN or inf) in 1 of 50 points"),
        ("coord", [3, 9], np.inf, "2 non-finite coord value(s) (NaN or inf) in 2 of 50 points"),
        ("normal", [0], -np.inf, "1 non-finite normal value(s)"),
    ],
)
def test_non_finite_values_name_the_file_and_count(tmp_path, stem, points, value, count):
    path = _spoil(_scene(tmp_path), stem, points, value)
    for load in (
        lambda: load_scene(tmp_path, "train", "s0", SCANNET),
        lambda: ScanNetScenes(tmp_path, "train", SCANNET).load("s0"),
    ):
        with pytest.raises(DataError) as info:
            load()
        msg = str(info.value)
        assert str(path.absolute()) in msg and count in msg, msg
        assert f"first at point {points[0]}" in msg and "re-create this file" in msg


@pytest.mark.parametrize("workers", [0, 1])
def test_cli_train_teacher_on_a_nan_colour_exits_1_naming_the_file(tmp_path, workers):
    root = tmp_path / "data"
    generate_dataset(root, scenes=2, seed=0, val_fraction=0.5, n_points=FEW)
    path = root / "train" / scene_id(0) / "color.npy"
    color = np.load(path).astype(np.float32)
    color[10, 0] = np.nan
    np.save(path, color)
    res = invoke([
        "train-teacher", "--model", "test_spunet", "--data-root", root, "--out", tmp_path / "run",
        "--epochs", 1, "--batch-size", 1, "--grid-size", 0.2, "--device", "cpu",
        "--val-max-scenes", 1, "--workers", workers,
    ])  # fmt: skip
    assert res.exit_code == 1
    assert str(path.absolute()) in res.output and "1 non-finite color value" in res.output
    assert "Traceback" not in res.output  # also when a DataLoader worker raised it
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # no model, no log


# ---------------------------------------------------------------------- 3. split names
BAD_SPLITS = ["../../other/train", "../other", "..", ".", "", "  ", "/tmp/train", "train/..",
              "train/sub", "a\\b", ".hidden"]  # fmt: skip


@pytest.mark.parametrize("split", BAD_SPLITS)
def test_a_split_must_be_a_plain_folder_name(tmp_path, split):
    root = tmp_path / "data" / "x"
    _scene(root, "train")
    _scene(tmp_path / "other", "train")  # what '../../other/train' would reach from the root
    calls = [
        lambda: check_split(split),
        lambda: list_scenes(root, split),
        lambda: load_scene(root, split, "s0", SCANNET),
        lambda: ScanNetScenes(root, split, SCANNET),
        lambda: write_scene(root, split, "new", {"coord": np.zeros((1, 3), np.float32)}),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        assert repr(split) in str(info.value) and "folder directly under the data root" in str(
            info.value
        )
    assert not list(tmp_path.rglob("new"))  # write_scene wrote nothing anywhere


@pytest.mark.parametrize("split", ["train", "val", "scans_test", "train-2", "v1.0"])
def test_plain_split_names_are_accepted(split):
    assert check_split(split) == split


@pytest.mark.parametrize("command", ["train-teacher", "cache-teacher"])
def test_cli_refuses_a_split_outside_the_data_root(tmp_path, command):
    root = tmp_path / "data" / "x"
    _scene(root, "train")
    _scene(tmp_path / "other", "train")
    args = [command, "--data-root", root, "--split", "../../other/train", "--out", tmp_path / "o",
            "--device", "cpu"]  # fmt: skip
    if command == "train-teacher":
        args += ["--model", "test_spunet", "--epochs", 1]
    else:
        args += ["--teacher", Path(rooms.__file__).parents[2] / "assets" / "demo_teacher.pt"]
    res = invoke(args)
    assert res.exit_code == 1
    assert "split '../../other/train' is not a plain folder name" in res.output
    assert "Traceback" not in res.output
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]  # no file was written
