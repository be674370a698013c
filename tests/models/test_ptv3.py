"""Point Transformer V3: patch attention, pooling, presets, forward/backward (CPU, tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.data.collate import PointBatch, VoxelSample, collate
from srkd.errors import ConfigError, DataError
from srkd.models import count_parameters, create_model
from srkd.models.attention import SerializedAttention, flash_available, patch_layout
from srkd.models.ptv3 import PointTransformerV3
from srkd.models.ptv3_blocks import SerializedPooling, SerializedUnpooling, make_level
from srkd.models.serialization import serialize

TINY = ["test_ptv3", "test_ptv3_two_stage"]


def make_sample(n: int, seed: int, side: int = 10, in_channels: int = 6) -> VoxelSample:
    """n distinct voxels in a side^3 cube, in random order."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(side**3, size=n, replace=False)
    grid = np.stack([flat % side, flat // side % side, flat // side**2], axis=1).astype(np.int32)
    return VoxelSample(
        coord=(grid * 0.02 + rng.uniform(0, 0.02, grid.shape)).astype(np.float32),
        grid_coord=grid,
        feat=rng.normal(size=(n, in_channels)).astype(np.float32),
        origin_index=np.arange(n, dtype=np.int64),
        segment=rng.integers(0, 20, n),
        scene_id=f"scene{seed}",
    )


@pytest.fixture
def batch() -> PointBatch:
    return collate([make_sample(260, 0), make_sample(90, 1)])


# ---- patch attention ------------------------------------------------------------------------

def test_patch_layout_hand_example():
    # samples of 5 and 2 points, K = 3: the first is padded to 6 slots, its last slot repeats
    # the point one patch earlier (local 2); the second (2 <= K) is one short patch
    lay = patch_layout(torch.tensor([5, 7]), 3)
    assert lay.pad.tolist() == [0, 1, 2, 3, 4, 2, 5, 6]
    assert lay.unpad.tolist() == [0, 1, 2, 3, 4, 6, 7]
    assert lay.cu_seqlens.tolist() == [0, 3, 6, 8]
    assert lay.patch_size == 3


def reference_attention(attn: SerializedAttention, feat, order, offset, k):
    """Plain matmul-softmax attention, one patch at a time, patches built from the definition:
    position p of a sample of n points lies in patch p // k, except that when n > k the last
    patch holds the sample's last k points."""
    c, h = attn.channels, attn.num_heads
    q, key, v = attn.qkv(feat).reshape(-1, 3, h, c // h).unbind(1)
    out = torch.zeros(len(feat), c)
    start = 0
    for end in offset.tolist():
        pos = order[start:end]  # points of this sample in curve order
        n = end - start
        n_patches = -(-n // k)
        for j in range(n_patches):
            members = pos[j * k : (j + 1) * k]
            if j == n_patches - 1 and n > k:
                members = pos[n - k :]
            own = pos[j * k : (j + 1) * k]
            logits = torch.einsum("qhd,khd->hqk", q[members], key[members]) * attn.scale
            res = torch.einsum("hqk,khd->qhd", logits.softmax(-1), v[members]).reshape(-1, c)
            idx = {int(m): i for i, m in enumerate(members)}
            out[own] = res[[idx[int(p)] for p in own]]
        start = end
    return attn.proj(out)


@pytest.mark.parametrize("patch_size", [512, 16])
def test_patch_attention_matches_matmul_reference(patch_size):
    torch.manual_seed(0)
    counts = torch.tensor([70, 23])  # 70 % 16 != 0 exercises padding; 23 < 512 exercises masks
    offset = torch.cumsum(counts, 0)
    grid = torch.randint(0, 8, (93, 3))
    batch = torch.repeat_interleave(torch.arange(2), counts)
    order = serialize(grid, batch, ["hilbert"]).order[0]
    inverse = torch.argsort(order)
    attn = SerializedAttention(24, 3, patch_size, enable_flash=False).eval()
    feat = torch.randn(93, 24)
    got = attn(feat, order, inverse, patch_layout(offset, patch_size))
    want = reference_attention(attn, feat, order, offset, patch_size)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_whole_scene_patch_equals_dense_attention():
    # one sample, patch_size >= N: attention over every point, independent of the curve
    torch.manual_seed(1)
    n, c, h = 50, 16, 2
    attn = SerializedAttention(c, h, 1024, enable_flash=False).eval()
    feat = torch.randn(n, c)
    order = torch.randperm(n)
    got = attn(feat, order, torch.argsort(order), patch_layout(torch.tensor([n]), 1024))
    q, k, v = attn.qkv(feat).reshape(n, 3, h, c // h).unbind(1)
    weights = torch.softmax(torch.einsum("qhd,khd->hqk", q, k) / (c // h) ** 0.5, dim=-1)
    dense = attn.proj(torch.einsum("hqk,khd->qhd", weights, v).reshape(n, c))
    torch.testing.assert_close(got, dense, atol=1e-5, rtol=1e-5)


# ---- pooling / unpooling -------------------------------------------------------------------

def test_pooling_then_unpooling_keeps_shapes_and_point_order():
    torch.manual_seed(2)
    b = collate([make_sample(120, 3, side=8), make_sample(40, 4, side=8)])
    grid, bidx = b.grid_coord.long(), b.batch_index
    level = make_level(torch.randn(160, 8), b.coord, grid, bidx, 2, serialize(grid, bidx, ["z", "hilbert"]))
    pool = SerializedPooling(8, 12).eval()
    pool.norm, pool.act = torch.nn.Identity(), torch.nn.Identity()  # check the raw max-reduce
    coarse = pool(level)
    m = coarse.feat.shape[0]
    assert coarse.parent is level and coarse.cluster.shape == (160,)
    # every point's cell is its voxel >> 1, in its own sample; each cell keeps the max of proj(feat)
    assert torch.equal(coarse.grid_coord[coarse.cluster], grid >> 1)
    assert torch.equal(coarse.batch[coarse.cluster], bidx)
    assert coarse.offset.tolist() == [int((coarse.batch == 0).sum()), m]
    proj = pool.proj(level.feat)
    for cell in range(m):
        torch.testing.assert_close(coarse.feat[cell], proj[coarse.cluster == cell].max(0).values)
    assert coarse.serialization.depth == level.serialization.depth - 1
    assert torch.equal(coarse.serialization.inverse[0][coarse.serialization.order[0]], torch.arange(m))

    before = level.grid_coord.clone()
    up = SerializedUnpooling(12, 8, 6).eval()
    back = up(coarse)
    assert back is level and back.feat.shape == (160, 6)
    assert torch.equal(back.grid_coord, before)


# ---- full model ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name, batch):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    out = model(batch)
    assert out.logits.shape == (350, 5) and model.num_classes == 5
    assert out.feature.shape == (350, model.feature_dim) and model.in_channels == 6
    (out.logits.square().mean() + out.feature.square().mean()).backward()
    no_grad = [k for k, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad}"


@pytest.mark.parametrize("decoder_eval", [False, True])
def test_one_neighbour_map_per_level_and_same_results(batch, monkeypatch, decoder_eval):
    """The convs of a level (its encoder blocks, the decoder stage at that level) share one map
    per training mode, as in Pointcept; outputs and gradients equal those of building the map at
    every conv."""
    import spconv.pytorch.ops as spconv_ops

    from srkd.models import sparse

    built = []
    real = spconv_ops.get_indice_pairs
    monkeypatch.setattr(spconv_ops, "get_indice_pairs", lambda *a, **k: built.append(1) or real(*a, **k))

    def run():
        torch.manual_seed(0)
        model = create_model("test_ptv3", drop_path=0.0).train()
        if decoder_eval:  # e.g. a frozen part: its convs must not reuse the training-mode maps
            model.dec.eval()
        out = model(batch)
        (out.logits.square().mean() + out.feature.square().mean()).backward()
        return out.logits.detach(), [None if p.grad is None else p.grad.clone() for p in model.parameters()]

    logits, grads = run()
    stages = len(create_model("test_ptv3").enc)
    # the stem's 5x5x5 map, then one 3x3x3 map per level and mode (the decoder has stages - 1 levels)
    assert len(built) == 1 + stages + (stages - 1 if decoder_eval else 0)
    built.clear()
    monkeypatch.setattr(sparse, "subm_conv_with_maps", lambda conv, x, maps: conv(x))  # a map per conv
    logits_rebuilt, grads_rebuilt = run()
    assert len(built) > 1 + stages + (stages - 1 if decoder_eval else 0)
    torch.testing.assert_close(logits, logits_rebuilt, rtol=0, atol=0)
    for g, h in zip(grads, grads_rebuilt):
        assert (g is None) == (h is None)
        if g is not None:
            torch.testing.assert_close(g, h, rtol=0, atol=0)


def test_neighbour_maps_are_shared_only_by_submanifold_convs():
    from srkd.models import sparse

    x = sparse.make_sparse(torch.randn(4, 2), torch.tensor([[0, 0, 0], [2, 2, 2], [4, 0, 2], [6, 6, 6]]),
                           torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="submanifold"):
        sparse.subm_conv_with_maps(sparse.SparseConv3d(2, 2, indice_key="down"), x, {})


def test_outputs_follow_batch_point_order(batch):
    model = create_model("test_ptv3").eval()
    perm = torch.randperm(350, generator=torch.Generator().manual_seed(5))
    # permute points inside each sample, so the batch stays a valid concatenation
    perm = torch.cat([perm[perm < 260], perm[perm >= 260]])
    shuffled = PointBatch(
        coord=batch.coord[perm], grid_coord=batch.grid_coord[perm], feat=batch.feat[perm],
        offset=batch.offset, origin_index=batch.origin_index[perm], segment=batch.segment[perm],
        scene_ids=batch.scene_ids, views=batch.views,
    )
    with torch.no_grad():
        a, b = model(batch), model(shuffled)
    torch.testing.assert_close(a.logits[perm], b.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.feature[perm], b.feature, atol=1e-4, rtol=1e-4)


def test_points_sharing_a_voxel_share_outputs():
    s = make_sample(80, 6)
    dup = VoxelSample(
        coord=np.concatenate([s.coord, s.coord[:5]]), grid_coord=np.concatenate([s.grid_coord, s.grid_coord[:5]]),
        feat=np.concatenate([s.feat, s.feat[:5] + 1.0]), origin_index=np.arange(85),
        segment=np.zeros(85, dtype=np.int64), scene_id="dup",
    )
    model = create_model("test_ptv3_two_stage").eval()
    with torch.no_grad():
        out = model(collate([dup]))
    torch.testing.assert_close(out.logits[:5], out.logits[80:])


def test_flash_path_agrees_with_sdpa_on_cuda(batch):
    if not (flash_available() and torch.cuda.is_available()):
        pytest.skip("flash-attn on CUDA is not available")
    model = create_model("test_ptv3").eval().cuda()
    with torch.no_grad():
        flash = model(batch.to("cuda")).logits
        for m in model.modules():
            if isinstance(m, SerializedAttention):
                m.enable_flash = False
        sdpa = model(batch.to("cuda")).logits
    torch.testing.assert_close(flash, sdpa, atol=5e-2, rtol=5e-2)  # flash runs in bf16


def test_bad_inputs_and_configs_raise(batch):
    with pytest.raises(ConfigError, match="dec_channels"):
        PointTransformerV3(enc_depths=(1, 1), enc_channels=(8, 8), enc_num_head=(1, 1),
                           enc_patch_size=(8, 8), stride=(2,), dec_depths=(1,), dec_channels=(8, 8),
                           dec_num_head=(1,), dec_patch_size=(8,))
    with pytest.raises(ConfigError, match="unknown order"):
        create_model("test_ptv3", order=("z", "peano"))
    model = create_model("test_ptv3", in_channels=3)
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        model(batch)


# ---- presets (parameter counts without a forward pass) -------------------------------------

@pytest.fixture(scope="module")
def large():
    return create_model("ptv3_large").eval()


def test_preset_parameter_counts(large):
    assert count_parameters(large) > 100_000_000
    assert count_parameters(create_model("ptv3_half")) < 15_000_000
    assert round(count_parameters(create_model("ptv3_base")) / 1e6, 1) == 46.2  # Pointcept's figure
    assert large.feature_dim == 64 and create_model("ptv3_half").feature_dim == 32


@pytest.mark.timeout(60)
def test_large_teacher_forward_on_cpu(large):
    b = collate([make_sample(3000, 7, side=24)])
    with torch.no_grad():
        out = large(b)
    assert out.logits.shape == (3000, 20) and out.feature.shape == (3000, 64)
    assert bool(torch.isfinite(out.logits).all())
