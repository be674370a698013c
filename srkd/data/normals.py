"""Normals of a point cloud without faces: PCA over the k nearest neighbours, oriented.

The normal of point p is the eigenvector of the smallest eigenvalue of the covariance of its k
nearest neighbours (p included) -- the least-squares plane fit of Hoppe et al., "Surface
reconstruction from unorganized points", SIGGRAPH 1992. PCA gives a line, not a direction: the
sign is chosen so that the normal points towards the cloud's centroid (``n . (c - p) >= 0``).
For an indoor scan (sensor inside the room) that is the side the sensor saw, which is the
direction of ScanNet's mesh normals on walls, floor and most furniture; for a single closed
object it points inwards. Meshes should use `srkd.data.scannet.ply.vertex_normals` (faces carry the
orientation) instead.
"""

from __future__ import annotations

import numpy as np

from srkd.errors import ConfigError, DataError

DEFAULT_NEIGHBOURS = 16
"""k of the PCA normal estimate (the shared real ScanNet scans' normals used 16 too)."""
_BLOCK = 100_000  # points per block: bounds the (block, k, 3) neighbour array to ~40 MB


def pca_normals(coord: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """Unit normals float32 (N, 3) of the points coord float (N, 3), oriented to the centroid.

    k: neighbours per point (including the point), clipped to N; k >= 3 is needed for a plane.
    A point whose neighbours are all the same point (or N < 3) gets (0, 0, 1). A point exactly at
    the centroid keeps the PCA sign as found.
    """
    from scipy.spatial import cKDTree

    xyz = np.asarray(coord, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise DataError(f"normal estimation needs coordinates (N, 3) with N > 0, got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise DataError("normal estimation: the coordinates hold a non-finite value (NaN or inf)")
    if int(k) < 3:
        raise ConfigError(f"normal estimation needs k >= 3 neighbours, got {k}")
    n = len(xyz)
    out = np.zeros((n, 3), dtype=np.float64)
    out[:, 2] = 1.0
    if n < 3:
        return out.astype(np.float32)
    k = min(int(k), n)
    tree = cKDTree(xyz)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        _, nbr = tree.query(xyz[start:stop], k=k)
        out[start:stop] = _plane_normals(xyz[nbr])
    towards = xyz.mean(axis=0) - xyz
    flip = np.einsum("ij,ij->i", out, towards) < 0
    out[flip] *= -1.0
    return out.astype(np.float32)


def _plane_normals(neighbours: np.ndarray) -> np.ndarray:
    """float64 (M, 3) unit normals of the least-squares planes of neighbours float64 (M, k, 3)."""
    centred = neighbours - neighbours.mean(axis=1, keepdims=True)
    cov = np.einsum("mki,mkj->mij", centred, centred)
    _, vectors = np.linalg.eigh(cov)  # eigenvalues ascending: column 0 is the plane normal
    normals = vectors[:, :, 0]
    flat = np.abs(cov).sum(axis=(1, 2)) == 0  # all neighbours coincide: no plane
    normals[flat] = (0.0, 0.0, 1.0)
    return normals
