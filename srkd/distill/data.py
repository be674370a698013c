"""The training data of a run: the scenes of the train split, the transform chain of each
sample, the dataset and its loader, and the batches of an epoch (from any batch on, for a
resumed run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from srkd.data.collate import PointBatch
from srkd.data.dataset import SceneDataset, make_loader
from srkd.data.scannet import DatasetSpec
from srkd.data.transforms import (
    CenterShift,
    Compose,
    outdoor_student_transforms,
    outdoor_train_transforms,
    student_transforms,
    train_transforms,
)
from srkd.distill.config import RunConfig
from srkd.distill.ddp import Distributed, epoch_sampler
from srkd.distill.targets import CachedTargets, CachedViewProvider
from srkd.errors import ConfigError

BatchesFn = Callable[[int, int], Iterator[PointBatch]]
"""(epoch, first batch) -> the epoch's batches from `first batch` on (srkd.distill.loop.train)."""


def train_chain(cfg: RunConfig, ds: DatasetSpec, view_mode: bool) -> Compose:
    """The training chain of `ds.domain`; with `view_mode` only the part after a replayed view.
    Without augmentation: the scene as stored (indoors centre-shifted like every view and like
    validation), grid-sampled."""
    assert cfg.grid_size is not None
    if ds.domain == "outdoor":
        if not cfg.augment:
            return outdoor_student_transforms(cfg.grid_size, jitter=(0.0, 0.0))
        if view_mode:
            return outdoor_student_transforms(cfg.grid_size)
        return outdoor_train_transforms(cfg.grid_size)
    if not cfg.augment:
        chain = student_transforms(cfg.grid_size, cfg.max_points, dropout=(0.0, 0.0),
                                   jitter=(0.0, 0.0), elastic=False, chromatic=False,
                                   color_norm=cfg.color_norm)
        if not view_mode:  # a replayed view 0 already starts with the centre shift
            chain = Compose([CenterShift(apply_z=True)]) + chain
        return chain
    if view_mode:
        return student_transforms(cfg.grid_size, cfg.max_points, color_norm=cfg.color_norm)
    return train_transforms(cfg.grid_size, cfg.max_points, color_norm=cfg.color_norm)


def train_dataset(cfg: RunConfig, ds: DatasetSpec, source: Any, reader: Any,
                  labels: Any = None) -> SceneDataset:
    """The training samples of `source` (a scene source of srkd.data.sources.open_scenes).

    With a cache (`reader`) and targets "view" every sample replays one of its scene's cached
    views; with other targets the cache only checks each scene against the data loaded. With a
    cache every sample also carries its teacher targets (cfg.targets' entry, gathered for its
    final points by `CachedTargets.sample`, in the DataLoader workers when there are any); the
    loop takes them from the batch (srkd.distill.targets.batch_targets). Without a cache the
    samples carry none."""
    view_mode = reader is not None and cfg.targets in ("view", "labels")
    provider, targets = None, None
    if reader is not None:
        provider = CachedViewProvider(reader, replay=view_mode, canonical_only=not cfg.augment)
        if cfg.targets != "labels":  # labels: the loop builds one-hot targets from the batch
            targets = CachedTargets(reader, cfg.targets).sample
    return SceneDataset(
        source, train_chain(cfg, ds, view_mode), grid_size=cfg.grid_size,
        feature_names=ds.feature_names, seed=cfg.seed, repeats=cfg.repeats,
        view_provider=provider, target_source=targets, labels=labels,
    )


def train_batches(cfg: RunConfig, dataset: SceneDataset, dist_info: Distributed,
                  pin_memory: bool = False) -> tuple[BatchesFn, int]:
    """(batches_for_epoch, batches per epoch) of `dataset` for this rank; `pin_memory` (a CUDA
    run) page-locks every batch so its copy to the GPU overlaps the step.

    Raises ConfigError when the split holds fewer samples than one batch on every process."""
    loader = make_loader(dataset, cfg.batch_size, workers=cfg.workers, shuffle=True,
                         seed=cfg.seed, mix3d_prob=cfg.mix3d_prob if cfg.augment else 0.0,
                         drop_last=True, sampler=epoch_sampler(dataset, dist_info, cfg.seed),
                         pin_memory=pin_memory)
    # Each new DataLoader iterator draws its base seed from a generator; by default that is
    # torch's global RNG, which also drives DropPath and relation sampling. A run resumed
    # mid-epoch creates its iterator after restoring the RNG, an uninterrupted one before the
    # epoch's steps, so the global stream would shift. A private generator keeps the two equal
    # (samples draw from their own per-item numpy streams, so nothing else depends on it).
    loader.generator = torch.Generator().manual_seed(cfg.seed)
    if len(loader) == 0:
        raise ConfigError(
            f"split {cfg.train_split!r} has {len(dataset)} samples per epoch, fewer than "
            f"--batch-size {cfg.batch_size} x {dist_info.world} process(es); lower the batch size"
        )

    def batches_for_epoch(epoch: int, first: int) -> Iterator[PointBatch]:
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= first:  # a resumed run skips the batches it already trained on
                yield batch

    return batches_for_epoch, len(loader)
