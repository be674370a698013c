"""PLY reading (binary / ascii, triangles / polygons, malformed files) and vertex normals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srkd.data.scannet import ply
from srkd.data.scannet.ply import read_mesh, read_ply, vertex_normals
from srkd.errors import DataError


def write_ply(
    path: Path,
    vertices: np.ndarray,
    colors: np.ndarray | None,
    faces: list[list[int]],
    fmt: str = "binary_little_endian",
    alpha: bool = False,
) -> Path:
    """A minimal PLY writer for tests: float xyz, uchar rgb(a), `list uchar int vertex_indices`."""
    order = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}[fmt]
    head = ["ply", f"format {fmt} 1.0", "comment srkd test", f"element vertex {len(vertices)}"]
    head += [f"property float {c}" for c in "xyz"]
    if colors is not None:
        head += [f"property uchar {c}" for c in ("red", "green", "blue")]
        head += ["property uchar alpha"] if alpha else []
    head += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    rows: list = []
    if colors is not None:
        cols = [colors] + ([np.full((len(vertices), 1), 255, np.uint8)] if alpha else [])
        cols = np.concatenate(cols, axis=1)
    if order is None:
        for i, v in enumerate(vertices):
            extra = [] if colors is None else [str(int(c)) for c in cols[i]]
            rows.append(" ".join([repr(float(x)) for x in v] + extra))
        rows += [" ".join(map(str, [len(f), *f])) for f in faces]
        path.write_bytes(("\n".join(head + rows) + "\n").encode())
        return path
    vdt = [(c, order + "f4") for c in "xyz"]
    if colors is not None:
        vdt += [(c, "u1") for c in ("red", "green", "blue", "alpha")[: cols.shape[1]]]
    vert = np.zeros(len(vertices), dtype=vdt)
    for j, c in enumerate("xyz"):
        vert[c] = vertices[:, j]
    if colors is not None:
        for j, c in enumerate(("red", "green", "blue", "alpha")[: cols.shape[1]]):
            vert[c] = cols[:, j]
    body = vert.tobytes()
    for f in faces:
        body += np.uint8(len(f)).tobytes() + np.asarray(f, dtype=order + "i4").tobytes()
    path.write_bytes(("\n".join(head) + "\n").encode() + body)
    return path


VERTS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
COLORS = np.array([[0, 10, 20], [255, 0, 1], [7, 8, 9], [100, 200, 250], [1, 2, 3]], np.uint8)


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_triangle_mesh_round_trip(tmp_path, fmt):
    faces = [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    mesh = read_mesh(write_ply(tmp_path / "m.ply", VERTS, COLORS, faces, fmt, alpha=True))
    np.testing.assert_array_equal(mesh.vertices, VERTS)
    assert mesh.vertices.dtype == np.float32 and mesh.colors.dtype == np.uint8
    np.testing.assert_array_equal(mesh.colors, COLORS)
    np.testing.assert_array_equal(mesh.faces, faces)
    assert mesh.faces.dtype == np.int64


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_mixed_polygons_are_fanned_into_triangles(tmp_path, fmt):
    # a quad, a triangle, then a pentagon: the fast fixed-length path must give way
    faces = [[0, 1, 2, 3], [0, 1, 4], [0, 1, 2, 3, 4]]
    mesh = read_mesh(write_ply(tmp_path / "p.ply", VERTS, COLORS, faces, fmt))
    expected = [[0, 1, 2], [0, 2, 3], [0, 1, 4], [0, 1, 2], [0, 2, 3], [0, 3, 4]]
    np.testing.assert_array_equal(mesh.faces, expected)


def test_read_ply_keeps_every_property(tmp_path):
    elements = read_ply(write_ply(tmp_path / "a.ply", VERTS, COLORS, [[0, 1, 2]], alpha=True))
    assert set(elements["vertex"]) == {"x", "y", "z", "red", "green", "blue", "alpha"}
    assert (elements["vertex"]["alpha"] == 255).all()
    lst = elements["face"]["vertex_indices"]
    assert lst.uniform_length() == 3 and lst.values.tolist() == [0, 1, 2]


def test_mesh_without_colours_or_faces(tmp_path):
    mesh = read_mesh(write_ply(tmp_path / "n.ply", VERTS, None, []))
    assert mesh.colors is None and mesh.faces.shape == (0, 3)


def _valid_bytes(tmp_path: Path) -> bytes:
    return write_ply(tmp_path / "ok.ply", VERTS, COLORS, [[0, 1, 2], [0, 2, 3]]).read_bytes()


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b"plx" + b[3:], "not a PLY"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b[: len(b) - 2 * 13 - 5 * 15 + 7], "truncated"),  # cut inside the vertices
        (lambda b: b.replace(b"property float x", b"property float128 x"), "unknown property type"),
        (lambda b: b.replace(b"end_header", b"end_hexder"), "end_header"),
        (lambda b: b.replace(b"format binary_little_endian", b"format binary_middle"), "format"),
        (lambda b: b.replace(b"element face 2", b"element face two"), "element"),
        (lambda b: b.replace(b"element vertex 5", b"element vertex 2"), "bytes follow"),
    ],
)
def test_malformed_ply_raises_dataerror_naming_the_file(tmp_path, mangle, message):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(mangle(_valid_bytes(tmp_path)))
    with pytest.raises(DataError, match=message) as info:
        read_mesh(bad)
    assert str(bad) in str(info.value)


def test_face_index_out_of_range(tmp_path):
    path = write_ply(tmp_path / "f.ply", VERTS, COLORS, [[0, 1, 2], [0, 1, 7]])
    with pytest.raises(DataError, match="refers to vertex 7, but the mesh has 5"):
        read_mesh(path)


def test_missing_ply_is_dataerror(tmp_path):
    with pytest.raises(DataError, match="cannot read PLY"):
        read_mesh(tmp_path / "absent.ply")


def test_normals_of_a_closed_tetrahedron_point_outwards():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])  # counter-clockwise from outside
    n = vertex_normals(v, f)
    assert n.dtype == np.float32 and n.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
    centre = v.mean(axis=0)
    assert (np.sum(n * (v - centre), axis=1) > 0).all()
    np.testing.assert_allclose(n[0], -np.ones(3) / np.sqrt(3), atol=1e-6)  # symmetric corner


def test_normals_are_area_weighted_and_isolated_vertices_point_up():
    # vertex 0 is shared by a big face in the z=0 plane (area 50) and a small one in x=0 (area 0.5)
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]], np.float64)
    f = np.array([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(v, f)
    expected = np.array([1.0, 0.0, 100.0])  # 2*area-weighted sum of (1,0,0) and (0,0,1)
    np.testing.assert_allclose(n[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(n[1], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(n[3], [1, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(n[5], [0, 0, 1])  # isolated vertex: documented default


def test_vertex_normals_reject_bad_faces():
    with pytest.raises(DataError, match="outside"):
        vertex_normals(VERTS, np.array([[0, 1, 9]]))
    with pytest.raises(DataError, match="expected int"):
        vertex_normals(VERTS, np.zeros((2, 4), np.int64))


def test_real_scannet_mesh(scannet_raw_sample, monkeypatch):
    path = scannet_raw_sample / "scans/scene0000_00/scene0000_00_vh_clean_2.ply"
    mesh = read_mesh(path)
    assert mesh.vertices.shape == (81369, 3) and mesh.faces.shape == (153587, 3)
    assert mesh.colors.dtype == np.uint8 and mesh.colors.max() == 255 and mesh.colors.std() > 10
    assert mesh.faces.min() == 0 and mesh.faces.max() == 81368
    normals = vertex_normals(mesh.vertices, mesh.faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    nyu40 = np.load(scannet_raw_sample / "scene0000_00_nyu40_per_vertex.npy")
    assert len(nyu40) == len(mesh.vertices)  # the per-vertex label file follows PLY vertex order
    floor = nyu40 == 2  # NYU40 "floor": its normals must be vertical (raw frame is z-up too)
    assert np.median(np.abs(normals[floor, 2])) > 0.95
    # the general row-by-row decoder must agree with the all-triangles fast path
    monkeypatch.setattr(ply, "_read_binary_uniform_lists", lambda *args: None)
    np.testing.assert_array_equal(read_mesh(path).faces, mesh.faces)
