"""Grid (voxel) sampling and sphere cropping as pure numpy functions.

Voxel hashing: integer grid coordinates are min-shifted to be non-negative and packed into one
int64 key, ``key = (x * ny + y) * nz + z`` with ``(nx, ny, nz)`` the extents. The key is exact
(no collisions, unlike a hash such as Pointcept's FNV-1a) as long as ``nx * ny * nz < 2**63``,
which holds for any scene below ~2 million voxels per axis; larger extents raise a `DataError`.
One stable argsort of the keys groups the points of each voxel together in their original
order, which gives the inverse map, the per-voxel counts and the train/test selections without
a second sort (``np.unique`` would sort again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from srkd.errors import ConfigError, DataError

GRID_MODES = ("train", "test")


@dataclass(frozen=True, eq=False)
class GridSampleResult:
    """The outcome of `grid_sample` on N points falling into V occupied voxels.

    grid_coord: int32 (N, 3) voxel coordinate of every input point, ``floor(coord / grid_size)``
                shifted so that the minimum over the input is 0.
    inverse:    int64 (N,) voxel id in [0, V) of every input point (the point -> voxel map).
    counts:     int64 (V,) number of input points per voxel.
    index:      int64 (V,) train mode: the one randomly chosen point kept per voxel, ordered by
                voxel id (so ``inverse[index] == arange(V)``); test mode: fragment 0.
    fragments:  test mode: K = max(counts) int64 (V,) arrays; fragment k keeps, for every voxel,
                its ``k mod count``-th point (points of a voxel in their input order). Together
                they cover every input point. Train mode: ``[index]``.
    mode:       "train" or "test".
    """

    grid_coord: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray
    index: np.ndarray
    fragments: list[np.ndarray] = field(default_factory=list)
    mode: str = "train"

    @property
    def num_voxels(self) -> int:
        """Number of occupied voxels V."""
        return len(self.counts)


def _check_coord(coord: np.ndarray, what: str) -> np.ndarray:
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise DataError(f"{what}: coordinates must have shape (N, 3) with N > 0, got {coord.shape}")
    if not np.isfinite(coord).all():
        raise DataError(f"{what}: coordinates contain a non-finite value")
    return coord


def voxel_keys(grid_coord: np.ndarray) -> np.ndarray:
    """Pack non-negative int voxel coordinates (N, 3) into collision-free int64 keys (N,)."""
    g = grid_coord.astype(np.int64, copy=False)
    extent = g.max(axis=0) + 1
    if float(extent[0]) * float(extent[1]) * float(extent[2]) >= 2.0**63:
        raise DataError(
            f"grid extent {extent.tolist()} voxels is too large to pack into int64 keys; "
            "use a larger grid_size or crop the scene first"
        )
    return (g[:, 0] * extent[1] + g[:, 1]) * extent[2] + g[:, 2]


def grid_sample(
    coord: np.ndarray,
    grid_size: float,
    mode: str = "train",
    rng: np.random.Generator | None = None,
) -> GridSampleResult:
    """Voxelise points on a regular grid of edge `grid_size` metres.

    Args:
        coord: float (N, 3) point coordinates in metres.
        grid_size: voxel edge length, > 0.
        mode: "train" keeps one uniformly random point per voxel (needs `rng`); "test" returns
            fragments that together cover every point, each with one point per voxel
            (Pointcept's test-mode voxelisation: fragment k takes each voxel's k-th point
            cyclically).
        rng: numpy Generator, required in train mode.
    Returns:
        A `GridSampleResult` (see its fields for shapes and dtypes).
    """
    coord = _check_coord(coord, "grid_sample")
    if not (isinstance(grid_size, int | float) and np.isfinite(grid_size) and grid_size > 0):
        raise ConfigError(f"grid_size must be a positive number of metres, got {grid_size!r}")
    if mode not in GRID_MODES:
        raise ConfigError(f"grid sample mode must be one of {GRID_MODES}, got {mode!r}")
    if mode == "train" and rng is None:
        raise ConfigError("grid_sample(mode='train') needs a numpy Generator `rng`")

    # float64 so that the voxel of a point does not depend on float32 rounding of the division.
    scaled = np.floor(coord.astype(np.float64) / float(grid_size))
    scaled -= scaled.min(axis=0)
    if scaled.max() >= np.iinfo(np.int32).max:
        raise DataError(
            f"grid_sample: the scene spans {scaled.max(axis=0).tolist()} voxels of "
            f"{grid_size} m, more than int32 voxel coordinates hold; check the coordinate "
            "units (metres) or use a larger grid_size"
        )
    cell = scaled.astype(np.int64)
    key = voxel_keys(cell)

    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    new_voxel = np.empty(len(key), dtype=bool)
    new_voxel[0] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new_voxel[1:])
    starts = np.flatnonzero(new_voxel)
    counts = np.diff(np.append(starts, len(key))).astype(np.int64)
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(new_voxel) - 1

    if mode == "train":
        pick = starts + rng.integers(0, counts)  # type: ignore[union-attr]
        index = order[pick]
        fragments = [index]
    else:
        fragments = [order[starts + (k % counts)] for k in range(int(counts.max()))]
        index = fragments[0]
    return GridSampleResult(
        grid_coord=cell.astype(np.int32),
        inverse=inverse,
        counts=counts,
        index=index,
        fragments=fragments,
        mode=mode,
    )


def sphere_crop_indices(coord: np.ndarray, max_points: int, center: np.ndarray) -> np.ndarray:
    """Indices of the `max_points` points nearest to `center`, in ascending index order.

    Args:
        coord: float (N, 3).
        max_points: how many points to keep (>= 1); if N <= max_points every index is returned.
        center: float (3,) crop centre.
    Returns:
        int64 (min(N, max_points),) sorted indices into `coord`.
    """
    coord = _check_coord(coord, "sphere_crop")
    if int(max_points) < 1:
        raise ConfigError(f"sphere crop max_points must be >= 1, got {max_points}")
    n = len(coord)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    d2 = np.sum((coord.astype(np.float64) - np.asarray(center, dtype=np.float64)) ** 2, axis=1)
    keep = np.argpartition(d2, max_points - 1)[:max_points]
    return np.sort(keep).astype(np.int64)
