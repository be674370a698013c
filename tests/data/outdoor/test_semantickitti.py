"""SemanticKITTI: learning map, writer <-> reader round trip, the real sample scan, and each bad
input's error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from srkd.data.outdoor.classes import (
    SEMANTICKITTI19_CLASSES,
    SEMANTICKITTI19_COLORS,
    SEMANTICKITTI19_RAW_IDS,
    SEMANTICKITTI_LEARNING_MAP,
    SEMANTICKITTI_SPLITS,
)
from srkd.data.outdoor.semantickitti import SemanticKittiScenes
from srkd.data.outdoor.writers import LidarScan, write_semantickitti
from srkd.errors import ConfigError, DataError

SPEC = SimpleNamespace(name="semantickitti", num_classes=19)
REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO.parent / "shared" / "data" / "semantickitti_sample"  # like tests/conftest.py
RAW_IDS = np.array(sorted(SEMANTICKITTI_LEARNING_MAP))


def kitti_scan(seed: int, n: int = 40) -> LidarScan:
    rng = np.random.default_rng(seed)
    pose = np.eye(4)
    pose[:3, 3] = (seed, 0.5 * seed, 0.0)
    return LidarScan(
        coord=rng.normal(0, 15, (n, 3)).astype(np.float32),
        intensity=rng.uniform(0, 1, n).astype(np.float32),
        labels=rng.choice(RAW_IDS, n), instance=rng.integers(0, 5, n), pose=pose,
    )  # fmt: skip


@pytest.fixture(scope="module")
def kitti(tmp_path_factory) -> tuple[Path, dict[str, list[LidarScan]]]:
    root = tmp_path_factory.mktemp("kitti")
    sequences = {"08": [kitti_scan(0), kitti_scan(1, 41)], "11": [kitti_scan(2)]}
    sequences["11"] = [LidarScan(s.coord, s.intensity) for s in sequences["11"]]  # test: no labels
    write_semantickitti(root, sequences)
    return root, sequences


def test_learning_map_matches_semantic_kitti_yaml() -> None:
    assert len(SEMANTICKITTI19_CLASSES) == len(SEMANTICKITTI19_COLORS) == 19
    assert len(SEMANTICKITTI_LEARNING_MAP) == 34  # every raw id of semantic-kitti.yaml
    for label, raw in enumerate(SEMANTICKITTI19_RAW_IDS):
        assert SEMANTICKITTI_LEARNING_MAP[raw] == label
    moving = {
        252: "car",
        253: "bicyclist",
        254: "person",
        255: "motorcyclist",
        256: "other-vehicle",
        257: "other-vehicle",
        258: "truck",
        259: "other-vehicle",
    }
    for raw, name in moving.items():
        assert SEMANTICKITTI_LEARNING_MAP[raw] == SEMANTICKITTI19_CLASSES.index(name)
    assert [SEMANTICKITTI_LEARNING_MAP[r] for r in (0, 1, 52, 99)] == [-1] * 4
    assert SEMANTICKITTI_LEARNING_MAP[60] == SEMANTICKITTI19_CLASSES.index("road")
    seqs = [s for split in SEMANTICKITTI_SPLITS.values() for s in split]
    assert sorted(seqs) == [f"{i:02d}" for i in range(22)] and SEMANTICKITTI_SPLITS["val"] == (
        "08",
    )


def test_round_trip(kitti) -> None:
    root, sequences = kitti
    val = SemanticKittiScenes(root, "val", SPEC)
    assert val.scene_ids == ["08_000000", "08_000001"] and len(val) == 2
    written = sequences["08"][1]
    pc = val.load("08_000001")
    np.testing.assert_array_equal(pc.coord, written.coord)
    np.testing.assert_array_equal(pc.strength[:, 0], written.intensity)
    expected = [SEMANTICKITTI_LEARNING_MAP[int(r)] for r in written.labels]
    np.testing.assert_array_equal(pc.segment, expected)
    np.testing.assert_array_equal(pc.origin_index, np.arange(41))
    words = np.fromfile(root / "sequences/08/labels/000001.label", "<u4")
    np.testing.assert_array_equal(words >> 16, written.instance)
    poses = np.loadtxt(root / "sequences/08/poses.txt").reshape(-1, 3, 4)
    np.testing.assert_allclose(poses[1], written.pose[:3])
    test = SemanticKittiScenes(root, "t", SPEC, sequences=["11"], require_labels=False)
    assert test.load("11_000000").segment is None


def test_pointcept_data_root(kitti, tmp_path) -> None:
    _, sequences = kitti
    write_semantickitti(tmp_path / "dataset", {"08": sequences["08"]})
    assert len(SemanticKittiScenes(tmp_path, "val", SPEC)) == 2


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the real SemanticKITTI sample is not present")
def test_real_sample_scan() -> None:
    scenes = SemanticKittiScenes(SAMPLE, "train", SPEC, sequences=("00",))
    assert scenes.scene_ids == ["00_000000"]
    pc = scenes.load("00_000000")
    assert pc.num_points == 123_389 and pc.coord.dtype == np.float32
    assert 0.0 <= pc.strength.min() and pc.strength.max() <= 1.0 and pc.strength.max() > 0.5
    histogram = dict(
        zip(
            SEMANTICKITTI19_CLASSES,
            np.bincount(pc.segment[pc.segment >= 0], minlength=19),
        )
    )
    # raw: car 544 + moving-car 990, person 23 + moving-person 138; ignore = unlabeled 4458 +
    # outlier 5 + other-structure 809 + other-object 1652
    assert histogram["car"] == 1534 and histogram["person"] == 161 and histogram["road"] == 20975
    assert histogram["terrain"] == 30925 and histogram["vegetation"] == 24514
    assert histogram["truck"] == 0 and int((pc.segment == -1).sum()) == 6924
    with pytest.raises(DataError, match=r"needs sequence folder\(s\) 01, 02.* holds only 00"):
        SemanticKittiScenes(SAMPLE, "train", SPEC)


def _copy(kitti, tmp_path) -> tuple[Path, SemanticKittiScenes]:
    _, sequences = kitti
    write_semantickitti(tmp_path, {"08": sequences["08"]})
    return tmp_path / "sequences" / "08", SemanticKittiScenes(tmp_path, "val", SPEC)


def test_truncated_scan_and_label_count(kitti, tmp_path) -> None:
    seq, reader = _copy(kitti, tmp_path)
    label = seq / "labels" / "000000.label"
    label.write_bytes(label.read_bytes()[:-4])
    with pytest.raises(
        DataError,
        match=r"000000.label holds 39 labels but its scan .*000000.bin holds 40",
    ):
        reader.load("08_000000")
    label.write_bytes(label.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"000000.label is truncated .* 4-byte records"):
        reader.load("08_000000")
    scan = seq / "velodyne" / "000001.bin"
    scan.write_bytes(scan.read_bytes()[:-6])
    with pytest.raises(
        DataError, match=r"000001.bin is truncated .* 16-byte records \(4 x float32\)"
    ):
        reader.load("08_000001")


def test_unknown_raw_id_missing_labels_and_bad_remission(kitti, tmp_path) -> None:
    seq, reader = _copy(kitti, tmp_path)
    label = seq / "labels" / "000000.label"
    words = np.fromfile(label, "<u4")
    words[3] = (7 << 16) | 7
    words.tofile(label)
    with pytest.raises(DataError, match=r"000000.label holds raw id\(s\) 7 \(1 points\)"):
        reader.load("08_000000")
    label.unlink()
    with pytest.raises(
        DataError, match=r"label file .*000000.label is missing.*require_labels=False"
    ):
        reader.load("08_000000")
    assert SemanticKittiScenes(seq.parents[1], "val", SPEC, require_labels=False).load(
        "08_000000").segment is None  # fmt: skip
    scan = seq / "velodyne" / "000001.bin"
    points = np.fromfile(scan, "<f4").reshape(-1, 4)
    points[2, 3] = 37.0
    points.tofile(scan)
    with pytest.raises(DataError, match=r"remission .* must be in \[0, 1\], point 2 has 37"):
        reader.load("08_000001")


def test_bad_split_spec_scene_and_layout(kitti, tmp_path) -> None:
    root, _ = kitti
    with pytest.raises(ConfigError, match="split 'valid'"):
        SemanticKittiScenes(root, "valid", SPEC)
    with pytest.raises(ConfigError, match="16 classes"):
        SemanticKittiScenes(root, "val", SimpleNamespace(name="nuscenes", num_classes=16))
    with pytest.raises(ConfigError, match="two-digit"):
        SemanticKittiScenes(root, "val", SPEC, sequences=["8"])
    with pytest.raises(DataError, match=r"needs sequence folder\(s\) 00, 01"):
        SemanticKittiScenes(root, "train", SPEC)
    with pytest.raises(DataError, match="'08_000009' is not in split 'val'"):
        SemanticKittiScenes(root, "val", SPEC).load("08_000009")
    with pytest.raises(DataError, match="has no sequences/ folder"):
        SemanticKittiScenes(tmp_path, "val", SPEC)
    (tmp_path / "sequences" / "08" / "velodyne").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no FFFFFF.bin scans"):
        SemanticKittiScenes(tmp_path, "val", SPEC)
    with pytest.raises(ConfigError, match="raw SemanticKITTI ids"):
        write_semantickitti(
            tmp_path / "w",
            {"08": [LidarScan(np.zeros((2, 3)), np.zeros(2), np.array([10, 5]))]},
        )
    with pytest.raises(DataError, match="is unfinished"):
        SemanticKittiScenes(tmp_path / "w", "val", SPEC)
