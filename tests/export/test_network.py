"""The export-friendly network path (host-built indices + tensor ops) against srkd's spconv path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.errors import ConfigError
from srkd.export.network import TensorNetwork, network_inputs, plan_for
from srkd.models.attention import patch_gather_index, patch_layout
from srkd.models.deploy import PlainSegmenter
from srkd.models.serialization import ORDERS, encode
from srkd.runtime import curves
from srkd.runtime.indices import IndexPlan, neighbour_map, patch_index
from tests.export.helpers import assert_agree, model_with_stats, real_crop, room

GRID = 0.02


def eager_and_tensor(model, coord, feat, offset):
    seg = PlainSegmenter(model, GRID).eval()
    net = TensorNetwork(model).eval()
    with torch.no_grad():
        want = seg(torch.from_numpy(coord), torch.from_numpy(feat), torch.from_numpy(offset)).numpy()
        got = net(*network_inputs(net.plan, coord, feat, offset, GRID)).numpy()
    return got, want


@pytest.mark.parametrize("order", ORDERS)
def test_numpy_curves_equal_torch(order):
    rng = np.random.default_rng(1)
    for depth in (1, 5, 11, 16):
        grid = rng.integers(0, 1 << depth, size=(500, 3))
        batch = rng.integers(0, 3, size=500)
        want = encode(torch.from_numpy(grid), torch.from_numpy(batch), depth, order).numpy()
        assert np.array_equal(curves.encode_np(grid, batch, depth, order), want)


@pytest.mark.parametrize("counts", [[5, 2], [300, 40, 129], [64], [7]])
def test_patch_index_equals_torch_layout(counts):
    rng = np.random.default_rng(0)
    n, k = sum(counts), 32
    offset = np.cumsum(counts)
    order = np.concatenate([rng.permutation(c) + s for c, s in zip(counts, offset - counts)])
    inverse = np.argsort(order)
    grid_point, point_row, mask = patch_index(order, inverse, offset, k)
    layout = patch_layout(torch.from_numpy(offset), k)
    want_point, want_row = patch_gather_index(torch.from_numpy(order), torch.from_numpy(inverse), layout)
    assert np.array_equal(grid_point.reshape(-1), want_point.numpy())
    assert np.array_equal(point_row, want_row.numpy())
    valid = np.isfinite(mask)
    want_valid = np.ones_like(valid) if layout.key_mask is None else layout.key_mask[:, 0, 0].numpy()
    assert np.array_equal(valid, want_valid) and len(point_row) == n


def test_neighbour_map_by_brute_force():
    rng = np.random.default_rng(2)
    grid = np.unique(rng.integers(0, 6, size=(120, 3)), axis=0)
    sample = (np.arange(len(grid)) >= 60).astype(np.int64)
    nbr = neighbour_map(grid, sample, 3)
    steps = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for i in range(0, len(grid), 7):
        for j, d in enumerate(steps):
            hit = np.flatnonzero((grid == grid[i] + d).all(1) & (sample == sample[i]))
            assert nbr[i, j] == (hit[0] if len(hit) else len(grid))


@pytest.mark.parametrize(("name", "overrides"), [
    ("test_ptv3", {}), ("test_ptv3", {"unpooling": "v3m2"}), ("test_ptv3_two_stage", {}),
    ("demo_student", {}), ("test_spunet", {}),
])
def test_tensor_path_matches_spconv_on_two_rooms(name, overrides):
    (c1, f1), (c2, f2) = room(0, 6000), room(1, 2500)
    coord, feat = np.concatenate([c1, c2 + 50.0]), np.concatenate([f1, f2])
    got, want = eager_and_tensor(model_with_stats(name, **overrides), coord, feat, np.array([6000, 8500]))
    assert_agree(got, want)


SHORT_PATCHES = {"enc_patch_size": (128,) * 5, "dec_patch_size": (128,) * 4}  # seconds, not minutes


@pytest.mark.parametrize(("name", "overrides"), [("ptv3_half", SHORT_PATCHES), ("spunet_small", {})])
def test_student_presets_match_spconv(name, overrides):
    coord, feat = room(2, 4000)
    got, want = eager_and_tensor(model_with_stats(name, **overrides), coord, feat, np.array([len(coord)]))
    assert_agree(got, want)


@pytest.mark.parametrize("name", ["demo_student", "test_spunet"])
def test_tensor_path_matches_spconv_on_a_real_scan(scannet_real, name):
    coord, feat = real_crop(scannet_real, "scene0004_00")
    got, want = eager_and_tensor(model_with_stats(name), coord, feat, np.array([len(coord)]))
    assert_agree(got, want)


def test_plan_records_levels_kernels_and_patches():
    plan = plan_for(model_with_stats("test_ptv3"))
    assert plan.kind == "ptv3" and plan.kernels == ((5, 3), (3,), (3,)) and plan.strides == (2, 2)
    assert plan.patches[2] == ((32, 0), (32, 1))
    assert IndexPlan.from_json(plan.to_json()) == plan
    assert plan_for(model_with_stats("test_spunet")).kernels == ((5, 3), (3,), (3,))
    with pytest.raises(ConfigError, match="cannot be exported"):
        plan_for(torch.nn.Linear(2, 2))


def test_tensor_network_shares_the_models_parameters():
    model = model_with_stats("test_ptv3")
    net = TensorNetwork(model)
    assert {k[len("model."):] for k in net.state_dict()} == set(model.state_dict())
    assert net.model.seg_head.weight is model.seg_head.weight
