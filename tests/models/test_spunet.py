"""SpUNet: forward/backward of the tiny variant, point order, parameter budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.data.collate import PointBatch, VoxelSample, collate
from srkd.errors import ConfigError, DataError
from srkd.models import count_parameters, create_model
from srkd.models.spunet import SpUNet


def _scene(seed: int, n: int = 400, side: int = 24, channels: int = 6) -> VoxelSample:
    """Unique random voxels of a small box (a grid-sampled scene), shuffled point order."""
    rng = np.random.default_rng(seed)
    grid = np.unique(rng.integers(0, side, (n, 3)), axis=0)
    grid = grid[rng.permutation(len(grid))]
    m = len(grid)
    return VoxelSample(
        coord=grid.astype(np.float32) * 0.02,
        grid_coord=grid.astype(np.int32),
        feat=rng.standard_normal((m, channels)).astype(np.float32),
        origin_index=np.arange(m),
        segment=rng.integers(0, 5, m),
        scene_id=f"scene{seed}",
    )


@pytest.fixture
def batch() -> PointBatch:
    return collate([_scene(0), _scene(1)])


def test_forward_backward_test_spunet(batch: PointBatch) -> None:
    torch.manual_seed(0)
    model = create_model("test_spunet", num_classes=5)
    out = model(batch)
    n = len(batch.feat)
    assert out.logits.shape == (n, 5) and out.feature.shape == (n, model.feature_dim)
    assert model.feature_dim == 8 and torch.isfinite(out.logits).all()
    loss = torch.nn.functional.cross_entropy(out.logits, batch.segment) + out.feature.pow(2).mean()
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [k for k, g in grads.items() if g is None]
    assert grads["conv_input.0.weight"].abs().sum() > 0 and grads["final.weight"].abs().sum() > 0


def test_outputs_follow_batch_point_order(batch: PointBatch) -> None:
    """Permuting the points of a batch permutes the outputs the same way (eval mode)."""
    torch.manual_seed(0)
    model = create_model("test_spunet").eval()
    # permute within each sample so offsets stay valid
    n0 = int(batch.offset[0])
    perm = torch.cat([torch.randperm(n0), n0 + torch.randperm(len(batch.feat) - n0)])
    shuffled = PointBatch(
        coord=batch.coord[perm],
        grid_coord=batch.grid_coord[perm],
        feat=batch.feat[perm],
        offset=batch.offset,
        origin_index=batch.origin_index[perm],
        segment=batch.segment[perm],
        scene_ids=batch.scene_ids,
        views=batch.views,
    )
    with torch.no_grad():
        a, b = model(batch), model(shuffled)
    torch.testing.assert_close(b.logits, a.logits[perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.feature, a.feature[perm], rtol=1e-4, atol=1e-5)


def test_samples_in_a_batch_are_independent(batch: PointBatch) -> None:
    """In eval mode, a sample's output does not depend on the other samples of the batch."""
    torch.manual_seed(0)
    model = create_model("test_spunet").eval()
    alone = collate([_scene(0)])
    with torch.no_grad():
        both, single = model(batch), model(alone)
    n0 = int(batch.offset[0])
    torch.testing.assert_close(both.logits[:n0], single.logits, rtol=1e-4, atol=1e-5)


def test_duplicate_voxels_share_predictions() -> None:
    s = _scene(2)
    dup = VoxelSample(
        coord=np.concatenate([s.coord, s.coord[:5]]),
        grid_coord=np.concatenate([s.grid_coord, s.grid_coord[:5]]),
        feat=np.concatenate([s.feat, s.feat[:5]]),
        origin_index=np.arange(len(s.coord) + 5),
        segment=np.concatenate([s.segment, s.segment[:5]]),
        scene_id="dup",
    )
    model = create_model("test_spunet").eval()
    with torch.no_grad():
        out = model(collate([dup]))
    torch.testing.assert_close(out.logits[-5:], out.logits[:5])


def test_spunet_small_is_a_student_below_15m() -> None:
    model = create_model("spunet_small")
    assert count_parameters(model) < 15_000_000
    assert model.num_classes == 20 and model.in_channels == 6 and model.feature_dim == 32


def test_bad_config_and_input(batch: PointBatch) -> None:
    with pytest.raises(ConfigError, match="same even length"):
        SpUNet(channels=(8, 8, 8), layers=(1, 1, 1))
    model = create_model("test_spunet", in_channels=4)
    with pytest.raises(DataError, match="expects 4 input feature channels"):
        model(batch)
