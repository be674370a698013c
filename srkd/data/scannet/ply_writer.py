"""Write binary little-endian PLY files (points or triangle meshes) atomically; numpy only.

Re-exported as `srkd.data.scannet.ply.write_ply`; `srkd.data.scannet.ply.read_mesh` reads what it writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from srkd.errors import DataError
from srkd.io import atomic_write_stream

_PLY_TYPES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
              "u4": "uint", "f4": "float", "f8": "double"}  # fmt: skip


def _columns(
    vertices: np.ndarray,
    colors: np.ndarray | None,
    normals: np.ndarray | None,
    scalars: Mapping[str, np.ndarray],
) -> list[tuple[str, np.ndarray]]:
    """(property name, 1-D array) of every vertex property, in file order; shapes checked."""
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise DataError(f"write_ply: vertices have shape {v.shape}, expected (V, 3)")
    cols = [(c, v[:, j].astype("<f4")) for j, c in enumerate("xyz")]
    for name, arr, dtype, keys in (("normals", normals, "<f4", ("nx", "ny", "nz")),
                                   ("colors", colors, "u1", ("red", "green", "blue"))):  # fmt: skip
        if arr is None:
            continue
        arr = np.asarray(arr)
        if arr.shape != v.shape:
            raise DataError(f"write_ply: {name} have shape {arr.shape}, expected {v.shape}")
        if dtype == "u1" and arr.dtype != np.uint8:
            raise DataError(f"write_ply: colors must be uint8, got {arr.dtype}")
        cols += [(k, arr[:, j].astype(dtype)) for j, k in enumerate(keys)]
    for name, arr in scalars.items():
        arr = np.asarray(arr)
        if arr.shape != (len(v),) or arr.dtype.newbyteorder("<").str[1:] not in _PLY_TYPES:
            raise DataError(
                f"write_ply: property {name!r} must be one number per vertex ({len(v)},) of a PLY "
                f"type ({', '.join(_PLY_TYPES)}), got {arr.dtype} {arr.shape}"
            )
        cols.append((name, arr.astype(arr.dtype.newbyteorder("<"))))
    return cols


def write_ply(
    path: str | os.PathLike,
    vertices: np.ndarray,
    colors: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    *,
    normals: np.ndarray | None = None,
    scalars: Mapping[str, np.ndarray] | None = None,
    comments: Sequence[str] = (),
) -> Path:
    """Write a binary little-endian PLY to `path` atomically (temporary sibling, fsync, rename).

    Args:
        vertices: float (V, 3) -> properties x, y, z (float).
        colors: uint8 (V, 3) -> red, green, blue (uchar), or None.
        faces: int (F, 3) triangles -> element face, `list uchar int vertex_indices`; None or
            F = 0 writes a point cloud (no face element).
        normals: float (V, 3) -> nx, ny, nz (float), or None.
        scalars: extra per-vertex properties, name -> (V,) numeric array (e.g. {"label": int32}).
        comments: header comment lines (non-ASCII characters are written as '?').
    Returns the path written. A crash never leaves a partial file at `path`.
    """
    path = Path(path)
    cols = _columns(vertices, colors, normals, dict(scalars or {}))
    tri = np.zeros((0, 3), np.int64) if faces is None else np.asarray(faces)
    if tri.ndim != 2 or tri.shape[1] != 3 or (len(tri) and not np.issubdtype(tri.dtype, np.integer)):
        raise DataError(f"write_ply: faces have shape {tri.shape} and dtype {tri.dtype}, expected int (F, 3)")
    n = len(cols[0][1])
    if len(tri) and (tri.min() < 0 or tri.max() >= n):
        raise DataError(f"write_ply: faces refer to vertices outside [0, {n})")
    head = ["ply", "format binary_little_endian 1.0"]
    # a header is ASCII lines: other characters become '?', line breaks spaces
    head += ["comment " + " ".join(str(c).split()).encode("ascii", "replace").decode() for c in comments]
    head.append(f"element vertex {n}")
    head += [f"property {_PLY_TYPES[a.dtype.str[1:]]} {name}" for name, a in cols]
    if len(tri):
        head += [f"element face {len(tri)}", "property list uchar int vertex_indices"]
    head.append("end_header")
    rows = np.empty(n, dtype=[(name, a.dtype) for name, a in cols])
    for name, a in cols:
        rows[name] = a
    face_rows = np.empty(len(tri), dtype=[("k", "u1"), ("v", "<i4", (3,))])
    face_rows["k"] = 3
    face_rows["v"] = tri

    def write(f) -> None:  # type: ignore[no-untyped-def]
        f.write(("\n".join(head) + "\n").encode("ascii"))
        f.write(rows.tobytes())
        f.write(face_rows.tobytes())

    atomic_write_stream(path, write)
    return path
