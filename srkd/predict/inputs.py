"""Reading the scans `srkd predict` labels: scene folders of .npy files and PLY files.

Accepted inputs (one scan each):
    folder   coord.npy float32/float64 (N, 3) metres; color.npy uint8 (N, 3) 0..255 (or float in
             0..255), needed when the model takes colour; normal.npy float (N, 3), optional:
             estimated when absent. A Pointcept scene folder is one (its label files are ignored).
    .ply     a mesh (vertices + faces; e.g. ScanNet's `scene*_vh_clean_2.ply`): the vertices are the
             points; or a point cloud (vertices only). Vertex colour as uchar red, green, blue.
Normals, when the model needs them: the file's own (normal.npy, or PLY nx, ny, nz), else for a mesh
the area-weighted face normals (`srkd.data.scannet.ply.vertex_normals`, as `srkd prepare scannet`), else
PCA over the k nearest neighbours oriented towards the centroid (`srkd.data.normals`).
Every problem is one DataError naming the file and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srkd.data.normals import DEFAULT_NEIGHBOURS, pca_normals
from srkd.data.scannet.layout import SCENE_FILES
from srkd.data.scannet.ply import read_mesh, vertex_normals
from srkd.errors import DataError
from srkd.types import PointCloud

FOLDER_FILES = ("coord", "color", "normal")
"""Stems read from a folder input (other .npy files, e.g. labels, are ignored)."""


@dataclass(frozen=True)
class ScanInput:
    """One scan to label.

    name:    output file stem (<out>/<name>.labels.npy, <out>/<name>.ply).
    kind:    "folder", "mesh ply" or "point ply".
    cloud:   PointCloud: coord float32 (N, 3), color float32 (N, 3) in 0..255 or None, normal
             float32 (N, 3) or None, origin_index = arange(N) (input order).
    faces:   int64 (F, 3) of a mesh input (kept for the output PLY), else None.
    normals: where the normals came from ("file", "mesh faces", "PCA k=16", "not needed").
    """

    name: str
    path: Path
    kind: str
    cloud: PointCloud
    faces: np.ndarray | None
    normals: str


def input_name(path: Path) -> str:
    """The output stem of an input: a folder's name, a file's stem."""
    path = Path(path)
    return path.resolve().name if path.is_dir() else path.stem


def check_input(path: Path) -> str:
    """Cheap check before anything runs: "folder" or "ply", else DataError naming `path`."""
    path = Path(path)
    if path.is_dir():
        if not (path / "coord.npy").is_file():
            raise DataError(
                f"input folder {path} has no coord.npy; a folder input needs coord.npy (N, 3) and, "
                "as the model requires, color.npy (N, 3) and normal.npy (N, 3)"
            )
        return "folder"
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if path.suffix.lower() == ".ply":
        return "ply"
    with open(path, "rb") as fh:
        if fh.read(3) == b"ply":
            return "ply"
    raise DataError(
        f"input {path} is neither a .ply file nor a folder with coord.npy (and color.npy, "
        "normal.npy); convert it to one of those"
    )


def _load_array(path: Path, n: int | None) -> np.ndarray:
    """One (N, 3) array of a folder input, dtype and shape checked, finite."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npy file ({exc})") from None
    if arr.dtype.name not in SCENE_FILES[path.stem]:
        raise DataError(f"{path} has dtype {arr.dtype}, expected one of {', '.join(SCENE_FILES[path.stem])}")
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0 or (n is not None and len(arr) != n):
        want = f"({n}, 3)" if n is not None else "(N, 3) with N > 0"
        raise DataError(f"{path} has shape {arr.shape}, expected {want}")
    _check_finite(arr, str(path))
    return arr


def _check_finite(arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise DataError(
            f"{where} holds non-finite values (NaN or inf) in {len(rows)} of {len(arr)} points, "
            f"first at point {rows[0]}; repair the file or drop those points"
        )


def _check_colors(color: np.ndarray, where: str) -> np.ndarray:
    """float32 (N, 3) colours in 0..255; refuses values outside it and 0..1-scaled colours."""
    c = color.astype(np.float32)
    lo, hi = float(c.min()), float(c.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: colours range over [{lo:g}, {hi:g}]; srkd expects 0..255")
    if color.dtype.kind == "f" and 0 < hi <= 1.0:
        raise DataError(f"{where}: colours lie in [0, 1]; srkd expects 0..255 (multiply by 255)")
    return c


def _read_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    coord = _load_array(path / "coord.npy", None)
    arrays = {s: _load_array(path / f"{s}.npy", len(coord)) if (path / f"{s}.npy").is_file() else None
              for s in ("color", "normal")}  # fmt: skip
    color = arrays["color"]
    if color is not None:
        color = _check_colors(color, str(path / "color.npy"))
    return coord, color, arrays["normal"]


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    mesh = read_mesh(path)
    if len(mesh.vertices) == 0:
        raise DataError(f"{path} has no vertices")
    _check_finite(mesh.vertices, f"{path} (vertex x, y, z)")
    if mesh.normals is not None:
        _check_finite(mesh.normals, f"{path} (vertex nx, ny, nz)")
    color = None if mesh.colors is None else mesh.colors.astype(np.float32)
    return mesh.vertices, color, mesh.normals, mesh.faces


def read_input(path: Path, needs: tuple[str, ...], neighbours: int = DEFAULT_NEIGHBOURS) -> ScanInput:
    """Read one input (see the module docstring) with the per-point fields the model `needs`
    (feature names such as ("color", "normal")); estimate normals when needed and absent."""
    path = Path(path)
    kind = check_input(path)
    faces = None
    if kind == "folder":
        coord, color, normal = _read_folder(path)
    else:
        coord, color, normal, faces = _read_ply(path)
        kind = "mesh ply" if len(faces) else "point ply"
    if "color" in needs and color is None:
        where = "color.npy" if kind == "folder" else "uchar red, green, blue vertex properties"
        raise DataError(f"input {path} has no colours ({where}), but the model takes colour as input")
    unknown = [f for f in needs if f not in ("coord", "color", "normal")]
    if unknown:
        raise DataError(f"the model needs input feature(s) {unknown}, which input {path} cannot provide")
    source = "file" if normal is not None else "not needed"
    if normal is None and "normal" in needs:
        if faces is not None and len(faces):
            normal, source = vertex_normals(coord, faces), "mesh faces"
        else:
            normal, source = pca_normals(coord, neighbours), f"PCA k={neighbours}"
    cloud = PointCloud(coord=coord.astype(np.float32), origin_index=np.arange(len(coord)),
                       scene_id=input_name(path), color=color,
                       normal=None if normal is None else normal.astype(np.float32))  # fmt: skip
    return ScanInput(input_name(path), path, kind, cloud, faces if kind == "mesh ply" else None, source)
