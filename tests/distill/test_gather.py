"""The cache gather in the data path: each sample gathers its own teacher targets where it is
made (DataLoader workers), the batch carries them, and a cached run trains exactly as with the
gather in the training process (`CachedTargets` as targets_fn), for any number of workers."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from srkd.cache import CacheReader
from srkd.data.dataset import SceneDataset, make_loader
from srkd.data.scannet import ScanNetScenes, get_dataset_spec
from srkd.data.transforms import student_transforms
from srkd.distill.config import RunConfig
from srkd.distill.targets import CachedTargets, CachedViewProvider, batch_targets
from srkd.errors import CacheError, ConfigError
from tests.distill.conftest import GRID
from tests.distill.test_distill import expected_targets

DS = get_dataset_spec("scannet")


def gathering_loader(data_root, reader, mode: str, mix3d: float, workers: int = 0, batch_size: int = 3):
    """The training data path of srkd.distill.data.train_dataset, on the distill test data."""
    dataset = SceneDataset(
        ScanNetScenes(data_root, "train", DS), student_transforms(GRID, 10**6), grid_size=GRID,
        feature_names=DS.feature_names, seed=1,
        view_provider=CachedViewProvider(reader, replay=mode == "view"),
        target_source=CachedTargets(reader, mode).sample,
    )
    return make_loader(dataset, batch_size, workers=workers, shuffle=True, seed=1, mix3d_prob=mix3d,
                       drop_last=True)


@pytest.mark.parametrize("mode", ["view", "canonical", "ensemble"])
@pytest.mark.parametrize("mix3d", [0.0, 1.0])
def test_batch_targets_are_the_in_process_gather(cache_dir, data_root, mode, mix3d):
    reader = CacheReader(cache_dir)
    loader = gathering_loader(data_root, reader, mode, mix3d)
    in_process = CachedTargets(reader, mode)
    for epoch in range(2):
        loader.set_epoch(epoch)
        for batch in loader:
            assert (batch.source_offset is not None) == bool(mix3d)
            got, want = batch_targets(batch), in_process(batch)
            assert got.logits.dtype == torch.float32 and got.feature.dtype == torch.float32
            assert torch.equal(got.logits, want.logits) and torch.equal(got.feature, want.feature)
            views = batch.views.tolist()
            entry = {"view": views.__getitem__, "canonical": lambda s: 0,
                     "ensemble": lambda s: "ensemble"}[mode]
            logits, feats = expected_targets(reader, batch, entry)
            np.testing.assert_array_equal(got.logits.numpy(), logits)
            np.testing.assert_array_equal(got.feature.numpy(), feats)


def test_workers_gather_what_the_main_process_gathers(cache_dir, data_root):
    """Two forked workers, whose reader copies start with the parent's filled LRU, and a reader
    sent to a spawned process (pickled: it reopens the cache) gather the same rows."""
    reader = CacheReader(cache_dir)
    for scene in reader.scene_ids:  # fill the parent's LRU before the workers fork
        reader.read_all(scene, 0)
    main = list(gathering_loader(data_root, CacheReader(cache_dir), "view", 1.0, workers=0))
    for epoch_copy in range(2):  # workers are forked again every epoch
        forked = list(gathering_loader(data_root, reader, "view", 1.0, workers=2))
        assert len(forked) == len(main) > 0, epoch_copy
        for a, b in zip(main, forked, strict=True):
            assert torch.equal(a.teacher_logits, b.teacher_logits)
            assert torch.equal(a.teacher_feature, b.teacher_feature)
    sample = CachedTargets(reader, "view").sample
    revived = pickle.loads(pickle.dumps(sample))
    assert revived.__self__.reader is not reader
    origin = np.array([5, 0, 7, 7])
    for x, y in zip(sample(reader.scene_ids[0], 1, origin), revived(reader.scene_ids[0], 1, origin),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_gather_errors_in_the_data_path(cache_dir, plain_cache_dir, data_root):
    plain = CacheReader(plain_cache_dir)
    loader = gathering_loader(data_root, plain, "ensemble", 0.0, batch_size=1)
    with pytest.raises(CacheError, match="no ensemble entry.*--targets view\\|canonical"):
        next(iter(loader))
    reader = CacheReader(cache_dir)
    no_replay = SceneDataset(ScanNetScenes(data_root, "train", DS), student_transforms(GRID, 10**6),
                             grid_size=GRID, feature_names=DS.feature_names,
                             target_source=CachedTargets(reader, "view").sample)
    with pytest.raises(ConfigError, match="replay a cached view"):
        no_replay[0]
    plain_batch = next(iter(make_loader(SceneDataset(ScanNetScenes(data_root, "train", DS),
                                                     student_transforms(GRID, 10**6), grid_size=GRID,
                                                     feature_names=DS.feature_names), 1)))
    assert plain_batch.teacher_logits is None
    with pytest.raises(ConfigError, match="carries no teacher targets"):
        batch_targets(plain_batch)


# --- a whole cached run: the data path against the in-process gather, and 0 against 2 workers


def run_config(out: Path, cache: Path, workers: int) -> RunConfig:
    # Mix3D, relation sampling and the view draws all take part, so any misaligned row shows
    return RunConfig(model="test_ptv3", out=out, cache=cache, method="srkd", epochs=2, batch_size=2,
                     grid_size=GRID, device="cpu", mix3d_prob=0.8, workers=workers, val_split=None,
                     loss_overrides={"n_relation_points": 64}, seed=5)


def run_digest(out: Path) -> tuple[list, str]:
    """(every train row's loss and terms, sha256 of the final weights), bit for bit."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"], {k: r[k] for k in ("ce", "lovasz", "kl", "relation", "feat_mse")})
              for r in rows if r["kind"] == "train"]
    state = torch.load(out / "model_last.pt", map_location="cpu", weights_only=False)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return losses, digest.hexdigest()


def test_a_cached_run_is_bitwise_the_in_process_gather_for_any_workers(cache_dir, tmp_path, monkeypatch):
    from srkd.distill import run as run_module

    digests = {}
    for workers in (0, 2):
        run_module.run(run_config(tmp_path / f"w{workers}", cache_dir, workers))
        digests[workers] = run_digest(tmp_path / f"w{workers}")

    # the previous way: a dataset without targets, CachedTargets gathering in the training loop
    with_targets = run_module.train_dataset

    def dataset_without_targets(*args, **kwargs):
        dataset = with_targets(*args, **kwargs)
        assert dataset.target_source is not None
        dataset.target_source = None
        return dataset

    def in_process_targets(cfg, ds, device, reader):
        return CachedTargets(reader, cfg.targets), reader.spec.feature_dim

    monkeypatch.setattr(run_module, "train_dataset", dataset_without_targets)
    monkeypatch.setattr(run_module, "teacher_targets", in_process_targets)
    run_module.run(run_config(tmp_path / "in_process", cache_dir, 0))
    before = run_digest(tmp_path / "in_process")

    assert len(before[0]) == 4 and all(np.isfinite(r[1]) for r in before[0])
    assert digests[0] == before, "the data-path gather changed the run"
    assert digests[2] == before, "two workers changed the run"
