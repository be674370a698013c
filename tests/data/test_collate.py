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


def with_targets(smp: VoxelSample, k: int = 4, d: int = 3) -> VoxelSample:
    """The sample with teacher targets that encode its scene and its points' origin_index."""
    scene = float(smp.scene_id[5:9])
    smp.teacher_logits = (smp.origin_index[:, None] + np.arange(k) / 10 + 1000 * scene).astype(np.float32)
    smp.teacher_feature = (-smp.origin_index[:, None] - np.arange(d) / 10 - 1000 * scene).astype(np.float32)
    return smp


def test_collate_without_targets_has_none():
    batch = collate([sample(0, 5), sample(1, 7)])
    assert batch.teacher_logits is None and batch.teacher_feature is None
    assert batch.to("cpu").teacher_logits is None


@pytest.mark.parametrize("sizes", [[5, 7, 3, 4], [5, 7, 3]])
def test_targets_are_concatenated_in_point_order_and_survive_mix3d(sizes):
    samples = [with_targets(sample(i, n)) for i, n in enumerate(sizes)]
    for batch in (collate(samples), mix3d(collate(samples), 1.0, AlwaysMix(0.0))):
        assert batch.teacher_logits.dtype == torch.float32 and batch.teacher_logits.shape == (sum(sizes), 4)
        assert batch.teacher_feature.dtype == torch.float32 and batch.teacher_feature.shape == (sum(sizes), 3)
        src = batch.source_index
        for s, smp in enumerate(samples):  # each point keeps its own sample's rows
            assert torch.equal(batch.teacher_logits[src == s], torch.from_numpy(smp.teacher_logits))
            assert torch.equal(batch.teacher_feature[src == s], torch.from_numpy(smp.teacher_feature))
        # and they follow origin_index point by point
        assert torch.equal(batch.teacher_logits[:, 0] % 1000, (batch.origin_index % 1000).float())
        moved = batch.to("cpu")
        assert torch.equal(moved.teacher_logits, batch.teacher_logits)
        assert torch.equal(moved.teacher_feature, batch.teacher_feature)


def test_a_batch_where_only_some_samples_carry_targets_is_refused():
    with pytest.raises(ConfigError, match=r"scene0001_00.*carry no .*teacher targets"):
        collate([with_targets(sample(0, 5)), sample(1, 4)])
    half = with_targets(sample(1, 4))
    half.teacher_feature = None
    with pytest.raises(ConfigError, match="scene0001_00"):
        collate([with_targets(sample(0, 5)), half])


def test_pin_memory_pins_every_tensor_of_the_batch(monkeypatch):
    """What DataLoader(pin_memory=True) does to a batch: PointBatch.pin_memory maps every tensor,
    targets and Mix3D offsets included (pinning itself needs CUDA, so it is stood in for)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned: list[int] = []

    def fake_pin(tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        pinned.append(id(out))
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = mix3d(collate([with_targets(sample(0, 5)), with_targets(sample(1, 4))]), 1.0, AlwaysMix(0.0))
    out = pin_memory(batch)
    tensors = {name: getattr(out, name) for name in ("coord", "grid_coord", "feat", "offset", "origin_index",
                                                     "segment", "views", "source_offset", "teacher_logits",
                                                     "teacher_feature")}
    assert sorted(id(t) for t in tensors.values()) == sorted(pinned)
    for name, t in tensors.items():
        assert torch.equal(t, getattr(batch, name)), name
    assert out.scene_ids == batch.scene_ids
