"""A small PLY reader and writer (numpy only) for ScanNet meshes, and area-weighted vertex normals.

Reads the three PLY encodings (binary little / big endian and ascii). Scalar-only elements are
decoded with one `np.frombuffer` over a structured dtype; list properties (faces) take a fast path
that assumes every row has the length of the first row and verifies it, and fall back to a
row-by-row decoder for mixed polygon sizes. Any malformation raises `DataError` naming the file.
`write_ply` writes binary little-endian PLYs (points or triangle meshes) atomically.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srkd.data.scannet.ply_writer import write_ply  # noqa: F401  (the writer's public home is this module)
from srkd.errors import DataError

_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}


@dataclass(frozen=True)
class PlyProperty:
    """One property: `dtype` is the numpy code of its values ("f4"); `count_dtype` marks a list."""

    name: str
    dtype: str
    count_dtype: str | None = None


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]


@dataclass(frozen=True)
class PlyList:
    """A list property of n rows as a flat array: row i is values[offsets[i]:offsets[i+1]]."""

    counts: np.ndarray  # int64 (n,)
    values: np.ndarray  # (sum(counts),)

    def uniform_length(self) -> int | None:
        """The common row length, or None if rows differ (or there are no rows)."""
        if len(self.counts) == 0 or not (self.counts == self.counts[0]).all():
            return None
        return int(self.counts[0])


@dataclass(frozen=True)
class PlyMesh:
    """A triangle mesh: vertices float32 (V, 3), colors uint8 (V, 3) or None, faces int64 (F, 3)
    (F = 0 for a point cloud), normals float32 (V, 3) when the file stores nx, ny, nz, else None."""

    vertices: np.ndarray
    colors: np.ndarray | None
    faces: np.ndarray
    normals: np.ndarray | None = None


def _parse_header(path: Path, data: bytes) -> tuple[str, list[PlyElement], int]:
    """Return (format, elements, byte offset of the body)."""
    if not data.startswith(b"ply"):
        raise DataError(f"{path} is not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise DataError(f"{path}: PLY header has no 'end_header' line (file truncated?)")
    body = data.find(b"\n", end)
    if body < 0:
        raise DataError(f"{path}: PLY file ends inside its header (file truncated)")
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: PLY header is not ASCII text") from None
    fmt = None
    elements: list[tuple[str, int, list[PlyProperty]]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        bad = f"{path}: malformed PLY header line {lineno}: {line!r}"
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise DataError(
                    f"{bad}; expected 'format ascii|binary_little_endian|binary_big_endian 1.0'"
                )
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise DataError(f"{bad}; expected 'element <name> <count>'")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise DataError(f"{bad}; a property must follow an 'element' line")
            if len(words) == 5 and words[1] == "list":
                kinds = (words[2], words[3])
                prop = PlyProperty(words[4], _TYPES.get(words[3], ""), _TYPES.get(words[2], ""))
            elif len(words) == 3:
                kinds = (words[1],)
                prop = PlyProperty(words[2], _TYPES.get(words[1], ""))
            else:
                raise DataError(f"{bad}; expected 'property <type> <name>' or 'property list ...'")
            unknown = [k for k in kinds if k not in _TYPES]
            if unknown:
                raise DataError(
                    f"{bad}; unknown property type {unknown[0]!r} (known: {', '.join(_TYPES)})"
                )
            if prop.count_dtype is not None and prop.count_dtype[0] == "f":
                raise DataError(f"{bad}; a list count must have an integer type")
            elements[-1][2].append(prop)
        else:
            raise DataError(f"{bad}; unknown keyword {words[0]!r}")
    if fmt is None:
        raise DataError(f"{path}: PLY header has no 'format' line")
    return fmt, [PlyElement(n, c, tuple(p)) for n, c, p in elements], body + 1


def _truncated(path: Path, element: PlyElement) -> DataError:
    return DataError(
        f"{path}: PLY body ends inside element {element.name!r} ({element.count} rows declared); "
        "the file is truncated or its header is wrong"
    )


def _empty(p: PlyProperty) -> np.ndarray | PlyList:
    values = np.zeros(0, p.dtype)
    return values if p.count_dtype is None else PlyList(np.zeros(0, np.int64), values)


def _read_binary(path: Path, data: bytes, pos: int, el: PlyElement, order: str):
    """Decode one element of a binary body starting at byte `pos`; return (columns, new pos)."""
    props = el.properties
    if el.count == 0:
        return {p.name: _empty(p) for p in props}, pos
    if any(p.count_dtype for p in props):
        fixed = _read_binary_uniform_lists(data, pos, el, order)
        if fixed is not None:
            return fixed
        return _read_binary_rows(path, data, pos, el, order)
    dtype = np.dtype([(p.name, order + p.dtype) for p in props])
    nbytes = dtype.itemsize * el.count
    if pos + nbytes > len(data):
        raise _truncated(path, el)
    rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=pos)
    return {p.name: rows[p.name].copy() for p in props}, pos + nbytes


def _read_binary_uniform_lists(data: bytes, pos: int, el: PlyElement, order: str):
    """Fast path: every list has the length found in the first row (e.g. all triangles)."""
    fields, off = [], pos
    for i, p in enumerate(el.properties):
        if p.count_dtype is None:
            fields.append((f"s{i}", order + p.dtype))
            off += np.dtype(p.dtype).itemsize
            continue
        cdt = np.dtype(order + p.count_dtype)
        if off + cdt.itemsize > len(data):
            return None
        k = int(np.frombuffer(data, cdt, 1, off)[0])
        fields += [(f"c{i}", cdt), (f"v{i}", order + p.dtype, (k,))]
        off += cdt.itemsize + k * np.dtype(p.dtype).itemsize
    dtype = np.dtype(fields)
    if pos + dtype.itemsize * el.count > len(data):
        return None
    rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=pos)
    columns: dict[str, np.ndarray | PlyList] = {}
    for i, p in enumerate(el.properties):
        if p.count_dtype is None:
            columns[p.name] = rows[f"s{i}"].copy()
            continue
        counts = rows[f"c{i}"].astype(np.int64)
        values = rows[f"v{i}"]
        # The layout guess holds row by row only if every row's count equals the first one's.
        if not (counts == values.shape[1]).all():
            return None
        columns[p.name] = PlyList(counts, values.reshape(-1).copy())
    return columns, pos + dtype.itemsize * el.count


def _read_binary_rows(path: Path, data: bytes, pos: int, el: PlyElement, order: str):
    """General decoder for lists of mixed lengths (one Python step per row)."""
    struct_order = "<" if order == "<" else ">"
    codes = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}
    scalars: dict[str, list] = {p.name: [] for p in el.properties if p.count_dtype is None}
    lists: dict[str, tuple[list, list]] = {
        p.name: ([], []) for p in el.properties if p.count_dtype is not None
    }
    try:
        for _ in range(el.count):
            for p in el.properties:
                if p.count_dtype is None:
                    fmt = struct_order + codes[p.dtype]
                    scalars[p.name].append(struct.unpack_from(fmt, data, pos)[0])
                    pos += struct.calcsize(fmt)
                    continue
                cfmt = struct_order + codes[p.count_dtype]
                k = struct.unpack_from(cfmt, data, pos)[0]
                pos += struct.calcsize(cfmt)
                vfmt = f"{struct_order}{k}{codes[p.dtype]}"
                lists[p.name][0].append(k)
                lists[p.name][1].extend(struct.unpack_from(vfmt, data, pos))
                pos += struct.calcsize(vfmt)
    except struct.error:
        raise _truncated(path, el) from None
    columns: dict[str, np.ndarray | PlyList] = {}
    for p in el.properties:
        if p.count_dtype is None:
            columns[p.name] = np.asarray(scalars[p.name], dtype=p.dtype)
        else:
            counts, values = lists[p.name]
            columns[p.name] = PlyList(np.asarray(counts, np.int64), np.asarray(values, p.dtype))
    return columns, pos


def _read_ascii(path: Path, tokens: list[bytes], pos: int, el: PlyElement):
    """Decode one element from whitespace-separated tokens starting at token `pos`."""
    props = el.properties
    if el.count == 0:
        return {p.name: _empty(p) for p in props}, pos
    try:
        if not any(p.count_dtype for p in props):
            n = el.count * len(props)
            if pos + n > len(tokens):
                raise _truncated(path, el)
            table = np.array(tokens[pos : pos + n], dtype=np.float64).reshape(el.count, len(props))
            return {p.name: table[:, j].astype(p.dtype) for j, p in enumerate(props)}, pos + n
        scalars: dict[str, list[float]] = {p.name: [] for p in props if p.count_dtype is None}
        lists: dict[str, tuple[list, list]] = {p.name: ([], []) for p in props if p.count_dtype}
        for _ in range(el.count):
            for p in props:
                if p.count_dtype is None:
                    scalars[p.name].append(float(tokens[pos]))
                    pos += 1
                    continue
                k = int(tokens[pos])
                if pos + 1 + k > len(tokens):
                    raise _truncated(path, el)
                lists[p.name][0].append(k)
                lists[p.name][1].extend(float(t) for t in tokens[pos + 1 : pos + 1 + k])
                pos += 1 + k
    except IndexError:
        raise _truncated(path, el) from None
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric value in element {el.name!r} ({exc})") from None
    columns: dict[str, np.ndarray | PlyList] = {}
    for p in props:
        if p.count_dtype is None:
            columns[p.name] = np.asarray(scalars[p.name]).astype(p.dtype)
        else:
            counts, values = lists[p.name]
            values = np.asarray(values).astype(p.dtype)
            columns[p.name] = PlyList(np.asarray(counts, np.int64), values)
    return columns, pos


def read_ply(path: Path) -> dict[str, dict[str, np.ndarray | PlyList]]:
    """Read every element of a PLY file.

    Returns:
        element name -> property name -> array (count,) of the declared dtype, or a `PlyList`
        for list properties.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read PLY file {path}: {exc.strerror or exc}") from None
    fmt, elements, pos = _parse_header(path, data)
    out: dict[str, dict[str, np.ndarray | PlyList]] = {}
    if fmt == "ascii":
        tokens, tpos = data[pos:].split(), 0
        for el in elements:
            out[el.name], tpos = _read_ascii(path, tokens, tpos, el)
        return out
    for el in elements:
        try:
            out[el.name], pos = _read_binary(path, data, pos, el, _FORMATS[fmt])
        except ValueError as exc:  # e.g. duplicate property names in the structured dtype
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: cannot decode element {el.name!r}: {exc}") from None
    if data[pos:].strip():
        raise DataError(
            f"{path}: {len(data) - pos} bytes follow the last element; the header's element "
            "counts or property types do not match the body"
        )
    return out


def _triangulate(faces: PlyList) -> np.ndarray:
    """Polygons -> triangles int64 (T, 3) as fans (v0, v_i, v_i+1); rows of < 3 vertices vanish."""
    k = faces.uniform_length()
    if k == 3:
        return faces.values.reshape(-1, 3).astype(np.int64)
    counts = faces.counts
    if len(counts) == 0:
        return np.zeros((0, 3), np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_tri = np.maximum(counts - 2, 0)
    first = np.repeat(starts, n_tri)
    # position of each triangle within its polygon: 0..n_tri-1
    step = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    v = faces.values.astype(np.int64)
    return np.stack([v[first], v[first + step + 1], v[first + step + 2]], axis=1)


def read_mesh(path: Path) -> PlyMesh:
    """Read a coloured triangle mesh (e.g. ScanNet `*_vh_clean_2.ply`).

    Needs element `vertex` with float x, y, z; uses red, green, blue (uchar) if present (alpha
    ignored) and nx, ny, nz if present; `face` with `vertex_indices` (or `vertex_index`) as
    triangles or polygons (fanned). A file without faces (a point cloud) gives F = 0.
    Returns:
        PlyMesh(vertices float32 (V, 3), colors uint8 (V, 3) or None, faces int64 (F, 3),
        normals float32 (V, 3) or None).
    """
    path = Path(path)
    elements = read_ply(path)
    vertex = elements.get("vertex")
    if vertex is None or not all(k in vertex for k in ("x", "y", "z")):
        raise DataError(f"{path}: PLY has no 'vertex' element with x, y, z properties")
    xyz = [vertex[k] for k in ("x", "y", "z")]
    if any(isinstance(a, PlyList) for a in xyz):
        raise DataError(f"{path}: vertex x, y, z must be scalar properties")
    vertices = np.stack(xyz, axis=1).astype(np.float32)
    colors = None
    if all(k in vertex for k in ("red", "green", "blue")):
        rgb = [vertex[k] for k in ("red", "green", "blue")]
        if any(isinstance(a, PlyList) or a.dtype != np.uint8 for a in rgb):
            raise DataError(f"{path}: vertex red, green, blue must be 'uchar' properties")
        colors = np.stack(rgb, axis=1)
    normals = None
    if all(k in vertex for k in ("nx", "ny", "nz")):
        nxyz = [vertex[k] for k in ("nx", "ny", "nz")]
        if any(isinstance(a, PlyList) for a in nxyz):
            raise DataError(f"{path}: vertex nx, ny, nz must be scalar properties")
        normals = np.stack(nxyz, axis=1).astype(np.float32)
    faces = np.zeros((0, 3), np.int64)
    face = elements.get("face")
    if face is not None:
        lst = face.get("vertex_indices", face.get("vertex_index"))
        if not isinstance(lst, PlyList):
            raise DataError(f"{path}: element 'face' has no list property 'vertex_indices'")
        faces = _triangulate(lst)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
            bad = int(faces.max() if faces.max() >= len(vertices) else faces.min())
            raise DataError(
                f"{path}: a face refers to vertex {bad}, but the mesh has {len(vertices)} vertices"
            )
    return PlyMesh(vertices, colors, faces, normals)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals of a triangle mesh.

    Each face contributes its un-normalised normal (v1 - v0) x (v2 - v0), whose length is twice
    its area, to each of its three vertices; the sums are normalised. Vertices with no face of
    non-zero area (isolated or only on degenerate faces) get (0, 0, 1), i.e. "up" in the
    axis-aligned ScanNet frame, so every returned normal has unit length.

    Args:
        vertices: float (V, 3).
        faces: int (F, 3) vertex indices, counter-clockwise seen from outside.
    Returns:
        float32 (V, 3) unit normals.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise DataError(f"vertices have shape {v.shape}, expected (V, 3)")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise DataError(f"faces have shape {f.shape} and dtype {f.dtype}, expected int (F, 3)")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise DataError(f"faces refer to vertices outside [0, {len(v)})")
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    acc = np.zeros_like(v)
    # bincount with weights is a fast scatter-add (np.add.at is ~10x slower).
    for corner in range(3):
        for axis in range(3):
            acc[:, axis] += np.bincount(f[:, corner], weights=cross[:, axis], minlength=len(v))
    length = np.linalg.norm(acc, axis=1)
    out = np.zeros_like(acc)
    ok = length > 1e-20
    out[ok] = acc[ok] / length[ok, None]
    out[~ok] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)
