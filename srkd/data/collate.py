"""Batches: flat concatenation of samples plus cumulative offsets (the Pointcept convention)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from srkd.errors import ConfigError


@dataclass
class VoxelSample:
    """One voxelised sample ready for a model (numpy; produced by the dataset, M points).

    coord:        float32 (M, 3) metres after transforms.
    grid_coord:   int32 (M, 3) non-negative voxel coordinates (coord / grid_size, min-shifted).
    feat:         float32 (M, C) model input features (e.g. normalised colour + normal).
    origin_index: int64 (M,) index of each point in the scene as stored on disk.
    segment:      int64 (M,) labels, -1 = ignore.
    scene_id:     the scene name.
    view:         which cached teacher view the geometry replays (-1 = none / fresh augmentation).
    record:       the transform record that produced this sample (JSON-serialisable list of
                  {"name", "params"} dicts, see srkd.data.transforms), or None.
    teacher_logits:  None, or float32 (M, K) teacher logits of each point (gathered from a teacher
                  cache by the dataset's target source, srkd.data.dataset.TargetSource).
    teacher_feature: None, or float32 (M, Dt) teacher features of each point (with the logits).
    """

    coord: np.ndarray
    grid_coord: np.ndarray
    feat: np.ndarray
    origin_index: np.ndarray
    segment: np.ndarray
    scene_id: str
    view: int = -1
    record: list | None = None
    teacher_logits: np.ndarray | None = None
    teacher_feature: np.ndarray | None = None


@dataclass
class PointBatch:
    """A mini-batch of B samples concatenated point-wise (torch; N = total points).

    coord:        float32 (N, 3)
    grid_coord:   int32 (N, 3) voxel coordinates, each sample shifted to start at 0
    feat:         float32 (N, C)
    offset:       int64 (B,) cumulative end index of each sample (offset[-1] == N)
    origin_index: int64 (N,) point index in its scene on disk
    segment:      int64 (N,) labels, -1 = ignore
    scene_ids:    list of S scene names, one per SOURCE sample (S == B unless Mix3D merged)
    views:        int64 (S,) cached view per source sample (-1 = none)
    source_offset: None, or int64 (S,) cumulative end index of each source sample when Mix3D
                  merged samples (then B < S and `offset` describes the merged samples the
                  model sees). Points of a source sample stay contiguous, so
                  ``origin_index[source_offset[s-1]:source_offset[s]]`` indexes scene_ids[s].
    teacher_logits:  None, or float32 (N, K) teacher logits per point, in point order (the
                  samples' own, concatenated; present when the dataset gathers targets).
    teacher_feature: None, or float32 (N, Dt) teacher features per point (with the logits).
    """

    coord: torch.Tensor
    grid_coord: torch.Tensor
    feat: torch.Tensor
    offset: torch.Tensor
    origin_index: torch.Tensor
    segment: torch.Tensor
    scene_ids: list[str]
    views: torch.Tensor
    source_offset: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    teacher_feature: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return len(self.offset)

    @property
    def sample_offset(self) -> torch.Tensor:
        """int64 (S,) cumulative end index of each SOURCE sample (== offset without mixing)."""
        return self.offset if self.source_offset is None else self.source_offset

    @property
    def source_index(self) -> torch.Tensor:
        """int64 (N,) source sample (index into scene_ids / views) of every point."""
        counts = torch.diff(self.sample_offset, prepend=self.sample_offset.new_zeros(1))
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    @property
    def batch_index(self) -> torch.Tensor:
        """int64 (N,) sample index of every point, derived from `offset`."""
        counts = torch.diff(self.offset, prepend=self.offset.new_zeros(1))
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PointBatch:
        """Move every tensor to `device`."""
        return self._map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> PointBatch:
        """Every tensor in page-locked host memory (what DataLoader(pin_memory=True) calls), so
        that `to(cuda, non_blocking=True)` copies asynchronously."""
        return self._map_tensors(lambda t: t.pin_memory())

    def _map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> PointBatch:
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            values[f.name] = fn(v) if torch.is_tensor(v) else v
        return PointBatch(**values)


def collate(samples: Sequence[VoxelSample]) -> PointBatch:
    """Concatenate samples into one PointBatch (no mixing). See `VoxelSample` for shapes."""
    if not samples:
        raise ValueError("collate() needs at least one sample")
    counts = np.array([len(s.coord) for s in samples], dtype=np.int64)

    def cat(name: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([getattr(s, name) for s in samples], axis=0))

    targets = _cat_targets(samples)
    return PointBatch(
        coord=cat("coord").float(),
        grid_coord=cat("grid_coord").int(),
        feat=cat("feat").float(),
        offset=torch.from_numpy(np.cumsum(counts)),
        origin_index=cat("origin_index").long(),
        segment=cat("segment").long(),
        scene_ids=[s.scene_id for s in samples],
        views=torch.tensor([s.view for s in samples], dtype=torch.int64),
        teacher_logits=targets[0],
        teacher_feature=targets[1],
    )


def _cat_targets(samples: Sequence[VoxelSample]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(teacher logits float32 (N, K), features float32 (N, Dt)) of the samples in point order,
    (None, None) when no sample carries targets. ConfigError when only some do."""
    have = [s.teacher_logits is not None and s.teacher_feature is not None for s in samples]
    if not any(have):
        return None, None
    if not all(have):
        missing = [s.scene_id for s, h in zip(samples, have, strict=True) if not h]
        raise ConfigError(
            f"samples of scenes {missing} carry no (or only half their) teacher targets but "
            "others in the batch do; every sample of a batch must come from a dataset with the "
            "same target source"
        )
    logits = np.concatenate([s.teacher_logits for s in samples], axis=0)  # type: ignore[misc]
    feature = np.concatenate([s.teacher_feature for s in samples], axis=0)  # type: ignore[misc]
    return torch.from_numpy(logits).float(), torch.from_numpy(feature).float()


def mix3d(batch: PointBatch, prob: float, rng: np.random.Generator) -> PointBatch:
    """Mix3D scene mixing (Nekrasov et al., 3DV 2021), Pointcept style: with probability `prob`
    the whole batch is mixed by merging consecutive pairs of samples (0+1, 2+3, ...; an odd last
    sample stays alone) into one sample each.

    Only `offset` changes: the points are already concatenated and every sample was centred by
    its own transforms, so merged scenes overlap in space (and their `grid_coord`s in voxel
    space, which may put two points in one voxel, as in Pointcept). Nothing per point moves,
    so `origin_index` and the teacher targets stay aligned with the points; the source samples
    are kept in `source_offset` (`scene_ids`, `views` stay per source sample), and
    `source_index` gives each point's scene.

    Args:
        batch: an unmixed PointBatch (B samples).
        prob: mixing probability in [0, 1]; one draw from `rng` per batch.
        rng: numpy Generator.
    Returns:
        The same batch with ceil(B / 2) samples, or unchanged when not mixed or B == 1.
    """
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"Mix3D probability must be in [0, 1], got {prob}")
    if batch.source_offset is not None:
        raise ConfigError("this batch is already Mix3D-mixed; mix each batch once")
    if rng.random() >= prob or batch.batch_size < 2:
        return batch
    offset = batch.offset
    merged = offset[1::2]
    if batch.batch_size % 2 == 1:
        merged = torch.cat([merged, offset[-1:]])
    # every per-point field (teacher targets included) is kept as it is
    return replace(batch, offset=merged.clone(), scene_ids=list(batch.scene_ids),
                   source_offset=offset)
