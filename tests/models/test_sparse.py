"""srkd.models.sparse: spconv on CPU, checked against dense torch convolutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srkd.data.collate import VoxelSample, collate
from srkd.errors import ConfigError, DataError
from srkd.models import sparse as S

SHAPE = [8, 8, 8]


def _random_sites(seed: int, n: int = 60, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grid = torch.unique(torch.randint(0, side, (n, 3), generator=gen), dim=0)
    feat = torch.randn(len(grid), 3, generator=gen)
    return grid, feat


def _dense(feat: torch.Tensor, idx: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """(M, C) sparse rows -> (1, C, X, Y, Z) dense grid (zeros elsewhere), differentiable."""
    i = idx.long()
    d = feat.new_zeros(*shape, feat.shape[1]).index_put((i[:, 1], i[:, 2], i[:, 3]), feat)
    return d.permute(3, 0, 1, 2).unsqueeze(0)


def _at(dense: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(1, C, X, Y, Z) dense grid sampled at sparse indices -> (M, C)."""
    i = idx.long()
    return dense[0, :, i[:, 1], i[:, 2], i[:, 3]].T


def test_weight_layout_is_out_kkk_in() -> None:
    conv = S.SubMConv3d(3, 5, 3)
    assert conv.weight.shape == (5, 3, 3, 3, 3) and conv.bias.shape == (5,)
    assert dict(conv.named_parameters()).keys() == {"weight", "bias"}
    assert S.SparseConv3d(3, 5, 2).weight.shape == (5, 2, 2, 2, 3)


def test_make_sparse_keeps_rows_and_pads_shape() -> None:
    grid, feat = _random_sites(0)
    b = torch.zeros(len(grid), dtype=torch.int64)
    b[len(b) // 2 :] = 1
    x = S.make_sparse(feat, grid, b, pad_to=16)
    assert x.indices.dtype == torch.int32 and x.indices.shape == (len(grid), 4)
    assert torch.equal(x.indices[:, 0].long(), b) and torch.equal(x.indices[:, 1:].long(), grid)
    assert x.spatial_shape == [16, 16, 16] and x.batch_size == 2
    assert torch.equal(x.features, feat)
    assert S.spatial_shape_for(torch.tensor([[0, 16, 17]]), pad_to=16) == [16, 32, 32]


def test_make_sparse_rejects_bad_input() -> None:
    grid, feat = _random_sites(0)
    b = torch.zeros(len(grid), dtype=torch.int64)
    with pytest.raises(DataError, match="row counts"):
        S.make_sparse(feat[:-1], grid, b)
    with pytest.raises(DataError, match="non-negative"):
        S.make_sparse(feat, grid - 1, b)
    with pytest.raises(DataError, match="non-negative"):
        S.make_sparse(feat, grid.float(), b)
    with pytest.raises(ConfigError, match="indice_key"):
        S.SparseInverseConv3d(3, 3, 2)


def test_single_voxel_submconv_is_centre_tap_plus_bias() -> None:
    conv = S.SubMConv3d(3, 4, 3, bias=True)
    torch.nn.init.normal_(conv.bias)
    f = torch.randn(1, 3)
    x = S.make_sparse(f, torch.tensor([[2, 3, 4]]), torch.zeros(1, dtype=torch.int64))
    want = f @ conv.weight[:, 1, 1, 1, :].T + conv.bias
    for training in (True, False):
        conv.train(training)
        out = conv(x).features
        torch.testing.assert_close(out, want)


@pytest.mark.parametrize("training", [True, False])
def test_submconv_matches_dense_conv_forward_and_backward(training: bool) -> None:
    grid, feat0 = _random_sites(1)
    conv = S.SubMConv3d(3, 4, 3, bias=True).train(training)
    torch.nn.init.normal_(conv.bias)
    feat = feat0.clone().requires_grad_(True)
    x = S.make_sparse(feat, grid, torch.zeros(len(grid), dtype=torch.int64), pad_to=8)
    out = conv(x)
    assert torch.equal(out.indices, x.indices)  # submanifold: same rows, same order
    # Reference: spconv's subm conv is a cross-correlation evaluated at the active sites only.
    feat_ref = feat0.clone().requires_grad_(True)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    b_ref = conv.bias.detach().clone().requires_grad_(True)
    dense = F.conv3d(_dense(feat_ref, x.indices, SHAPE), w_ref.permute(0, 4, 1, 2, 3), b_ref, padding=1)
    ref = _at(dense, x.indices)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(ref)
    (out.features * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(feat.grad, feat_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, b_ref.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_strided_and_inverse_conv_match_dense(training: bool) -> None:
    grid, feat0 = _random_sites(2)
    down = S.SparseConv3d(3, 4, 2, stride=2, indice_key="d1", bias=True).train(training)
    up = S.SparseInverseConv3d(4, 5, 2, indice_key="d1", bias=True).train(training)
    torch.nn.init.normal_(down.bias)
    torch.nn.init.normal_(up.bias)
    feat = feat0.clone().requires_grad_(True)
    x = S.make_sparse(feat, grid, torch.zeros(len(grid), dtype=torch.int64), pad_to=8)
    z = down(x)
    y = up(z)
    assert z.spatial_shape == [4, 4, 4]
    # Coarse rows are exactly the occupied parent cells v // 2.
    parents = torch.unique(grid // 2, dim=0)
    assert torch.equal(torch.unique(z.indices[:, 1:].long(), dim=0), parents)
    # The inverse conv returns exactly the fine rows, in the original order.
    assert torch.equal(y.indices, x.indices)

    feat_ref = feat0.clone().requires_grad_(True)
    wd = down.weight.detach().clone().requires_grad_(True)
    wu = up.weight.detach().clone().requires_grad_(True)
    dz = F.conv3d(_dense(feat_ref, x.indices, SHAPE), wd.permute(0, 4, 1, 2, 3), down.bias.detach(), stride=2)
    z_ref = _at(dz, z.indices)
    torch.testing.assert_close(z.features, z_ref, rtol=1e-5, atol=1e-5)
    # Inverse conv = transposed conv (weight (out,k,k,k,in) -> (in,out,k,k,k)) on the coarse rows.
    dy = F.conv_transpose3d(_dense(z_ref, z.indices, z.spatial_shape), wu.permute(4, 0, 1, 2, 3), stride=2)
    y_ref = _at(dy, x.indices) + up.bias.detach()
    torch.testing.assert_close(y.features, y_ref, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(y_ref)
    (y.features * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(feat.grad, feat_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(down.weight.grad, wd.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(up.weight.grad, wu.grad, rtol=1e-4, atol=1e-5)


def test_batches_do_not_mix() -> None:
    """The same voxels in two batch entries see only their own neighbours."""
    grid, feat = _random_sites(3)
    n = len(grid)
    conv = S.SubMConv3d(3, 2, 3).eval()
    single = conv(S.make_sparse(feat, grid, torch.zeros(n, dtype=torch.int64))).features
    both = conv(
        S.make_sparse(
            torch.cat([feat, 2 * feat]),
            torch.cat([grid, grid]),
            torch.cat([torch.zeros(n), torch.ones(n)]).long(),
        )
    ).features
    torch.testing.assert_close(both[:n], single)
    torch.testing.assert_close(both[n:] - conv.bias, 2 * (single - conv.bias))


def test_sequential_and_replace_feature() -> None:
    grid, feat = _random_sites(4)
    x = S.make_sparse(feat, grid, torch.zeros(len(grid), dtype=torch.int64))
    net = S.SparseSequential(S.SubMConv3d(3, 4, 3, indice_key="a"), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
    y = net(x)
    assert y.features.shape == (len(grid), 4) and bool((y.features >= 0).all())
    z = S.replace_feature(y, torch.ones(len(grid), 7))
    assert z.features.shape == (len(grid), 7) and torch.equal(z.indices, x.indices)
    with pytest.raises(DataError, match="rows"):
        S.replace_feature(y, torch.ones(3, 7))
    assert S.is_sparse_conv(net[0]) and not S.is_sparse_conv(net[1])


def _sample(grid: np.ndarray, scene: str) -> VoxelSample:
    n = len(grid)
    return VoxelSample(
        coord=grid.astype(np.float32) * 0.02,
        grid_coord=grid.astype(np.int32),
        feat=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        origin_index=np.arange(n),
        segment=np.zeros(n, dtype=np.int64),
        scene_id=scene,
    )


def test_batch_to_sparse_inverse_restores_point_order() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, (40, 3))  # has duplicate voxels
    b = rng.integers(0, 6, (30, 3))
    batch = collate([_sample(a, "a"), _sample(b, "b")])
    x, inverse = S.batch_to_sparse(batch)
    assert inverse.shape == (70,) and x.batch_size == 2
    # every point's row holds its own voxel and batch entry
    rows = x.indices[inverse].long()
    assert torch.equal(rows[:, 0], batch.batch_index) and torch.equal(rows[:, 1:], batch.grid_coord.long())
    # features of a voxel = mean over its points
    for i in (0, 17, 55):
        same = (inverse == inverse[i]).nonzero().flatten()
        torch.testing.assert_close(x.features[inverse[i]], batch.feat[same].mean(0))
    # unique voxels: the features are exactly a permutation of the points'
    u = np.unique(a, axis=0)
    batch_u = collate([_sample(u, "u")])
    xu, inv_u = S.batch_to_sparse(batch_u)
    assert len(xu.features) == len(u) and torch.equal(xu.features[inv_u], batch_u.feat)


def test_import_leaves_spconvs_kernel_list_whole() -> None:
    # srkd.models.sparse builds spconv's CUDA implicit-GEMM tuner empty on a CPU-only torch and
    # must hand spconv its kernel list back unchanged; the convs above ran with that tuner.
    import spconv.core

    assert len(spconv.core.ALL_IMPGEMM_PARAMS) > 0


@pytest.mark.parametrize("bias", [True, False])
def test_convs_run_in_float32_inside_a_cpu_bf16_autocast(bias: bool) -> None:
    """spconv has no CPU bfloat16 kernels: inside a bf16 autocast a conv takes bf16 features and
    gives what it gives in float32 on the same (rounded) input."""
    grid, feat = _random_sites(3)
    sub = S.SubMConv3d(3, 4, 3, bias=bias).eval()
    down = S.SparseConv3d(3, 4, 2, stride=2, indice_key="d1", bias=bias).eval()
    x = S.make_sparse(feat.bfloat16(), grid, torch.zeros(len(grid), dtype=torch.int64), pad_to=8)
    x32 = x.replace_feature(x.features.float())
    with torch.no_grad():
        for conv in (sub, down):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = conv(x).features
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, conv(x32).features)
