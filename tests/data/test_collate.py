"""Collation and Mix3D: offsets merge, per-point scene identity survives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.data.collate import VoxelSample, collate, mix3d
from srkd.errors import ConfigError


def sample(i: int, n: int) -> VoxelSample:
    rng = np.random.default_rng(i)
    return VoxelSample(
        coord=rng.normal(size=(n, 3)).astype(np.float32),
        grid_coord=rng.integers(0, 50, (n, 3)).astype(np.int32),
        feat=rng.normal(size=(n, 6)).astype(np.float32),
        origin_index=rng.permutation(n * 3)[:n].astype(np.int64),
        segment=rng.integers(-1, 20, n),
        scene_id=f"scene{i:04d}_00",
        view=i % 3,
    )


class AlwaysMix:
    """A stand-in Generator whose coin always says 'mix' (or never)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_collate_without_record_is_backwards_compatible():
    batch = collate([sample(0, 5), sample(1, 7)])
    assert batch.offset.tolist() == [5, 12]
    assert batch.source_offset is None
    assert torch.equal(batch.sample_offset, batch.offset)
    assert torch.equal(batch.source_index, batch.batch_index)


@pytest.mark.parametrize("sizes", [[5, 7, 3, 4], [5, 7, 3], [2, 9]])
def test_mix3d_merges_pairs_and_keeps_source_identity(sizes):
    samples = [sample(i, n) for i, n in enumerate(sizes)]
    plain = collate(samples)
    mixed = mix3d(collate(samples), prob=0.8, rng=AlwaysMix(0.0))
    ends = np.cumsum(sizes)
    expect = ends[1::2].tolist() + ([int(ends[-1])] if len(sizes) % 2 else [])
    assert mixed.offset.tolist() == expect
    assert mixed.batch_size == (len(sizes) + 1) // 2
    assert mixed.source_offset.tolist() == ends.tolist()
    assert mixed.scene_ids == plain.scene_ids
    # nothing per point moved, and every point still knows its scene and view
    for name in ("coord", "grid_coord", "feat", "origin_index", "segment"):
        assert torch.equal(getattr(mixed, name), getattr(plain, name))
    src = mixed.source_index
    for s, smp in enumerate(samples):
        assert torch.equal(mixed.origin_index[src == s], torch.from_numpy(smp.origin_index))
        assert int(mixed.views[s]) == smp.view
    # merged sample k holds the sources 2k and 2k+1
    assert torch.equal(mixed.batch_index, src // 2)


def test_mix3d_probability_and_guards():
    batch = collate([sample(0, 4), sample(1, 4)])
    assert mix3d(batch, 0.8, AlwaysMix(0.9)) is batch
    assert mix3d(collate([sample(0, 4)]), 1.0, AlwaysMix(0.0)).source_offset is None
    rng = np.random.default_rng(0)
    mixed = sum(mix3d(batch, 0.8, rng).source_offset is not None for _ in range(500))
    assert 350 < mixed < 450
    with pytest.raises(ConfigError, match="already"):
        mix3d(mix3d(batch, 1.0, AlwaysMix(0.0)), 1.0, AlwaysMix(0.0))
    with pytest.raises(ConfigError, match="probability"):
        mix3d(batch, 1.5, rng)


def test_mixed_batch_moves_to_device():
    mixed = mix3d(collate([sample(0, 3), sample(1, 2)]), 1.0, AlwaysMix(0.0))
    moved = mixed.to("cpu")
    assert torch.equal(moved.source_offset, mixed.source_offset)
