"""Point-subset transforms: random dropout, grid sampling (train mode) and sphere crop.

Each one computes an index array and goes through `PointCloud.select`, so `origin_index` (and
every other per-point field) follows the kept points. Grid sampling returns a `VoxelCloud`, a
PointCloud with one more per-point field, `grid_coord`, so the voxel coordinates survive the
later crop (which subsets them) and centre shift (which must not change them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from srkd.data.voxelize import grid_sample, sphere_crop_indices
from srkd.errors import ConfigError
from srkd.types import PointCloud

from .base import Transform, new_seed, register_transform


@dataclass(frozen=True, eq=False)
class VoxelCloud(PointCloud):
    """A PointCloud after grid sampling; adds `grid_coord`: int32 (N, 3) voxel coordinates."""

    grid_coord: np.ndarray | None = None

    PER_POINT_FIELDS: ClassVar[tuple[str, ...]] = (*PointCloud.PER_POINT_FIELDS, "grid_coord")
    _DTYPES: ClassVar[dict[str, Any]] = {**PointCloud._DTYPES, "grid_coord": np.int32}
    _WIDTH: ClassVar[dict[str, int]] = {**PointCloud._WIDTH, "grid_coord": 3}


def with_grid(pc: PointCloud, grid_coord: np.ndarray) -> VoxelCloud:
    """`pc` as a VoxelCloud carrying `grid_coord` (int (N, 3))."""
    values = {f.name: getattr(pc, f.name) for f in dataclasses.fields(PointCloud)}
    return VoxelCloud(**values, grid_coord=grid_coord)


@register_transform
class RandomDropout(Transform):
    """With probability p, keep a random ``floor(N * (1 - ratio))`` points (in original order).

    params: {"applied": bool, "seed": int, "ratio": float}; the subset is regenerated from the
    seed and the input size.
    """

    name = "dropout"
    kind = "subset"

    def __init__(self, ratio: float = 0.2, p: float = 0.2) -> None:
        if not 0.0 <= ratio < 1.0 or not 0.0 <= p <= 1.0:
            raise ConfigError(
                f"RandomDropout: need 0 <= ratio < 1 and p in [0, 1], got {ratio}, {p}"
            )
        self.ratio, self.p = float(ratio), float(p)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        applied = bool(rng.random() < self.p)
        return {"applied": applied, "seed": new_seed(rng), "ratio": self.ratio}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"]:
            return pc
        n = pc.num_points
        keep = max(1, int(n * (1.0 - params["ratio"])))
        idx = np.random.default_rng(params["seed"]).choice(n, keep, replace=False)
        return pc.select(np.sort(idx))


SPHERE_CROP_POINTS = 102400
"""Points a training sample keeps at most (SphereCrop; Pointcept's ScanNet recipe, point_max)."""

INDOOR_GRID_SIZE = 0.02
"""Voxel edge in metres of the ScanNet recipe (DatasetSpec.grid_size of the indoor datasets)."""

OUTDOOR_GRID_SIZE = 0.05
"""Voxel edge in metres of the lidar recipe (DatasetSpec.grid_size of nuScenes / SemanticKITTI)."""


@register_transform
class GridSample(Transform):
    """Keep one uniformly random point per voxel of edge `grid_size` (train-mode voxelisation).

    Returns a `VoxelCloud` whose `grid_coord` is the kept points' voxel coordinates
    (min-shifted over the input). params: {"seed": int, "grid_size": float}.
    Test-mode fragments are not a single cloud; use `srkd.data.voxelize.grid_sample(...,
    mode="test")` (as `srkd.data.dataset.make_fragments` does).
    """

    name = "grid_sample"
    kind = "subset"

    def __init__(self, grid_size: float = INDOOR_GRID_SIZE) -> None:
        if not grid_size > 0:
            raise ConfigError(f"GridSample: grid_size must be > 0 metres, got {grid_size}")
        self.grid_size = float(grid_size)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        return {"seed": new_seed(rng), "grid_size": self.grid_size}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        res = grid_sample(
            pc.coord, params["grid_size"], "train", np.random.default_rng(params["seed"])
        )
        return with_grid(pc, res.grid_coord).select(res.index)


@register_transform
class SphereCrop(Transform):
    """If N > max_points, keep the `max_points` points nearest a random point (original order).

    params: {"applied": bool, "center_index": int, "max_points": int}; the centre is the point
    at `center_index` of the input.
    """

    name = "sphere_crop"
    kind = "subset"

    def __init__(self, max_points: int = SPHERE_CROP_POINTS) -> None:
        if int(max_points) < 1:
            raise ConfigError(f"SphereCrop: max_points must be >= 1, got {max_points}")
        self.max_points = int(max_points)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        if pc.num_points <= self.max_points:
            return {"applied": False, "center_index": 0, "max_points": self.max_points}
        center = int(rng.integers(pc.num_points))
        return {"applied": True, "center_index": center, "max_points": self.max_points}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"]:
            return pc
        center = pc.coord[params["center_index"]]
        return pc.select(sphere_crop_indices(pc.coord, params["max_points"], center))
