"""Cached teacher targets: the gather by (scene, view, origin_index) in every mode, Mix3D
included; view replay (the student sees the cached teacher view); clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srkd.cache import CacheReader
from srkd.cache_teacher.views import spec_view_settings
from srkd.data.dataset import SceneDataset, make_loader
from srkd.data.scannet import ScanNetScenes, get_dataset_spec
from srkd.data.transforms import geometry_matrix, student_transforms
from srkd.distill.targets import CachedTargets, CachedViewProvider
from srkd.errors import CacheError, CacheMissError, ConfigError
from tests.distill.conftest import GRID

DS = get_dataset_spec("scannet")


def no_deform_chain():
    """The student's own chain without dropout, jitter, elastic and colour (augment off)."""
    return student_transforms(GRID, 10**6, dropout=(0.0, 0.0), jitter=(0.0, 0.0), elastic=False,
                              chromatic=False)


def loader_for(data_root, reader, mode: str, mix3d: float, batch_size: int, chain=None):
    dataset = SceneDataset(
        ScanNetScenes(data_root, "train", DS), chain or student_transforms(GRID, 10**6),
        grid_size=GRID, feature_names=DS.feature_names, seed=1,
        view_provider=CachedViewProvider(reader, replay=mode == "view"),
    )
    return make_loader(dataset, batch_size, shuffle=True, seed=1, mix3d_prob=mix3d, drop_last=True)


def expected_targets(reader, batch, entry_of):
    """Per point p: the cached row origin_index[p] of the entry of p's SOURCE sample."""
    source = batch.source_index.numpy()
    origin = batch.origin_index.numpy()
    logits = np.full((len(origin), reader.spec.num_classes), np.nan, np.float32)
    feats = np.full((len(origin), reader.spec.feature_dim), np.nan, np.float32)
    for s, scene in enumerate(batch.scene_ids):
        rows = source == s
        lg, ft = reader.read_all(scene, entry_of(s))
        logits[rows], feats[rows] = lg[origin[rows]], ft[origin[rows]]
    return logits, feats


@pytest.mark.parametrize("mode", ["view", "canonical", "ensemble"])
@pytest.mark.parametrize("mix3d,batch_size", [(0.0, 4), (1.0, 4), (1.0, 3)])
def test_gather_returns_exactly_the_cached_rows(cache_dir, data_root, mode, mix3d, batch_size):
    reader = CacheReader(cache_dir)
    loader = loader_for(data_root, reader, mode, mix3d, batch_size)
    targets = CachedTargets(reader, mode)
    seen_views = set()
    for epoch in range(2):
        loader.set_epoch(epoch)
        for batch in loader:
            if mix3d:  # Mix3D merged pairs: fewer model samples than source samples
                assert batch.source_offset is not None and batch.batch_size < len(batch.scene_ids)
            views = batch.views.tolist()
            seen_views.update(views)
            entry = {"view": lambda s: views[s], "canonical": lambda s: 0,
                     "ensemble": lambda s: "ensemble"}[mode]
            want_logits, want_feats = expected_targets(reader, batch, entry)
            got = targets(batch)
            assert got.logits.dtype == torch.float32 and got.feature.dtype == torch.float32
            assert not np.isnan(want_logits).any()
            np.testing.assert_array_equal(got.logits.numpy(), want_logits)
            np.testing.assert_array_equal(got.feature.numpy(), want_feats)
    if mode == "view":  # samples really draw among the cached views
        assert seen_views - {0} and min(seen_views) >= 0
    else:
        assert seen_views == {-1}


def test_entries_differ_between_modes(cache_dir, data_root):
    """Guard against a gather that ignores the mode: view v, view 0 and the ensemble differ."""
    reader = CacheReader(cache_dir)
    loader = loader_for(data_root, reader, "view", 0.0, 4)
    batch = next(iter(loader))
    assert (batch.views > 0).any()
    by_mode = {m: CachedTargets(reader, m)(batch).logits for m in ("view", "canonical", "ensemble")}
    assert not torch.equal(by_mode["view"], by_mode["canonical"])
    assert not torch.equal(by_mode["canonical"], by_mode["ensemble"])


def test_student_sample_replays_the_cached_teacher_view(cache_dir, data_root):
    reader = CacheReader(cache_dir)
    settings = spec_view_settings(reader.spec)
    source = ScanNetScenes(data_root, "train", DS)
    dataset = SceneDataset(source, no_deform_chain(), grid_size=GRID,
                           feature_names=DS.feature_names, seed=2,
                           view_provider=CachedViewProvider(reader))
    rotated = 0
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            sample = dataset[i]
            raw = source.load(sample.scene_id)
            view_rec = reader.view_params(sample.scene_id, sample.view)["record"]
            assert sample.record[: len(view_rec)] == view_rec  # the cached record, replayed first
            m = geometry_matrix(view_rec)
            in_view = raw.coord[sample.origin_index] @ m[:3, :3].T + m[:3, 3]
            # the geometry the teacher saw for this view, drawn as the cache drew it
            teacher_pc, _ = settings.draw(raw, sample.view)
            np.testing.assert_allclose(teacher_pc.coord[sample.origin_index], in_view, atol=1e-4)
            # the student's own chain adds only its final x/y centring: a constant shift
            shift = sample.coord - in_view
            np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-4)
            assert abs(shift[0, 2]) < 1e-4
            rotated += int(np.abs(m[:3, :3] - np.eye(3)).max() > 1e-3)
    assert rotated > 0  # some samples replayed a rotated/scaled/flipped view, not just view 0


def test_ensemble_missing_is_a_clear_error(plain_cache_dir, data_root):
    reader = CacheReader(plain_cache_dir)
    batch = next(iter(loader_for(data_root, reader, "ensemble", 0.0, 2)))
    with pytest.raises(CacheError, match="no ensemble entry.*--targets view\\|canonical"):
        CachedTargets(reader, "ensemble")(batch)


def test_scene_missing_from_the_cache(cache_dir, data_root):
    reader = CacheReader(cache_dir)
    val = ScanNetScenes(data_root, "val", DS)
    pc = val.load(val.scene_ids[0])
    with pytest.raises(CacheError, match="not in the teacher cache"):
        CachedViewProvider(reader)(pc.scene_id, pc, np.random.default_rng(0))
    with pytest.raises(CacheError, match="not in the teacher cache"):
        CachedViewProvider(reader, replay=False)(pc.scene_id, pc, np.random.default_rng(0))
    # a batch of an uncached scene (e.g. gathered without the provider's check)
    val_set = SceneDataset(val, student_transforms(GRID, 10**6), grid_size=GRID,
                           feature_names=DS.feature_names)
    batch = next(iter(make_loader(val_set, 1)))
    with pytest.raises(CacheMissError, match=pc.scene_id):
        CachedTargets(reader, "canonical")(batch)


def test_point_count_mismatch_is_detected_in_every_mode(cache_dir, data_root):
    reader = CacheReader(cache_dir)
    source = ScanNetScenes(data_root, "train", DS)
    pc = source.load(source.scene_ids[0])
    changed = pc.select(np.arange(pc.num_points - 7))  # the data changed after caching
    for replay in (True, False):
        with pytest.raises(CacheError, match=f"cache has {pc.num_points} points.*{pc.num_points - 7}"):
            CachedViewProvider(reader, replay=replay)(pc.scene_id, changed, np.random.default_rng(0))


def test_bad_mode_and_unreplayed_view_are_config_errors(cache_dir, data_root):
    reader = CacheReader(cache_dir)
    with pytest.raises(ConfigError, match="--targets must be one of"):
        CachedTargets(reader, "teacher")
    batch = next(iter(loader_for(data_root, reader, "canonical", 0.0, 2)))  # views == -1
    with pytest.raises(ConfigError, match="replay a cached view"):
        CachedTargets(reader, "view")(batch)


def test_renormalize_color_maps_between_normalisations():
    from srkd.data.transforms import COLOR_NORMS
    from srkd.distill.targets import renormalize_color

    raw = torch.tensor([[0.0, 127.5, 255.0, 0.3, -0.2, 0.9]])  # colour then normal
    scale, shift = COLOR_NORMS["legacy"]
    legacy = raw.clone()
    legacy[:, :3] = raw[:, :3] * scale + shift
    unit = renormalize_color(legacy, ("color", "normal"), "legacy", "pointcept")
    torch.testing.assert_close(unit, torch.tensor([[0.0, 0.5, 1.0, 0.3, -0.2, 0.9]]))
    torch.testing.assert_close(renormalize_color(unit, ("color", "normal"), "pointcept", "legacy"), legacy)
    normal_first = torch.tensor([[0.3, -0.2, 0.9, 0.0, 0.5, 1.0]])
    torch.testing.assert_close(renormalize_color(normal_first, ("normal", "color"), "pointcept", "legacy"),
                               torch.tensor([[0.3, -0.2, 0.9, -1.0, 0.0, 1.0]]))
    assert renormalize_color(unit, ("normal",), "pointcept", "legacy") is unit


def test_online_teacher_gets_the_colours_it_was_trained_with():
    from srkd.distill.targets import OnlineTeacher
    from srkd.models.base import ModelOutput

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, batch):
            seen.append(batch.feat.clone())
            return ModelOutput(logits=torch.zeros(len(batch.feat), 2), feature=torch.zeros(len(batch.feat), 1))

    from srkd.data.collate import PointBatch

    feat = torch.tensor([[0.0, 0.5, 1.0, 0.3, -0.2, 0.9]])  # the student's inputs: colour / 255
    batch = PointBatch(coord=torch.zeros(1, 3), grid_coord=torch.zeros(1, 3, dtype=torch.int32), feat=feat,
                       offset=torch.tensor([1]), origin_index=torch.tensor([0]), segment=torch.tensor([0]),
                       scene_ids=["s"], views=torch.tensor([-1]))  # fmt: skip
    OnlineTeacher(Probe(), feature_names=("color", "normal"), color_norms=("pointcept", "legacy"))(batch)
    OnlineTeacher(Probe(), feature_names=("color", "normal"), color_norms=("pointcept", "pointcept"))(batch)
    torch.testing.assert_close(seen[0], torch.tensor([[-1.0, 0.0, 1.0, 0.3, -0.2, 0.9]]))
    assert torch.equal(seen[1], feat) and torch.equal(batch.feat, feat)  # the student's batch is untouched
