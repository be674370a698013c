"""Grid sampling (train / test mode) and sphere crop, checked against brute force."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srkd.data.voxelize import grid_sample, sphere_crop_indices, voxel_keys
from srkd.errors import ConfigError, DataError


def _cloud(seed: int, n: int, extent: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-extent, extent, (n, 3)).astype(np.float32)
    # duplicate some points so that many voxels hold several points
    dup = rng.integers(0, n, n // 3)
    return np.concatenate([coord, coord[dup]])


def _voxels_brute(coord: np.ndarray, g: float) -> dict[tuple, list[int]]:
    cells = np.floor(coord.astype(np.float64) / g).astype(np.int64)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(map(tuple, cells)):
        groups[c].append(i)
    return groups


CLOUDS = st.tuples(
    st.integers(0, 10_000), st.integers(1, 400), st.sampled_from([0.05, 0.3, 1.0, 4.0])
)


@settings(max_examples=40, deadline=None)
@given(CLOUDS, st.sampled_from([0.02, 0.1, 0.5]))
def test_train_mode_keeps_one_point_per_voxel(cloud, g):
    coord = _cloud(*cloud)
    res = grid_sample(coord, g, "train", np.random.default_rng(cloud[0]))
    groups = _voxels_brute(coord, g)
    assert res.num_voxels == len(groups)
    assert res.index.dtype == np.int64 and res.grid_coord.dtype == np.int32
    # one kept point per voxel, ordered by voxel id
    np.testing.assert_array_equal(res.inverse[res.index], np.arange(res.num_voxels))
    assert len(np.unique(res.grid_coord[res.index], axis=0)) == res.num_voxels
    # inverse map agrees with the brute-force grouping and with grid_coord
    for members in groups.values():
        assert len(set(res.inverse[members].tolist())) == 1
        assert (res.grid_coord[members] == res.grid_coord[members[0]]).all()
    assert res.grid_coord.min() == 0
    cells = np.floor(coord.astype(np.float64) / g).astype(np.int64)
    np.testing.assert_array_equal(res.grid_coord, cells - cells.min(axis=0))
    np.testing.assert_array_equal(np.bincount(res.inverse), res.counts)


@settings(max_examples=40, deadline=None)
@given(CLOUDS, st.sampled_from([0.02, 0.1, 0.5]))
def test_test_mode_fragments_cover_every_point(cloud, g):
    coord = _cloud(*cloud)
    res = grid_sample(coord, g, "test")
    assert len(res.fragments) == res.counts.max()
    for frag in res.fragments:
        # exactly one point of every voxel per fragment
        assert len(frag) == res.num_voxels
        np.testing.assert_array_equal(np.sort(res.inverse[frag]), np.arange(res.num_voxels))
    union = np.unique(np.concatenate(res.fragments))
    np.testing.assert_array_equal(union, np.arange(len(coord)))
    # fragment k takes the (k mod count)-th point of each voxel, points in input order
    groups = _voxels_brute(coord, g)
    for members in list(groups.values())[:20]:
        v = res.inverse[members[0]]
        for k, frag in enumerate(res.fragments):
            assert frag[v] == members[k % len(members)]


def test_train_mode_is_seeded_and_uniform():
    coord = np.zeros((4, 3), dtype=np.float32)  # one voxel with 4 points
    picks = [
        int(grid_sample(coord, 0.1, "train", np.random.default_rng(s)).index[0]) for s in range(400)
    ]
    counts = np.bincount(picks, minlength=4)
    assert counts.min() > 60  # each of 4 points is chosen about 100 times
    a = grid_sample(_cloud(1, 200, 1.0), 0.1, "train", np.random.default_rng(7)).index
    b = grid_sample(_cloud(1, 200, 1.0), 0.1, "train", np.random.default_rng(7)).index
    np.testing.assert_array_equal(a, b)


def test_voxel_keys_are_collision_free():
    g = np.stack(np.meshgrid(np.arange(7), np.arange(5), np.arange(3), indexing="ij"), -1)
    keys = voxel_keys(g.reshape(-1, 3))
    assert len(np.unique(keys)) == 7 * 5 * 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.integers(1, 350))
def test_sphere_crop_matches_brute_force(seed, n, max_points):
    rng = np.random.default_rng(seed)
    coord = rng.normal(size=(n, 3)).astype(np.float32)
    center = coord[rng.integers(n)]
    idx = sphere_crop_indices(coord, max_points, center)
    assert idx.dtype == np.int64 and (np.diff(idx) > 0).all()
    d = np.sum((coord.astype(np.float64) - center) ** 2, axis=1)
    expect = np.sort(np.argsort(d, kind="stable")[: min(n, max_points)])
    if n > max_points and np.isclose(np.sort(d)[max_points - 1], np.sort(d)[max_points]):
        return  # a tie at the boundary may be broken either way
    np.testing.assert_array_equal(idx, expect)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((np.zeros((3, 3)), 0.0, "test"), ConfigError),
        ((np.zeros((3, 3)), float("nan"), "test"), ConfigError),
        ((np.zeros((3, 3)), 0.1, "fast"), ConfigError),
        ((np.zeros((3, 3)), 0.1, "train"), ConfigError),  # no rng
        ((np.array([[0.0, np.nan, 0.0]]), 0.1, "test"), DataError),
        ((np.zeros((0, 3)), 0.1, "test"), DataError),
        ((np.zeros((3, 2)), 0.1, "test"), DataError),
        ((np.array([[0.0, 0, 0], [1e18, 1e18, 1e18]]), 1e-3, "test"), DataError),
    ],
)
def test_bad_inputs_raise_clear_errors(args, error):
    with pytest.raises(error):
        grid_sample(*args)


def test_sphere_crop_bad_max_points():
    with pytest.raises(ConfigError, match="max_points"):
        sphere_crop_indices(np.zeros((3, 3)), 0, np.zeros(3))
