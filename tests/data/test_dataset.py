"""SceneDataset and the DataLoader path: invariants, determinism, workers, view replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.data import transforms as T
from srkd.data.collate import PointBatch
from srkd.data.dataset import SceneDataset, make_fragments, make_loader, sample_rng
from srkd.errors import ConfigError
from srkd.types import PointCloud


class MemoryScenes:
    """A tiny in-memory scene source (picklable, so DataLoader workers can use it)."""

    def __init__(self, n_scenes: int = 5, points: int = 1500) -> None:
        self.scene_ids = [f"scene{i:04d}_00" for i in range(n_scenes)]
        self.points = points

    def load(self, scene_id: str) -> PointCloud:
        seed = self.scene_ids.index(scene_id)
        rng = np.random.default_rng(seed)
        n = self.points + 97 * seed
        normal = rng.normal(size=(n, 3))
        return PointCloud(
            coord=rng.uniform([0, 0, 0], [2.0, 1.5, 1.0], (n, 3)).astype(np.float32),
            origin_index=np.arange(n),
            scene_id=scene_id,
            color=rng.integers(0, 256, (n, 3)).astype(np.float32),
            normal=(normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
            segment=rng.integers(-1, 20, n),
            num_classes=20,
        )


def small_chain() -> T.Compose:
    return T.train_transforms(grid_size=0.05, max_points=800)


def test_train_items_keep_the_cache_invariant_and_replay():
    src = MemoryScenes()
    ds = SceneDataset(src, small_chain(), grid_size=0.05)
    assert len(ds) == 5
    for i in range(3):
        s = ds[i]
        raw = src.load(s.scene_id)
        assert s.coord.shape[0] <= 800 and s.feat.shape == (len(s.coord), 6)
        assert s.grid_coord.dtype == np.int32 and s.grid_coord.min() == 0
        assert len(np.unique(s.grid_coord, axis=0)) == len(s.coord)  # one point per voxel
        np.testing.assert_array_equal(s.segment, raw.segment[s.origin_index])
        again = T.replay(raw, s.record)
        np.testing.assert_array_equal(again.coord, s.coord)
        np.testing.assert_array_equal(again.origin_index, s.origin_index)


def test_items_are_deterministic_per_seed_epoch_and_index():
    src = MemoryScenes()
    ds = SceneDataset(src, small_chain(), grid_size=0.05, seed=3)
    a, b = ds[1], ds[1]
    np.testing.assert_array_equal(a.coord, b.coord)
    assert a.record == b.record
    ds.set_epoch(1)
    assert a.record != ds[1].record
    assert sample_rng(3, 0, 1).random() == sample_rng(3, 0, 1).random()


def test_chain_without_grid_sample_gets_one_and_mismatch_is_refused():
    src = MemoryScenes(2)
    ds = SceneDataset(src, T.Compose([T.CenterShift(), T.NormalizeColor()]), grid_size=0.1)
    assert ds.transforms.names[-1] == "grid_sample"
    s = ds[0]
    m = T.geometry_matrix(s.record)
    raw = src.load(s.scene_id)
    expect = raw.coord[s.origin_index].astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(s.coord, expect, atol=1e-5)
    with pytest.raises(ConfigError, match="grid-samples at 0.05"):
        SceneDataset(src, small_chain(), grid_size=0.02)


def test_fragments_cover_every_point():
    src = MemoryScenes(2, points=3000)
    raw = src.load(src.scene_ids[0])
    chain = T.Compose([T.CenterShift(), T.NormalizeColor()])
    pc, record = chain(raw, np.random.default_rng(0))
    frags = make_fragments(pc, 0.1, ("color", "normal"), record=record)
    seen = np.concatenate([f.origin_index for f in frags])
    np.testing.assert_array_equal(np.unique(seen), np.arange(raw.num_points))
    for f in frags:
        assert len(np.unique(f.grid_coord, axis=0)) == len(f.coord)
        np.testing.assert_array_equal(f.segment, raw.segment[f.origin_index])
        m = T.geometry_matrix(f.record)
        expect = raw.coord[f.origin_index].astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        np.testing.assert_allclose(f.coord, expect, atol=1e-5)


def test_view_provider_replays_a_cached_view_for_the_student():
    src = MemoryScenes(3)
    views: dict[str, list] = {}
    for sid in src.scene_ids:  # what a teacher cache would store: V = 2 records per scene
        raw = src.load(sid)
        views[sid] = [T.view_transforms()(raw, np.random.default_rng(v))[1] for v in range(2)]

    def provider(scene_id, pc, rng):
        v = int(rng.integers(2))
        return v, views[scene_id][v]

    rest = T.student_transforms(grid_size=0.05, max_points=10**6, elastic=False,
                                jitter=(0.0, 0.02), dropout=(0.2, 0.0))
    ds = SceneDataset(src, rest, 0.05, view_provider=provider)
    s = ds[2]
    chosen = views[s.scene_id][s.view]
    assert s.view in (0, 1) and s.record[: len(chosen)] == chosen
    raw = src.load(s.scene_id)
    teacher = T.view_transforms().replay(raw, views[s.scene_id][s.view])
    shift = np.asarray(s.record[-2]["params"]["shift"], dtype=np.float32)
    np.testing.assert_array_equal(s.coord, teacher.coord[s.origin_index] - shift)


def _batches(workers: int, mix3d_prob: float, epoch: int) -> list[PointBatch]:
    ds = SceneDataset(MemoryScenes(), small_chain(), grid_size=0.05, seed=5)
    loader = make_loader(ds, batch_size=2, workers=workers, shuffle=True, seed=9,
                         mix3d_prob=mix3d_prob)
    loader.set_epoch(epoch)
    return list(loader)


def test_two_workers_give_the_same_batches_as_none():
    for epoch in (0, 1):
        a = _batches(0, 0.5, epoch)
        b = _batches(2, 0.5, epoch)
        assert len(a) == len(b) == 3
        for x, y in zip(a, b, strict=True):
            assert x.scene_ids == y.scene_ids
            for name in ("coord", "grid_coord", "feat", "offset", "origin_index", "segment"):
                assert torch.equal(getattr(x, name), getattr(y, name)), name
            assert (x.source_offset is None) == (y.source_offset is None)
    # shuffling and augmentation really change between epochs
    e0, e1 = _batches(0, 0.0, 0), _batches(0, 0.0, 1)
    assert [b.scene_ids for b in e0] != [b.scene_ids for b in e1] or not torch.equal(
        e0[0].coord, e1[0].coord
    )


def test_mix3d_in_the_loader_keeps_scene_identity():
    batches = _batches(0, 1.0, 0)
    src = MemoryScenes()
    for b in batches:
        if len(b.scene_ids) < 2:
            continue
        assert b.batch_size == 1 and b.source_offset is not None
        for s, sid in enumerate(b.scene_ids):
            idx = b.origin_index[b.source_index == s].numpy()
            seg = b.segment[b.source_index == s].numpy()
            np.testing.assert_array_equal(seg, src.load(sid).segment[idx])


def test_bad_dataset_arguments():
    src = MemoryScenes(1)
    with pytest.raises(ConfigError, match="no scenes"):
        SceneDataset(MemoryScenes(0), None)
    with pytest.raises(ConfigError, match="scene source"):
        SceneDataset(object(), None)
    ds = SceneDataset(src, None, 0.1)
    with pytest.raises(IndexError):
        ds[1]
    with pytest.raises(ConfigError, match="mix3d_prob"):
        make_loader(ds, batch_size=2, mix3d_prob=2.0)


class IndexTargets:
    """A target source whose rows encode (scene, view, origin index); records its calls
    (picklable, so DataLoader workers can use it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, np.ndarray]] = []

    def __call__(self, scene_id: str, view: int, origin_index: np.ndarray):
        self.calls.append((scene_id, view, origin_index.copy()))
        scene = float(scene_id[5:9])
        base = origin_index[:, None].astype(np.float32) + 10000 * scene + 100000 * (view + 1)
        return base + np.arange(3, dtype=np.float32), -base[:, :1] - np.arange(2, dtype=np.float32)


def test_target_source_gets_each_samples_final_points():
    targets = IndexTargets()
    plain = SceneDataset(MemoryScenes(), small_chain(), grid_size=0.05, seed=3)
    ds = SceneDataset(MemoryScenes(), small_chain(), grid_size=0.05, seed=3, target_source=targets)
    for i in range(3):
        s, p = ds[i], plain[i]
        scene, view, origin = targets.calls[-1]
        assert (scene, view) == (s.scene_id, -1)
        np.testing.assert_array_equal(origin, s.origin_index)  # after crop and grid sampling
        want_logits, want_feats = IndexTargets()(scene, view, s.origin_index)
        np.testing.assert_array_equal(s.teacher_logits, want_logits)
        np.testing.assert_array_equal(s.teacher_feature, want_feats)
        # the sample is otherwise the one a dataset without targets makes
        np.testing.assert_array_equal(s.coord, p.coord)
        np.testing.assert_array_equal(s.origin_index, p.origin_index)
        assert p.teacher_logits is None and p.teacher_feature is None


def test_target_source_gets_the_replayed_view():
    src = MemoryScenes(1)
    record = T.view_transforms()(src.load(src.scene_ids[0]), np.random.default_rng(0))[1]

    def provider(scene_id, pc, rng):
        return 2, record

    targets = IndexTargets()
    rest = T.student_transforms(grid_size=0.05, max_points=800)
    ds = SceneDataset(src, rest, grid_size=0.05, view_provider=provider, target_source=targets)
    s = ds[0]
    assert s.view == 2 and targets.calls[-1][:2] == ("scene0000_00", 2)
    np.testing.assert_array_equal(s.teacher_logits[:, 0], s.origin_index + 300000)


def test_targets_in_batches_are_the_same_for_two_workers_as_none():
    def batches(workers: int) -> list[PointBatch]:
        ds = SceneDataset(MemoryScenes(), small_chain(), grid_size=0.05, seed=5,
                          target_source=IndexTargets())
        loader = make_loader(ds, batch_size=2, workers=workers, shuffle=True, seed=9, mix3d_prob=0.5)
        loader.set_epoch(1)
        return list(loader)

    a, b = batches(0), batches(2)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.teacher_logits, y.teacher_logits)
        assert torch.equal(x.teacher_feature, y.teacher_feature)
        assert torch.equal(x.teacher_logits[:, 0] % 10000, x.origin_index.float())
