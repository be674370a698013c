"""The synthetic lidar: determinism, label coverage, ray-cast geometry, poses that make
multi-sweep accumulation line up (through the nuScenes writer and reader), the SemanticKITTI form,
and bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from srkd.data.outdoor.classes import NUSCENES_RAW_TO_16, SEMANTICKITTI_LEARNING_MAP
from srkd.data.synthetic.lidar import LidarConfig, OutdoorScene, cast, make_scene
from srkd.data.synthetic.lidar_dataset import generate_outdoor_dataset, kitti_raw_labels
from srkd.data.synthetic.lidar_world import (
    BARRIER,
    BUS,
    CAR,
    DRIVEABLE,
    MANMADE,
    NOISE,
    PEDESTRIAN,
    SIDEWALK,
    TERRAIN,
    TRAFFIC_CONE,
    TRUCK,
    VEGETATION,
    Primitives,
    Street,
)  # fmt: skip
from srkd.errors import ConfigError

SMALL = LidarConfig(beams=16, azimuth_steps=360)


def test_same_seed_same_scan_and_other_seeds_differ():
    a, b = make_scene(3, 1).scan_at(0.5), make_scene(3, 1).scan_at(0.5)
    for name in ("points", "intensity", "ring", "raw_label", "part", "pose"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = make_scene(4, 1).scan_at(0.5)
    assert len(c.points) != len(a.points) or not np.array_equal(c.points, a.points)


def test_a_default_scan_is_hdl32_sized_and_labels_cover_every_simulated_class():
    seen = np.zeros(256, dtype=np.int64)
    for index in range(8):
        scan = make_scene(0, index).scan_at(0.0)
        assert 25_000 < len(scan.points) < 34_560  # 32 x 1080 rays, sky and dropout lost
        assert np.linalg.norm(scan.points, axis=1).max() <= 70.0 + 0.2
        assert 0.0 <= scan.intensity.min() and scan.intensity.max() <= 255.0
        assert set(np.unique(scan.ring)) <= set(range(32))
        seen += np.bincount(scan.raw_label, minlength=256)
    simulated = {NOISE, PEDESTRIAN, BARRIER, TRAFFIC_CONE, BUS, CAR, TRUCK, DRIVEABLE, SIDEWALK,
                 TERRAIN, MANMADE, VEGETATION}  # fmt: skip
    assert set(np.flatnonzero(seen)) == simulated
    mapped = {NUSCENES_RAW_TO_16[r] for r in simulated}
    assert -1 in mapped and len(mapped - {-1}) == 11  # noise -> ignore; 11 training classes


def test_ground_returns_lie_on_the_road_plane_in_the_sensor_frame():
    scene = make_scene(0, 2, SMALL)
    scan = scene.scan_at(1.0)
    ground = scan.part == 0
    assert ground.sum() > 100
    world_z = scan.world_points()[ground, 2]
    assert np.abs(world_z).max() < 0.05  # range noise (2 cm sigma) only
    assert np.isin(scan.raw_label[ground], [DRIVEABLE, SIDEWALK, TERRAIN]).all()


def test_cast_hits_a_box_a_cylinder_and_a_sphere_at_their_distances():
    prims = Primitives()
    prims.box((10.0, 0.0, 1.0), (2.0, 2.0, 2.0), 0.0, CAR)  # near face at x = 9
    prims.cylinder(0.0, 10.0, 0.0, 3.0, 0.5, MANMADE)  # near side at y = 9.5
    prims.sphere((-10.0, 0.0, 1.0), 1.0, VEGETATION)  # near point at x = -9
    street = Street(np.asarray(prims.boxes), np.asarray(prims.cylinders), np.asarray(prims.spheres),
                    road_half=100.0, sidewalk=1.0, cross_x=None, lane_y=0.0)
    lidar = LidarConfig(beams=1, elevation_deg=(0.0, 0.0), azimuth_steps=8)
    d, _ = lidar.directions()  # azimuths -180, -135, ..., 135 degrees
    t, label, _, cos, part = cast(street, np.array([0.0, 0.0, 1.0]), d, 0.0, lidar)
    by_azimuth = {round(float(np.degrees(np.arctan2(v[1], v[0])))) % 360: i for i, v in enumerate(d)}
    assert t[by_azimuth[0]] == pytest.approx(9.0) and label[by_azimuth[0]] == CAR
    assert t[by_azimuth[90]] == pytest.approx(9.5) and label[by_azimuth[90]] == MANMADE
    assert t[by_azimuth[180]] == pytest.approx(9.0) and label[by_azimuth[180]] == VEGETATION
    assert np.isinf(t[by_azimuth[270]])  # horizontal ray into empty space
    assert cos[by_azimuth[0]] == pytest.approx(1.0) and part[by_azimuth[90]] == 2


def test_sweeps_accumulate_onto_the_keyframe_through_the_written_poses(tmp_path):
    from srkd.data.sources import open_scenes

    generate_outdoor_dataset(tmp_path / "nu", 2, 0, 1, keyframes=1, sweeps=2, lidar=SMALL)
    source = open_scenes("nuscenes", tmp_path / "nu", "train", sweeps=3)
    pc = source.load(source.scene_ids[0])
    scene = make_scene(0, 0, SMALL)
    key, sweeps = scene.scan_at(0.1), [scene.scan_at(0.05), scene.scan_at(0.0)]
    n_key = len(key.points)
    np.testing.assert_allclose(pc.coord[:n_key], key.points, atol=1e-4)
    world_to_key = np.linalg.inv(key.pose)
    near = [(np.abs(s.points[:, 0]) < 1.0) & (np.abs(s.points[:, 1]) < 1.0) for s in sweeps]
    expected = [(s.world_points() @ world_to_key[:3, :3].T + world_to_key[:3, 3])[~n]
                for s, n in zip(sweeps, near)]  # the reader drops sweep returns off the ego
    got = pc.coord[n_key:]
    assert len(got) == sum(len(e) for e in expected)
    assert any(np.allclose(got, np.concatenate(order), atol=1e-3)
               for order in (expected, expected[::-1]))
    assert (pc.segment[n_key:] == -1).all() and (pc.segment[:n_key] >= -1).all()


def test_semantickitti_form_maps_poles_and_trunks_and_reads_back(tmp_path):
    scan = make_scene(0, 0, SMALL).scan_at(0.0)
    kitti = kitti_raw_labels(scan)
    assert set(np.unique(kitti)) <= set(SEMANTICKITTI_LEARNING_MAP)
    cylinders = scan.part == 2
    assert set(np.unique(kitti[cylinders])) <= {80, 71, 30, 99}  # pole, trunk, person, cone
    from srkd.data.sources import open_scenes

    generate_outdoor_dataset(tmp_path / "sk", 3, 0, 1, fmt="semantickitti", keyframes=2, lidar=SMALL)
    train, val = (open_scenes("semantickitti", tmp_path / "sk", s) for s in ("train", "val"))
    assert train.scene_ids == ["00_000000", "00_000001", "00_000002", "00_000003"]
    assert val.scene_ids == ["08_000000", "08_000001"]
    pc = train.load("00_000000")
    np.testing.assert_allclose(pc.coord, scan.points, atol=1e-6)
    np.testing.assert_allclose(pc.strength[:, 0], scan.intensity / 255.0, atol=1e-6)


def test_bad_settings_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="min_range < max_range"):
        LidarConfig(min_range=80.0)
    with pytest.raises(ConfigError, match="dropout"):
        LidarConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="scan time"):
        make_scene(0, 0, SMALL).scan_at(-1.0)
    with pytest.raises(ConfigError, match="unknown outdoor format"):
        generate_outdoor_dataset(tmp_path / "x", 2, 0, 1, fmt="waymo")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="non-empty folder"):
        generate_outdoor_dataset(foreign, 2, 0, 1, lidar=SMALL)
    assert isinstance(make_scene(0, 0), OutdoorScene)
