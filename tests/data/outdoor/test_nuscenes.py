"""nuScenes-lidarseg: class maps, official splits, the writer <-> reader round trip on files in the
release's exact formats, multi-sweep accumulation with known poses, and each bad input's error."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from srkd.data.outdoor.classes import (
    NUSCENES16_CLASSES,
    NUSCENES16_COLORS,
    NUSCENES_RAW_TO_16,
)
from srkd.data.outdoor.nuscenes import NuScenesScenes
from srkd.data.outdoor.nuscenes_splits import (
    NUSCENES_SPLIT_SIZES,
    nuscenes_split_scenes,
)
from srkd.data.outdoor.nuscenes_tables import quaternion_matrix
from srkd.data.outdoor.writers import (
    LidarScan,
    NuScenesScene,
    matrix_quaternion,
    write_nuscenes,
)
from srkd.data.scannet.layout import UNFINISHED
from srkd.errors import ConfigError, DataError

SPEC = SimpleNamespace(name="nuscenes", num_classes=16)
VERSION = "v1.0-mini"


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """float64 (3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cz, sz, cy, sy, cx, sx = (f(a) for a in (yaw, pitch, roll) for f in (np.cos, np.sin))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def rigid(yaw: float, t: tuple[float, float, float], pitch: float = 0.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation(yaw, pitch), t
    return m


def scan(rng: np.random.Generator, n: int, key: bool, t: int, pose=None, labels=True) -> LidarScan:
    raw = rng.integers(0, 32, n).astype(np.uint8) if key and labels else None
    return LidarScan(
        coord=rng.normal(0, 10, (n, 3)).astype(np.float32),
        intensity=rng.uniform(0, 255, n).astype(np.float32),
        labels=raw, pose=pose, timestamp=t, is_key_frame=key,
    )  # fmt: skip


def scene(
    name: str, seed: int, keys: int = 2, sweeps_between: int = 1, n: int = 50
) -> NuScenesScene:
    rng = np.random.default_rng(seed)
    scans, t = [], 1_500_000_000_000_000 + seed * 10**8
    for k in range(keys):
        for _ in range(sweeps_between if k else 0):
            scans.append(scan(rng, n, False, t, rigid(0.01 * t % 1, (t % 7, 0, 0))))
            t += 50_000
        scans.append(scan(rng, n + k, True, t, rigid(0.3 * k, (k, 2.0 * k, 0))))
        t += 50_000
    return NuScenesScene(name, scans, lidar_to_ego=rigid(0.5, (0.9, 0.0, 1.8), pitch=0.02))


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, list[NuScenesScene]]:
    """A v1.0-mini release holding all 10 mini scenes (2 keyframes + 1 sweep each)."""
    root = tmp_path_factory.mktemp("nuscenes")
    names = nuscenes_split_scenes("mini_train") + nuscenes_split_scenes("mini_val")
    scenes = [scene(name, seed) for seed, name in enumerate(names)]
    write_nuscenes(root, scenes, version=VERSION)
    return root, scenes


def test_class_tables_match_the_devkit() -> None:
    assert len(NUSCENES16_CLASSES) == len(NUSCENES16_COLORS) == 16
    assert sorted(NUSCENES_RAW_TO_16) == list(range(32))
    # the devkit's fine-to-coarse map: 4 pedestrian categories, 2 bus categories, 11 ignored
    counts = np.bincount([v + 1 for v in NUSCENES_RAW_TO_16.values()], minlength=17)
    assert counts[0] == 12 and counts[1 + NUSCENES16_CLASSES.index("pedestrian")] == 4
    assert counts[1 + NUSCENES16_CLASSES.index("bus")] == 2 and (counts[1:] >= 1).all()
    assert (
        NUSCENES_RAW_TO_16[17] == NUSCENES16_CLASSES.index("car") and NUSCENES_RAW_TO_16[31] == -1
    )


def test_official_splits_have_the_published_sizes_and_do_not_overlap() -> None:
    sets = {name: set(nuscenes_split_scenes(name)) for name in NUSCENES_SPLIT_SIZES}
    assert {k: len(v) for k, v in sets.items()} == NUSCENES_SPLIT_SIZES
    assert not (
        sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"]
    )
    assert sets["mini_train"] <= sets["train"] | sets["val"] and sets["mini_val"] <= sets["val"]
    assert "scene-0061" in sets["mini_train"] and "scene-0103" in sets["mini_val"]


def test_quaternion_round_trip_including_half_turns() -> None:
    rng = np.random.default_rng(0)
    cases = [rotation(*rng.uniform(-np.pi, np.pi, 3)) for _ in range(20)]
    cases += [
        np.diag([1.0, -1, -1]),
        np.diag([-1.0, 1, -1]),
        np.diag([-1.0, -1, 1]),
        np.eye(3),
    ]
    for r in cases:
        q = matrix_quaternion(r)
        assert abs(np.linalg.norm(q) - 1) < 1e-12 and q[0] >= 0
        np.testing.assert_allclose(quaternion_matrix(q, "test"), r, atol=1e-12)


def test_round_trip_official_mini_splits(mini) -> None:
    root, scenes = mini
    val = NuScenesScenes(root, "mini_val", SPEC)
    assert val.scene_ids == [
        "scene-0103_000",
        "scene-0103_001",
        "scene-0916_000",
        "scene-0916_001",
    ]
    assert len(NuScenesScenes(root, "mini_train", SPEC)) == 16
    written = [s for s in scenes[8].scans if s.is_key_frame][1]  # scene-0103, 2nd keyframe
    pc = val.load("scene-0103_001")
    np.testing.assert_array_equal(pc.coord, written.coord)
    np.testing.assert_allclose(pc.strength[:, 0], written.intensity / 255, rtol=1e-6)
    assert pc.strength.dtype == np.float32 and pc.strength.shape == (51, 1)
    expected = np.array([NUSCENES_RAW_TO_16[int(r)] for r in written.labels])
    np.testing.assert_array_equal(pc.segment, expected)
    np.testing.assert_array_equal(pc.origin_index, np.arange(51))
    assert pc.num_classes == 16 and pc.scene_id == "scene-0103_001"
    assert len(val.sample_token("scene-0103_001")) == 32


def test_writer_is_deterministic_and_leaves_no_marker(mini, tmp_path) -> None:
    root, scenes = mini
    write_nuscenes(tmp_path, scenes[:1], version=VERSION)
    assert not (tmp_path / UNFINISHED).exists() and not list(tmp_path.rglob("*.tmp"))
    for name in ("sample_data", "ego_pose", "calibrated_sensor"):
        mine = json.loads((tmp_path / VERSION / f"{name}.json").read_text())
        full = json.loads((root / VERSION / f"{name}.json").read_text())
        assert all(record in full for record in mine)


def test_pointcept_data_root_and_custom_scene_list(mini, tmp_path) -> None:
    _, scenes = mini
    write_nuscenes(tmp_path / "raw", scenes[:2], version=VERSION)
    reader = NuScenesScenes(tmp_path, "custom", SPEC, version=VERSION, scenes=[scenes[1].name])
    assert reader.release == tmp_path / "raw" and len(reader) == 2
    with pytest.raises(
        DataError,
        match=r"split .mini_val. has 2 of its 2 scenes \(e.g. scene-0103, scene-0916\) missing",
    ):
        NuScenesScenes(tmp_path, "mini_val", SPEC)


def test_sweeps_bring_a_world_fixed_point_to_one_keyframe_coordinate(tmp_path) -> None:
    """Every scan sees the same world points from a different ego pose; after accumulation all
    copies of a point land on the keyframe's coordinate of it. Sweep points within 1 m of their
    sensor (the car itself) are dropped, keyframe points never."""
    rng = np.random.default_rng(3)
    cs = rigid(-0.7, (1.0, -0.2, 1.9), pitch=0.05)
    egos = [rigid(0.2 * i - 0.1, (3.0 * i, -1.5 * i, 0.1 * i), pitch=0.01 * i) for i in range(4)]
    to_local = [np.linalg.inv(ego @ cs) for ego in egos]
    world = rng.uniform(-20, 20, (200, 3))
    local = [(np.c_[world, np.ones(200)] @ m.T)[:, :3] for m in to_local]
    far = np.all([(np.abs(xyz[:, :2]) >= 1.5).any(axis=1) for xyz in local], axis=0)
    world, local = world[far][:30], [xyz[far][:30] for xyz in local]
    car = np.array([[0.5, -0.4, -1.0], [0.9, 0.9, 0.0]])  # returns from the ego vehicle
    scans = []
    for i in range(4):  # sweep, sweep, sweep, keyframe
        xyz = np.concatenate([local[i], car]).astype(np.float32)
        labels = np.r_[np.full(30, 17), 31, 31].astype(np.uint8) if i == 3 else None
        scans.append(
            LidarScan(xyz, np.full(32, 100.0), labels, pose=egos[i],
                      timestamp=10**15 + i * 50_000, is_key_frame=i == 3)
        )  # fmt: skip
    write_nuscenes(tmp_path, [NuScenesScene("scene-0061", scans, lidar_to_ego=cs)], version=VERSION)
    reader = NuScenesScenes(tmp_path, "x", SPEC, version=VERSION, scenes=["scene-0061"], sweeps=4)
    pc = reader.load("scene-0061_000")
    assert pc.num_points == 32 + 3 * 30  # the keyframe keeps its car points, sweeps lose theirs
    np.testing.assert_allclose(pc.coord[:30], local[3], atol=1e-4)
    for copy in pc.coord[32:].reshape(3, 30, 3):
        np.testing.assert_allclose(copy, pc.coord[:30], atol=2e-4)
    assert (pc.segment[:30] == NUSCENES16_CLASSES.index("car")).all() and (
        pc.segment[30:] == -1
    ).all()
    more = NuScenesScenes(tmp_path, "x", SPEC, version=VERSION, scenes=["scene-0061"], sweeps=10)
    assert more.load("scene-0061_000").num_points == 122  # only 3 scans exist before the keyframe


def test_quaternion_convention_is_the_devkits() -> None:
    """pyquaternion (the devkit's) rotates actively: (cos 45, 0, 0, sin 45) turns x onto y, and
    nuScenes' LIDAR_TOP mounting (about -90 degrees about z) turns the lidar's y onto the car's x."""
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(
        quaternion_matrix([c, 0, 0, c], "t") @ [1, 0, 0], [0, 1, 0], atol=1e-12
    )
    mount = quaternion_matrix([0.7078, -0.0065, 0.0106, -0.7063], "t")
    np.testing.assert_allclose(mount @ [0, 1, 0], [1, 0, 0], atol=0.03)


def _copy(mini, tmp_path) -> tuple[Path, NuScenesScenes]:
    _, scenes = mini
    write_nuscenes(tmp_path, scenes[8:], version=VERSION)
    return tmp_path, NuScenesScenes(tmp_path, "mini_val", SPEC)


def _scan_and_labels(root: Path, reader: NuScenesScenes, scene_id: str) -> tuple[Path, Path]:
    record = reader._keyframe(scene_id)
    labels = json.loads((root / VERSION / "lidarseg.json").read_text())
    label = next(r["filename"] for r in labels if r["sample_data_token"] == record["token"])
    return root / record["filename"], root / label


def test_truncated_scan_is_named(mini, tmp_path) -> None:
    root, reader = _copy(mini, tmp_path)
    scan_path, _ = _scan_and_labels(root, reader, "scene-0103_000")
    scan_path.write_bytes(scan_path.read_bytes()[:-3])
    with pytest.raises(
        DataError, match=rf"{scan_path.name} is truncated.*not a whole number of 20"
    ):
        reader.load("scene-0103_000")


def test_label_count_and_unknown_raw_id_are_named(mini, tmp_path) -> None:
    root, reader = _copy(mini, tmp_path)
    _, label_path = _scan_and_labels(root, reader, "scene-0103_000")
    good = label_path.read_bytes()
    label_path.write_bytes(good[:-1])
    with pytest.raises(DataError, match=r"holds 49 labels but its scan .* holds 50 points"):
        reader.load("scene-0103_000")
    label_path.write_bytes(bytes([40]) + good[1:])
    with pytest.raises(DataError, match=rf"{label_path.name} holds raw id\(s\) 40 \(1 points\)"):
        reader.load("scene-0103_000")


def test_missing_tables_and_files_are_named(mini, tmp_path) -> None:
    root, reader = _copy(mini, tmp_path)
    scan_path, label_path = _scan_and_labels(root, reader, "scene-0916_001")
    label_path.unlink()
    with pytest.raises(DataError, match=rf"label file .*{label_path.name} is missing"):
        reader.load("scene-0916_001")
    scan_path.unlink()
    with pytest.raises(DataError, match=rf"lidar scan .*{scan_path.name} .* is missing"):
        reader.load("scene-0916_001")
    (root / VERSION / "lidarseg.json").unlink()
    with pytest.raises(
        DataError, match=r"lidarseg.json is missing \(part of the nuScenes-lidarseg"
    ):
        NuScenesScenes(root, "mini_val", SPEC)
    unlabelled = NuScenesScenes(root, "mini_val", SPEC, require_labels=False)
    assert unlabelled.load("scene-0103_000").segment is None
    (root / VERSION / "ego_pose.json").unlink()
    with pytest.raises(DataError, match=r"ego_pose.json is missing"):
        NuScenesScenes(root, "mini_val", SPEC)


def test_wrong_category_table_and_bad_intensity_are_refused(mini, tmp_path) -> None:
    root, reader = _copy(mini, tmp_path)
    scan_path, _ = _scan_and_labels(root, reader, "scene-0103_000")
    points = np.fromfile(scan_path, "<f4").reshape(-1, 5)
    points[4, 3] = 300.0
    points.tofile(scan_path)
    with pytest.raises(DataError, match=r"intensity .* must be in \[0, 255\], point 4 has 300"):
        reader.load("scene-0103_000")
    path = root / VERSION / "category.json"
    cats = json.loads(path.read_text())
    cats[0]["index"], cats[1]["index"] = 1, 0
    path.write_text(json.dumps(cats))
    with pytest.raises(
        DataError, match=r"category 'noise' has index 1, but lidarseg id 1 is animal"
    ):
        NuScenesScenes(root, "mini_val", SPEC)


def test_bad_options_and_unfinished_root(mini, tmp_path) -> None:
    root, _ = mini
    with pytest.raises(ConfigError, match="sweeps=0"):
        NuScenesScenes(root, "mini_val", SPEC, sweeps=0)
    with pytest.raises(ConfigError, match="split 'trian'"):
        NuScenesScenes(root, "trian", SPEC)
    with pytest.raises(ConfigError, match="20 classes"):
        NuScenesScenes(root, "mini_val", SimpleNamespace(name="scannet", num_classes=20))
    with pytest.raises(DataError, match="no metadata folder v1.0-trainval/"):
        NuScenesScenes(root, "val", SPEC)
    bad = NuScenesScene("scene-0103", [scan(np.random.default_rng(0), 5, True, 0)])
    broken = NuScenesScene("scene-0916", [LidarScan(np.zeros((5, 3)), np.full(5, 999.0))])
    with pytest.raises(ConfigError, match=r"intensity in \[0.0, 255.0\]"):
        write_nuscenes(tmp_path, [bad, broken], version=VERSION)
    with pytest.raises(DataError, match=rf"{UNFINISHED} exists"):
        NuScenesScenes(tmp_path, "mini_val", SPEC)


def test_table_file_names_cannot_leave_the_release(mini, tmp_path) -> None:
    root, _ = _copy(mini, tmp_path)
    path = root / VERSION / "sample_data.json"
    records = json.loads(path.read_text())
    key = next(r for r in records if r["is_key_frame"])
    key["filename"] = "../../etc/passwd"
    path.write_text(json.dumps(records))
    reader = NuScenesScenes(root, "mini_val", SPEC)
    scene_id = next(i for i in reader.scene_ids if reader._keyframe(i)["token"] == key["token"])
    with pytest.raises(DataError, match=r"names file '../../etc/passwd'; file names must be paths"):
        reader.load(scene_id)
    with pytest.raises(ConfigError, match="version '../v1.0-mini' is not a metadata folder"):
        NuScenesScenes(root, "mini_val", SPEC, version="../v1.0-mini")


def test_record_without_a_needed_field_is_named(mini, tmp_path) -> None:
    root, _ = _copy(mini, tmp_path)
    path = root / VERSION / "sample_data.json"
    records = json.loads(path.read_text())
    del records[0]["ego_pose_token"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=rf"sample_data.json: record '{records[0]['token']}' has no "
                       "field 'ego_pose_token'"):  # fmt: skip
        NuScenesScenes(root, "mini_val", SPEC)
