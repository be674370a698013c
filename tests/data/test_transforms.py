"""Transforms: the invariants that make the teacher cache possible, and replay."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srkd.data import transforms as T
from srkd.errors import ConfigError
from srkd.types import PointCloud


def make_cloud(seed: int, n: int, extent: float = 3.0) -> PointCloud:
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return PointCloud(
        coord=rng.uniform(-extent, extent, (n, 3)).astype(np.float32),
        origin_index=np.arange(n),
        scene_id=f"s{seed}",
        color=rng.uniform(0, 255, (n, 3)).astype(np.float32),
        normal=normal.astype(np.float32),
        segment=rng.integers(-1, 20, n),
        instance=rng.integers(-1, 5, n),
        num_classes=20,
    )


# Factories so hypothesis builds fresh chains; p = 1 where a transform would otherwise skip.
AFFINE = {
    "center_shift": lambda: T.CenterShift(apply_z=True),
    "center_shift_xy": lambda: T.CenterShift(apply_z=False),
    "rotate_z": lambda: T.RandomRotate(axis="z", center=(0.0, 0.0, 0.0), p=0.7),
    "rotate_x": lambda: T.RandomRotate((-math.pi / 64, math.pi / 64), axis="x", p=1.0),
    "rotate_y_big": lambda: T.RandomRotate((-1.0, 1.0), axis="y", p=1.0),
    "scale": lambda: T.RandomScale((0.9, 1.1)),
    "scale_aniso": lambda: T.RandomScale((0.5, 2.0), anisotropic=True),
    "flip": lambda: T.RandomFlip(p=0.5),
}
SUBSET_AND_COLOUR = {
    "dropout": lambda: T.RandomDropout(0.3, p=1.0),
    "grid": lambda: T.GridSample(0.2),
    "crop": lambda: T.SphereCrop(40),
    "contrast": lambda: T.ChromaticAutoContrast(p=1.0),
    "translate": lambda: T.ChromaticTranslation(p=1.0),
    "color_jitter": lambda: T.ChromaticJitter(p=1.0),
    "normalize": lambda: T.NormalizeColor(),
}
DEFORM = {
    "jitter": lambda: T.RandomJitter(),
    "elastic": lambda: T.ElasticDistortion(p=1.0),
}
ALL = {**AFFINE, **SUBSET_AND_COLOUR, **DEFORM}

CLOUD = st.tuples(st.integers(0, 10_000), st.integers(1, 200))


def chains(names: dict) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(sorted(names)), min_size=0, max_size=8)


def build(names: list[str]) -> T.Compose:
    return T.Compose([ALL[n]() for n in names])


def assert_same_cloud(a: PointCloud, b: PointCloud) -> None:
    assert type(a) is type(b)
    fa, fb = a.fields(), b.fields()
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def apply_matrix(m: np.ndarray, coord: np.ndarray) -> np.ndarray:
    return coord.astype(np.float64) @ m[:3, :3].T + m[:3, 3]


@settings(max_examples=50, deadline=None)
@given(CLOUD, chains(ALL), st.integers(0, 2**32))
def test_any_chain_keeps_labels_with_their_points_and_replays_exactly(cloud, names, seed):
    raw = make_cloud(*cloud)
    chain = build(names)
    out, record = chain(raw, np.random.default_rng(seed))
    # the cache invariant: every per-point field follows origin_index
    np.testing.assert_array_equal(out.segment, raw.segment[out.origin_index])
    np.testing.assert_array_equal(out.instance, raw.instance[out.origin_index])
    # the record is plain JSON and replays bit for bit, with and without the chain
    text = T.record_to_json(record)
    assert json.loads(text) == record
    assert_same_cloud(chain.replay(raw, T.record_from_json(text)), out)
    assert_same_cloud(T.replay(raw, record), out)


@settings(max_examples=50, deadline=None)
@given(CLOUD, chains({**AFFINE, **SUBSET_AND_COLOUR}), st.integers(0, 2**32))
def test_coordinates_are_the_recorded_affine_image_of_the_raw_points(cloud, names, seed):
    raw = make_cloud(*cloud)
    out, record = build(names)(raw, np.random.default_rng(seed))
    m = T.geometry_matrix(record)
    expect = apply_matrix(m, raw.coord[out.origin_index])
    np.testing.assert_allclose(out.coord, expect, atol=2e-4, rtol=1e-5)
    # normals follow the inverse-transpose of the linear part
    n = raw.normal[out.origin_index].astype(np.float64) @ np.linalg.inv(m[:3, :3])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.testing.assert_allclose(out.normal, n, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(CLOUD, chains(AFFINE), st.integers(0, 2**32))
def test_jitter_stays_within_clip_of_the_affine_image(cloud, names, seed):
    raw = make_cloud(*cloud)
    out, record = build([*names, "jitter"])(raw, np.random.default_rng(seed))
    with pytest.raises(ConfigError, match="non-affine"):
        T.geometry_matrix(record)
    expect = apply_matrix(T.geometry_matrix(record, strict=False), raw.coord[out.origin_index])
    assert np.abs(out.coord - expect).max() <= 0.02 + 2e-4


def test_elastic_distortion_is_smooth_and_bounded():
    raw = make_cloud(0, 2000)
    out, record = T.Compose([T.ElasticDistortion(p=1.0)])(raw, np.random.default_rng(1))
    d = out.coord.astype(np.float64) - raw.coord
    assert 0.005 < np.abs(d).mean() < 0.3  # metres: a visible but modest deformation
    # nearby points move together (smoothness): compare with the displacement of a random pair
    near = np.argsort(np.linalg.norm(raw.coord - raw.coord[0], axis=1))[1:6]
    assert np.linalg.norm(d[near] - d[0], axis=1).mean() < np.linalg.norm(d - d[0], axis=1).mean()
    np.testing.assert_array_equal(T.replay(raw, record).coord, out.coord)


def test_each_random_transform_depends_on_the_rng():
    raw = make_cloud(3, 300, extent=0.5)  # dense enough that voxels hold several points
    for name, factory in ALL.items():
        t = factory()
        outs = [t(raw, np.random.default_rng(s))[0] for s in range(4)]
        same = all(np.array_equal(o.coord, outs[0].coord) and np.array_equal(o.color, outs[0].color)
                   and o.num_points == outs[0].num_points for o in outs)
        deterministic = name.startswith("center_shift") or name in ("normalize",)
        assert same == deterministic, name


def test_train_chain_matches_the_method_order_and_output_ranges():
    chain = T.train_transforms()
    assert chain.names == [
        "center_shift", "dropout", "rotate", "rotate", "rotate", "scale", "flip", "jitter",
        "elastic", "chromatic_auto_contrast", "chromatic_translation", "chromatic_jitter",
        "grid_sample", "sphere_crop", "center_shift", "normalize_color",
    ]
    assert T.view_transforms().names == [
        "center_shift", "rotate", "rotate", "rotate", "scale", "flip"
    ]
    view_names = set(T.view_transforms().names) - {"center_shift"}
    assert not view_names & set(T.student_transforms().names)
    raw = make_cloud(5, 3000)
    out, record = T.train_transforms(grid_size=0.05, max_points=1000)(raw, np.random.default_rng(0))
    assert isinstance(out, T.VoxelCloud) and out.num_points <= 1000
    assert out.color.min() >= -1.0 and out.color.max() <= 1.0
    lo, hi = out.coord.min(axis=0), out.coord.max(axis=0)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-5)  # final xy centring
    assert len(np.unique(out.grid_coord, axis=0)) == out.num_points  # one point per voxel


def test_student_chain_replays_the_teacher_view_then_draws_the_rest():
    raw = make_cloud(7, 500)
    view = T.view_transforms()
    teacher_view, view_rec = view(raw, np.random.default_rng(11))
    rest = T.student_transforms(grid_size=0.1, max_points=200, elastic=False, jitter=(0.0, 0.02))
    student, full = T.apply_view_then(raw, view_rec, rest, np.random.default_rng(12))
    # the student's points sit exactly where the teacher saw them, up to the final centring
    shift = np.asarray(full[-2]["params"]["shift"], dtype=np.float32)
    idx = student.origin_index
    np.testing.assert_array_equal(student.coord, teacher_view.coord[idx] - shift)
    assert_same_cloud(T.replay(raw, full), student)


def test_geometry_matrix_composes_in_order():
    raw = make_cloud(9, 50)
    rec = T.view_record(raw, angle_z=math.pi / 2, scale=2.0, flip_x=True)
    m = T.geometry_matrix(rec)
    out = T.view_transforms().replay(raw, rec)
    np.testing.assert_allclose(out.coord, apply_matrix(m, raw.coord), atol=1e-5)
    # by hand: shift, then rotate 90 degrees about z, scale 2, negate x
    shifted = raw.coord.astype(np.float64) - rec[0]["params"]["shift"]
    by_hand = np.stack([2 * shifted[:, 1], 2 * shifted[:, 0], 2 * shifted[:, 2]], axis=1)
    np.testing.assert_allclose(out.coord, by_hand, atol=1e-5)


def test_tta_views_are_the_13_release_views():
    raw = make_cloud(2, 20)
    views = T.tta_view_records(raw)
    assert len(views) == 13
    chain = T.view_transforms()
    scales = sorted({v[4]["params"]["scale"][0] for v in views})
    assert scales == [0.95, 1.0, 1.05]
    assert sum(v[5]["params"]["x"] and v[5]["params"]["y"] for v in views) == 1
    for v in views:
        assert chain.replay(raw, v).num_points == 20


def test_bad_records_and_parameters_raise_config_errors():
    raw = make_cloud(1, 10)
    with pytest.raises(ConfigError, match="unknown transform"):
        T.replay(raw, [{"name": "warp", "params": {}}])
    with pytest.raises(ConfigError, match="entry 0"):
        T.replay(raw, [{"name": "flip"}])
    with pytest.raises(ConfigError, match="list"):
        T.replay(raw, {"name": "flip", "params": {}})
    with pytest.raises(ConfigError, match="chain is"):
        T.view_transforms().replay(raw, [{"name": "flip", "params": {"x": True, "y": False}}])
    with pytest.raises(ConfigError, match="valid JSON"):
        T.record_from_json("{not json")
    for bad in (
        lambda: T.RandomRotate(axis="w"),
        lambda: T.RandomFlip(p=1.5),
        lambda: T.RandomScale((1.2, 0.8)),
        lambda: T.RandomDropout(ratio=1.0),
        lambda: T.GridSample(0.0),
        lambda: T.SphereCrop(0),
        lambda: T.RandomJitter(clip=0.0),
        lambda: T.Compose([lambda pc: pc]),
    ):
        with pytest.raises(ConfigError):
            bad()


def test_colour_transforms_skip_clouds_without_colour():
    raw = make_cloud(4, 30).replace(color=None)
    chain = T.Compose([T.ChromaticAutoContrast(p=1), T.ChromaticJitter(p=1), T.NormalizeColor()])
    out, _ = chain(raw, np.random.default_rng(0))
    assert out.color is None
    np.testing.assert_array_equal(out.coord, raw.coord)


@pytest.mark.parametrize("mode, lo, hi", [("pointcept", 0.0, 1.0), ("legacy", -1.0, 1.0)])
def test_colour_normalisations_map_the_full_range(mode, lo, hi):
    raw = make_cloud(5, 40)
    raw = raw.replace(color=np.linspace(0, 255, raw.num_points * 3, dtype=np.float32).reshape(-1, 3))
    out, record = T.Compose([T.NormalizeColor(mode)])(raw, np.random.default_rng(0))
    assert out.color.min() == pytest.approx(lo) and out.color.max() == pytest.approx(hi)
    assert record[0]["params"] == {"mode": mode}
    np.testing.assert_array_equal(T.replay(raw, record).color, out.color)


def test_colour_records_without_a_mode_replay_as_legacy():
    # srkd 0.1 wrote {"name": "normalize_color", "params": {}} and always mapped to [-1, 1]
    raw = make_cloud(6, 40)
    old = [{"name": "normalize_color", "params": {}}]
    np.testing.assert_allclose(T.replay(raw, old).color, raw.color / 127.5 - 1.0, atol=1e-6)


def test_default_chains_use_the_default_colour_normalisation():
    assert T.DEFAULT_COLOR_NORM == "pointcept"
    for chain in (T.train_transforms(0.05), T.student_transforms(0.05), T.fragment_transforms()):
        assert chain.transforms[-1].mode == T.DEFAULT_COLOR_NORM
    assert T.train_transforms(0.05, color_norm="legacy").transforms[-1].mode == "legacy"
    with pytest.raises(ConfigError, match="unknown colour normalisation 'rgb'"):
        T.NormalizeColor("rgb")
