"""Batches: flat concatenation of samples plus cumulative offsets (the Pointcept convention)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch


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
    """

    coord: np.ndarray
    grid_coord: np.ndarray
    feat: np.ndarray
    origin_index: np.ndarray
    segment: np.ndarray
    scene_id: str
    view: int = -1


@dataclass
class PointBatch:
    """A mini-batch of B samples concatenated point-wise (torch; N = total points).

    coord:        float32 (N, 3)
    grid_coord:   int32 (N, 3) voxel coordinates, each sample shifted to start at 0
    feat:         float32 (N, C)
    offset:       int64 (B,) cumulative end index of each sample (offset[-1] == N)
    origin_index: int64 (N,) point index in its scene on disk
    segment:      int64 (N,) labels, -1 = ignore
    scene_ids:    list of B scene names
    views:        int64 (B,) cached view per sample (-1 = none)
    """

    coord: torch.Tensor
    grid_coord: torch.Tensor
    feat: torch.Tensor
    offset: torch.Tensor
    origin_index: torch.Tensor
    segment: torch.Tensor
    scene_ids: list[str]
    views: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return len(self.offset)

    @property
    def batch_index(self) -> torch.Tensor:
        """int64 (N,) sample index of every point, derived from `offset`."""
        counts = torch.diff(self.offset, prepend=self.offset.new_zeros(1))
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PointBatch:
        """Move every tensor to `device`."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
        return PointBatch(**moved)


def collate(samples: Sequence[VoxelSample]) -> PointBatch:
    """Concatenate samples into one PointBatch (no mixing). See `VoxelSample` for shapes."""
    if not samples:
        raise ValueError("collate() needs at least one sample")
    counts = np.array([len(s.coord) for s in samples], dtype=np.int64)

    def cat(name: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([getattr(s, name) for s in samples], axis=0))

    return PointBatch(
        coord=cat("coord").float(),
        grid_coord=cat("grid_coord").int(),
        feat=cat("feat").float(),
        offset=torch.from_numpy(np.cumsum(counts)),
        origin_index=cat("origin_index").long(),
        segment=cat("segment").long(),
        scene_ids=[s.scene_id for s in samples],
        views=torch.tensor([s.view for s in samples], dtype=torch.int64),
    )
