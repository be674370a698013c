"""The Pointcept-layout reader: dataset specs, split listing, scene loading and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srkd.data.scannet import (
    DATASETS,
    ScanNetScenes,
    get_dataset_spec,
    list_scenes,
    load_scene,
)
from srkd.data.scannet.classes import (
    SCANNET200_CLASSES,
    SCANNET200_COLORS,
    VALID_CLASS_IDS_200,
)
from srkd.data.scannet.layout import write_scene
from srkd.errors import ConfigError, DataError

SCANNET = get_dataset_spec("scannet")


def _arrays(n: int = 6, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    normal = rng.normal(size=(n, 3))
    return {
        "coord": rng.uniform(-2, 2, size=(n, 3)).astype(np.float32),
        "color": rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
        "normal": (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
        "segment20": rng.integers(-1, 20, size=n),
        "segment200": rng.integers(-1, 200, size=n),
        "instance": rng.integers(-1, 5, size=n),
    }


def test_dataset_specs():
    s20, s200 = get_dataset_spec("scannet"), get_dataset_spec("scannet200")
    assert (s20.num_classes, s20.segment_file, len(s20.class_names)) == (20, "segment20", 20)
    assert (s200.num_classes, s200.segment_file, len(s200.class_names)) == (200, "segment200", 200)
    assert s20.feature_dim == s200.feature_dim == 6 and s20.feature_names == ("color", "normal")
    assert len(s200.class_colors) == 200 and s200.class_names[:3] == ("wall", "chair", "floor")
    assert set(DATASETS.names()) >= {"scannet", "scannet200"}
    with pytest.raises(ConfigError, match="known: .*scannet, scannet200"):
        get_dataset_spec("waymo")


def test_scannet200_tables_are_consistent():
    assert len(VALID_CLASS_IDS_200) == len(set(VALID_CLASS_IDS_200)) == 200
    assert list(VALID_CLASS_IDS_200) == sorted(VALID_CLASS_IDS_200)
    assert len(set(SCANNET200_CLASSES)) == 200
    assert len(set(SCANNET200_COLORS)) == 200  # distinct colours
    assert all(0 <= c <= 255 for rgb in SCANNET200_COLORS for c in rgb)


def test_load_round_trip_with_dtype_conversions(tmp_path):
    arrays = _arrays(7)
    write_scene(tmp_path, "train", "s0", arrays)
    pc = load_scene(tmp_path, "train", "s0", SCANNET)
    assert pc.scene_id == "s0" and pc.num_points == 7 and pc.num_classes == 20
    np.testing.assert_array_equal(pc.origin_index, np.arange(7))
    assert pc.color.dtype == np.float32
    np.testing.assert_array_equal(pc.color, arrays["color"].astype(np.float32))
    np.testing.assert_array_equal(pc.segment, arrays["segment20"])
    np.testing.assert_array_equal(pc.instance, arrays["instance"])
    pc200 = load_scene(tmp_path, "train", "s0", get_dataset_spec("scannet200"))
    np.testing.assert_array_equal(pc200.segment, arrays["segment200"])
    assert pc.feature(SCANNET.feature_names).shape == (7, SCANNET.feature_dim)


def test_instance_is_optional_and_labels_only_when_required(tmp_path):
    arrays = _arrays()
    del arrays["instance"]
    write_scene(tmp_path, "train", "a", arrays)
    assert load_scene(tmp_path, "train", "a", SCANNET).instance is None
    unlabelled = {k: arrays[k] for k in ("coord", "color", "normal")}
    write_scene(tmp_path, "test", "t", unlabelled)
    with pytest.raises(DataError, match="segment20.npy is missing"):
        load_scene(tmp_path, "test", "t", SCANNET)
    assert load_scene(tmp_path, "test", "t", SCANNET, require_labels=False).segment is None


def test_list_scenes_skips_hidden_and_reports_missing_splits(tmp_path):
    for sid in ("b", "a"):
        write_scene(tmp_path, "train", sid, _arrays())
    (tmp_path / "train" / ".c.tmp").mkdir()  # a writer's unfinished temp folder
    assert list_scenes(tmp_path, "train") == ["a", "b"]
    with pytest.raises(DataError, match=r"splits found under .*: train"):
        list_scenes(tmp_path, "val")
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="holds no scene folders"):
        list_scenes(tmp_path, "val")
    with pytest.raises(DataError, match="does not exist"):
        list_scenes(tmp_path / "nowhere", "train")


def test_scenes_collection(tmp_path):
    for sid in ("x", "y"):
        write_scene(tmp_path, "val", sid, _arrays())
    scenes = ScanNetScenes(tmp_path, "val", "scannet")
    assert len(scenes) == 2 and scenes.scene_ids == ["x", "y"] and "scenes=2" in repr(scenes)
    assert scenes.load("y").scene_id == "y"
    with pytest.raises(DataError, match="not in split 'val'"):
        scenes.load("z")


def _broken(tmp_path, **changes: np.ndarray) -> Path:
    """A valid scene "bad" whose named files are then overwritten (bypassing write_scene)."""
    folder = write_scene(tmp_path, "train", "bad", _arrays())
    for stem, arr in changes.items():
        np.save(folder / f"{stem}.npy", arr)
    return folder


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"coord": np.array([[0, 0, 0]] * 5 + [[np.nan, 0, 0]], np.float32)}, r"non-fin.*point 5"),
        ({"segment20": np.array([0, 1, 57, 2, 3, 4])}, "label 57"),
        ({"segment20": np.arange(5)}, r"segment20.npy has shape \(5,\), expected \(6,\)"),
        ({"color": np.zeros((6, 4), np.uint8)}, r"color.npy has shape \(6, 4\)"),
        ({"segment20": np.zeros(6, np.float32)}, "segment20.npy has dtype float32"),
        ({"normal": np.full((6, 3), np.inf, np.float32)}, "non-finite normal"),
    ],
)
def test_bad_scene_content_names_the_scene(tmp_path, changes, pattern):
    _broken(tmp_path, **changes)
    with pytest.raises(DataError, match=pattern) as info:
        load_scene(tmp_path, "train", "bad", SCANNET)
    assert "'bad'" in str(info.value)


def test_empty_scene(tmp_path):
    empty = {k: v[:0] for k, v in _arrays().items()}
    write_scene(tmp_path, "train", "bad", empty)
    with pytest.raises(DataError, match="empty scene"):
        load_scene(tmp_path, "train", "bad", SCANNET)


def test_missing_file_names_the_layout(tmp_path):
    folder = _broken(tmp_path)
    (folder / "normal.npy").unlink()
    with pytest.raises(DataError, match=r"normal.npy is missing; a scene folder needs coord.npy"):
        load_scene(tmp_path, "train", "bad", SCANNET)
    with pytest.raises(DataError, match="does not exist"):
        load_scene(tmp_path, "train", "absent", SCANNET)


@pytest.mark.parametrize("mangle", ["truncate", "garbage", "pickle"])
def test_corrupt_npy(tmp_path, mangle):
    folder = _broken(tmp_path)
    path = folder / "coord.npy"
    if mangle == "truncate":
        path.write_bytes(path.read_bytes()[:-10])
    elif mangle == "garbage":
        path.write_bytes(b"not an npy file at all")
    else:  # object arrays need pickle, which the reader refuses
        np.save(path, np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="truncated or not a valid .npy") as info:
        load_scene(tmp_path, "train", "bad", SCANNET)
    assert str(path) in str(info.value)


def test_reads_the_real_scans(scannet_real):
    assert len(list_scenes(scannet_real, "train")) == 10
    assert list_scenes(scannet_real, "val") == ["scene0004_00", "scene0005_00", "scene0005_01"]
    for split in ("train", "val"):
        scenes = ScanNetScenes(scannet_real, split, SCANNET)
        for sid in scenes.scene_ids:
            pc = scenes.load(sid)
            assert pc.num_points == 50_000 and pc.segment.max() <= 19
            assert 0 <= pc.color.min() and pc.color.max() <= 255 and pc.instance is not None
            np.testing.assert_allclose(np.linalg.norm(pc.normal, axis=1), 1.0, atol=1e-3)
    with pytest.raises(DataError, match="segment200.npy is missing.*has only segment20"):
        load_scene(scannet_real, "val", "scene0004_00", get_dataset_spec("scannet200"))
    with pytest.raises(DataError, match="splits found under .*: train, val"):
        list_scenes(scannet_real, "test")
