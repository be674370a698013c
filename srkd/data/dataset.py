"""PyTorch dataset and DataLoader over a scene source: transforms -> voxel samples -> batches.

A *source* is anything with ``scene_ids`` (sequence of str) and ``load(scene_id) -> PointCloud``
(e.g. what `srkd.data.sources.open_scenes` returns). Randomness is per sample: item `i` of epoch `e` draws
from ``np.random.default_rng([seed, e, i])``, so results do not depend on the number of
DataLoader workers or on which worker ran the item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from srkd.errors import ConfigError
from srkd.types import IGNORE_INDEX, PointCloud

from .collate import PointBatch, VoxelSample, collate, mix3d
from .transforms import (
    INDOOR_GRID_SIZE,
    CenterShift,
    Compose,
    GridSample,
    Record,
    VoxelCloud,
    apply_view_then,
    with_grid,
)
from .voxelize import grid_sample

_MIX_STREAM = 0x3D  # separates the Mix3D coin stream from the per-sample streams
_SHUFFLE_STREAM = 0x5F


class SceneSource(Protocol):
    """What SceneDataset reads scenes from."""

    scene_ids: Sequence[str]

    def load(self, scene_id: str) -> PointCloud: ...


ViewProvider = Callable[[str, PointCloud, np.random.Generator], tuple[int, Record]]
"""(scene_id, raw cloud, rng) -> (view index, view record) to replay before `transforms`; e.g.
a teacher-cache reader picking one of the scene's cached views (``--targets view``)."""

TargetSource = Callable[[str, int, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(scene_id, view, origin_index int64 (M,)) -> (teacher logits float32 (M, K), teacher features
float32 (M, Dt)) of a sample's final points, in their order; e.g. `CachedTargets.sample` of
srkd.distill.targets. The dataset calls it in `__getitem__`, so with DataLoader workers the
gather runs in the workers, off the training process's critical path."""


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator of dataset item `index` in `epoch` (independent streams via SeedSequence)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def to_voxel_sample(
    pc: VoxelCloud,
    feature_names: tuple[str, ...],
    view: int = -1,
    record: Record | None = None,
) -> VoxelSample:
    """Turn a grid-sampled cloud into a VoxelSample (grid_coord min-shifted to start at 0).

    Missing labels become IGNORE_INDEX (-1).
    """
    if not isinstance(pc, VoxelCloud) or pc.grid_coord is None:
        raise ConfigError(
            f"scene {pc.scene_id!r}: the cloud has no grid coordinates; the chain must contain "
            "a GridSample (or the dataset adds one)"
        )
    grid = pc.grid_coord - pc.grid_coord.min(axis=0)
    segment = (
        pc.segment
        if pc.segment is not None
        else np.full(pc.num_points, IGNORE_INDEX, dtype=np.int64)
    )
    return VoxelSample(
        coord=pc.coord,
        grid_coord=grid.astype(np.int32),
        feat=pc.feature(feature_names),
        origin_index=pc.origin_index,
        segment=segment,
        scene_id=pc.scene_id,
        view=view,
        record=record,
    )


def make_fragments(
    pc: PointCloud,
    grid_size: float,
    feature_names: tuple[str, ...],
    fragment_transforms: Compose | None = None,
    view: int = -1,
    record: Record | None = None,
) -> list[VoxelSample]:
    """Test-mode voxelisation of a whole (already transformed) cloud into fragments.

    Each fragment has one point per 'grid_size' voxel and together they cover every point of
    `pc` (see `grid_sample(mode="test")`). `fragment_transforms` (deterministic, point
    preserving; default: centre shift in x/y as Pointcept's test post-transform) is applied to
    each fragment, and each sample's record is `record` + that fragment's entries.
    Returns: K VoxelSamples.
    """
    post = fragment_transforms if fragment_transforms is not None else Compose(
        [CenterShift(apply_z=False)]
    )
    res = grid_sample(pc.coord, grid_size, mode="test")
    gridded = with_grid(pc, res.grid_coord)
    rng = np.random.default_rng(0)  # post transforms are deterministic; rng is unused
    out = []
    for idx in res.fragments:
        frag, frag_record = post(gridded.select(idx), rng)
        out.append(to_voxel_sample(frag, feature_names, view, list(record or []) + frag_record))
    return out


class SceneDataset(Dataset):
    """Scenes -> voxelised samples, with per-sample deterministic randomness.

    Args:
        source: scene source (`scene_ids`, `load`).
        transforms: chain applied to each scene (e.g. `train_transforms()`); None = nothing.
        grid_size: voxel edge in metres (a dataset's is DatasetSpec.grid_size). If the chain has no GridSample, one is
            appended; if it has one, its grid_size must equal this.
        feature_names: PointCloud fields concatenated into `feat`.
        seed: base seed; item i of epoch e draws from ``sample_rng(seed, e, i)``.
        repeats: each scene appears `repeats` times per epoch (Pointcept's "loop").
        view_provider: optional; its view record is replayed before `transforms` and the sample
            gets its view index (see `ViewProvider`).
        target_source: optional; gathers each sample's teacher targets for its final points
            (see `TargetSource`). Without one, samples carry no targets.
        labels: optional srkd.data.labels.LimitedLabels; each loaded scene keeps only the labels
            it allows (applied after the view provider has matched the scene with the cache).
    Each item is one VoxelSample (one random point per voxel); it carries `record`: the full
    record (view + chain [+ appended grid sample])
    that `srkd.data.transforms.replay` reproduces from the raw scene.
    """

    def __init__(
        self,
        source: SceneSource,
        transforms: Compose | None = None,
        grid_size: float = INDOOR_GRID_SIZE,
        feature_names: tuple[str, ...] = ("color", "normal"),
        seed: int = 0,
        repeats: int = 1,
        view_provider: ViewProvider | None = None,
        target_source: TargetSource | None = None,
        labels: Any = None,
    ) -> None:
        if not hasattr(source, "scene_ids") or not hasattr(source, "load"):
            raise ConfigError(f"{source!r} is not a scene source (needs scene_ids and load())")
        if len(source.scene_ids) == 0:
            raise ConfigError(f"scene source {source!r} has no scenes")
        if repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {repeats}")
        self.source = source
        self.transforms = transforms if transforms is not None else Compose([])
        self.grid_size = float(grid_size)
        self.feature_names = tuple(feature_names)
        self.seed = int(seed)
        self.repeats = int(repeats)
        self.view_provider = view_provider
        self.target_source = target_source
        self.labels = labels
        self.epoch = 0
        self._check_chain()

    def _check_chain(self) -> None:
        for t in self.transforms.transforms:
            if isinstance(t, GridSample) and t.grid_size != self.grid_size:
                raise ConfigError(
                    f"the chain grid-samples at {t.grid_size} m but the dataset's grid_size is "
                    f"{self.grid_size} m; use one value"
                )
        if not any(isinstance(t, GridSample) for t in self.transforms.transforms):
            self.transforms = self.transforms + Compose([GridSample(self.grid_size)])

    def set_epoch(self, epoch: int) -> None:
        """Select the random streams of `epoch` (call before iterating a DataLoader)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source.scene_ids) * self.repeats

    def scene_of(self, index: int) -> str:
        """Scene id of dataset item `index`."""
        return self.source.scene_ids[index % len(self.source.scene_ids)]

    def __getitem__(self, index: int) -> VoxelSample:
        if not 0 <= index < len(self):
            raise IndexError(f"dataset index {index} out of range [0, {len(self)})")
        rng = sample_rng(self.seed, self.epoch, index)
        scene_id = self.scene_of(index)
        pc = self.source.load(scene_id)
        view, view_rec = -1, None
        if self.view_provider is not None:  # matches the scene as stored with the cache
            view, view_rec = self.view_provider(scene_id, pc, rng)
        if self.labels is not None:
            pc = self.labels.apply(scene_id, pc)
        if view_rec is not None:
            pc, record = apply_view_then(pc, view_rec, self.transforms, rng)
        else:
            pc, record = self.transforms(pc, rng)
        sample = to_voxel_sample(pc, self.feature_names, view, record)  # type: ignore[arg-type]
        if self.target_source is not None:
            sample.teacher_logits, sample.teacher_feature = self.target_source(
                scene_id, view, sample.origin_index)
        return sample


class EpochSampler(Sampler[int]):
    """Sequential or shuffled order of n items, reproducible per (seed, epoch)."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = int(n), bool(shuffle), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of `epoch`."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        perm = np.random.default_rng([self.seed, self.epoch, _SHUFFLE_STREAM]).permutation(self.n)
        return iter(perm.tolist())

    def __len__(self) -> int:
        return self.n


def _worker_init(worker_id: int) -> None:
    # Workers only run numpy transforms; extra torch threads would oversubscribe the cores.
    torch.set_num_threads(1)


class SceneLoader(DataLoader):
    """DataLoader over a SceneDataset whose batches (and Mix3D coins) are reproducible.

    Mix3D is applied in the main process after collation (it only merges offsets), from a
    Generator seeded by (seed, epoch), so batches are identical for any number of workers.
    Call `set_epoch(e)` before each epoch. Workers are started anew every epoch (not
    persistent): a persistent worker would keep the dataset copy of the epoch it was started
    in, since `set_epoch` only reaches the main process's dataset.
    `pin_memory` (for a CUDA run) puts every batch in page-locked memory
    (`PointBatch.pin_memory`), so the training loop's non-blocking copy is asynchronous.
    """

    def __init__(
        self,
        dataset: SceneDataset,
        batch_size: int,
        workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        mix3d_prob: float = 0.0,
        drop_last: bool = False,
        sampler: Sampler[int] | None = None,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1 or workers < 0:
            raise ConfigError(f"need batch_size >= 1 and workers >= 0, got {batch_size}, {workers}")
        if not 0.0 <= mix3d_prob <= 1.0:
            raise ConfigError(f"mix3d_prob must be in [0, 1], got {mix3d_prob}")
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler if sampler is not None else EpochSampler(len(dataset), shuffle, seed),
            num_workers=workers,
            collate_fn=collate,
            drop_last=drop_last,
            worker_init_fn=_worker_init if workers > 0 else None,
            pin_memory=pin_memory,
        )
        self.seed = int(seed)
        self.mix3d_prob = float(mix3d_prob)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Propagate the epoch to the dataset, the sampler and the Mix3D stream."""
        self.epoch = int(epoch)
        for obj in (self.dataset, self.sampler):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        rng = np.random.default_rng([self.seed, self.epoch, _MIX_STREAM])
        for batch in super().__iter__():
            if self.mix3d_prob > 0 and isinstance(batch, PointBatch):
                batch = mix3d(batch, self.mix3d_prob, rng)
            yield batch


def make_loader(
    dataset: SceneDataset,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    mix3d_prob: float = 0.0,
    drop_last: bool = False,
    sampler: Sampler[int] | None = None,
    pin_memory: bool = False,
) -> SceneLoader:
    """A reproducible DataLoader yielding PointBatch (see `SceneLoader`).

    Args:
        dataset: a SceneDataset.
        batch_size: samples per batch (before Mix3D merges pairs).
        workers: DataLoader worker processes (0 = main process).
        shuffle: shuffle per epoch (ignored when `sampler` is given, e.g. a DistributedSampler).
        seed: seeds the shuffle and the Mix3D coins (the dataset has its own seed).
        mix3d_prob: Mix3D probability per batch (the release uses 0.8 on ScanNet).
        drop_last: drop an incomplete last batch.
        pin_memory: page-locked batches for asynchronous host -> GPU copies (CUDA runs only).
    """
    return SceneLoader(dataset, batch_size, workers, shuffle, seed, mix3d_prob, drop_last, sampler,
                       pin_memory)
