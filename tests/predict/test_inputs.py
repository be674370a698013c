"""Reading predict inputs (folders, mesh and point-cloud PLYs), PCA normals, PLY writing, errors.

numpy/scipy only (no torch model), so these run in well under a second each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srkd.data.normals import pca_normals
from srkd.data.scannet.ply import read_mesh, read_ply, write_ply
from srkd.errors import DataError
from srkd.predict.inputs import check_input, read_input

NEEDS = ("color", "normal")


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_pca_normals_of_a_plane_are_its_normal_up_to_sign(rng):
    xy = rng.uniform(-1, 1, size=(500, 2))
    # a tilted plane z = 0.3 x - 0.2 y + 1, normal (-0.3, 0.2, 1) / |.|
    coord = np.column_stack([xy, 0.3 * xy[:, 0] - 0.2 * xy[:, 1] + 1.0])
    want = np.array([-0.3, 0.2, 1.0]) / np.linalg.norm([-0.3, 0.2, 1.0])
    normals = pca_normals(coord)
    assert normals.dtype == np.float32 and normals.shape == (500, 3)
    assert np.allclose(np.abs(normals @ want), 1.0, atol=1e-4)


def test_pca_normals_of_a_sphere_are_radial_and_point_to_the_centroid(rng):
    centre = np.array([5.0, -1.0, 0.5])
    coord = 2.0 * _sphere(2000, rng) + centre
    normals = pca_normals(coord, k=12)
    radial = (coord - centre) / 2.0
    cos = np.einsum("ij,ij->i", normals, radial)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert (np.abs(cos) > 0.98).mean() > 0.99  # the sphere's normal, up to sign
    assert (cos < 0).all()  # oriented towards the centroid, i.e. inwards


def test_pca_normals_degenerate_inputs(rng):
    assert np.array_equal(pca_normals(np.zeros((1, 3))), [[0, 0, 1]])
    same = pca_normals(np.ones((5, 3)), k=4)  # all neighbours coincide: no plane
    assert np.array_equal(same, np.tile([0, 0, 1], (5, 1)))
    with pytest.raises(DataError, match="non-finite"):
        pca_normals(np.array([[0, 0, np.nan]] * 4))


def test_write_ply_round_trip_mesh_and_points(tmp_path, rng):
    v = rng.uniform(size=(6, 3)).astype(np.float32)
    c = rng.integers(0, 256, (6, 3)).astype(np.uint8)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    path = write_ply(tmp_path / "m.ply", v, c, faces, normals=v, scalars={"label": np.arange(6, dtype=np.int32)},
                     comments=["labelled raum_ä.ply\nby x"])
    assert b"comment labelled raum_?.ply by x\n" in path.read_bytes()[:400]
    mesh = read_mesh(path)
    assert np.array_equal(mesh.vertices, v) and np.array_equal(mesh.colors, c)
    assert np.array_equal(mesh.faces, faces) and np.allclose(mesh.normals, v)
    assert read_ply(path)["vertex"]["label"].tolist() == list(range(6))
    points = read_mesh(write_ply(tmp_path / "p.ply", v, c))
    assert points.faces.shape == (0, 3) and points.normals is None
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(DataError, match="colors must be uint8"):
        write_ply(tmp_path / "bad.ply", v, c.astype(np.float32))
    assert not (tmp_path / "bad.ply").exists()


def test_folder_input_uses_its_normals_and_ignores_labels(tmp_path, rng):
    folder = tmp_path / "scene0007_00"
    folder.mkdir()
    coord = rng.uniform(size=(50, 3)).astype(np.float32)
    normal = _sphere(50, rng).astype(np.float32)
    np.save(folder / "coord.npy", coord)
    np.save(folder / "color.npy", rng.integers(0, 256, (50, 3)).astype(np.uint8))
    np.save(folder / "normal.npy", normal)
    np.save(folder / "segment20.npy", np.zeros(50, np.int64))
    scan = read_input(folder, NEEDS)
    assert (scan.name, scan.kind, scan.normals, scan.faces) == ("scene0007_00", "folder", "file", None)
    assert np.array_equal(scan.cloud.normal, normal) and np.array_equal(scan.cloud.coord, coord)
    assert scan.cloud.color.dtype == np.float32 and scan.cloud.color.max() <= 255


def test_folder_without_normals_gets_pca_normals(tmp_path, rng):
    folder = tmp_path / "plain"
    folder.mkdir()
    np.save(folder / "coord.npy", np.column_stack([rng.uniform(size=(80, 2)), np.zeros(80)]))
    np.save(folder / "color.npy", np.full((80, 3), 128.0))
    scan = read_input(folder, NEEDS, neighbours=8)
    assert scan.normals == "PCA k=8"
    assert np.allclose(np.abs(scan.cloud.normal[:, 2]), 1.0, atol=1e-5)
    assert read_input(folder, ("color",)).normals == "not needed"


def test_mesh_ply_normals_come_from_faces(tmp_path):
    # a unit square in z = 0 split into two counter-clockwise triangles: normals +z
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    c = np.full((4, 3), 200, np.uint8)
    path = write_ply(tmp_path / "square_vh_clean_2.ply", v, c, np.array([[0, 1, 2], [0, 2, 3]]))
    scan = read_input(path, NEEDS)
    assert (scan.name, scan.kind, scan.normals) == ("square_vh_clean_2", "mesh ply", "mesh faces")
    assert np.allclose(scan.cloud.normal, [[0, 0, 1]] * 4)
    assert scan.faces.shape == (2, 3)


def test_point_ply_with_and_without_normals(tmp_path, rng):
    coord = (3 * _sphere(300, rng)).astype(np.float32)
    c = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    scan = read_input(write_ply(tmp_path / "cloud.ply", coord, c), NEEDS)
    assert (scan.kind, scan.normals, scan.faces) == ("point ply", "PCA k=16", None)
    given = _sphere(300, rng).astype(np.float32)
    scan = read_input(write_ply(tmp_path / "cloud_n.ply", coord, c, normals=given), NEEDS)
    assert scan.normals == "file" and np.allclose(scan.cloud.normal, given)


def _folder(tmp_path: Path, **arrays: np.ndarray) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    for stem, arr in arrays.items():
        np.save(folder / f"{stem}.npy", arr)
    return folder


def test_bad_inputs_each_get_one_clear_error(tmp_path, rng):
    coord = rng.uniform(size=(10, 3)).astype(np.float32)
    color = np.full((10, 3), 9, np.uint8)
    cases = [
        (tmp_path / "missing.ply", "does not exist"),
        (tmp_path, "has no coord.npy"),
    ]
    (tmp_path / "notes.txt").write_text("hello")
    cases.append((tmp_path / "notes.txt", "neither a .ply file nor a folder"))
    (tmp_path / "fake.ply").write_bytes(b"not a ply at all")
    cases.append((tmp_path / "fake.ply", "is not a PLY file"))
    for path, message in cases:
        with pytest.raises(DataError, match=message) as info:
            read_input(path, NEEDS)
        assert str(path) in str(info.value)
    nan = coord.copy()
    nan[3, 1] = np.nan
    bad = {
        "non-finite values": {"coord": nan, "color": color},
        r"shape \(10, 2\)": {"coord": coord[:, :2]},
        r"shape \(9, 3\), expected \(10, 3\)": {"coord": coord, "color": color[:9]},
        "has no colours": {"coord": coord},
        "colours lie in": {"coord": coord, "color": np.full((10, 3), 0.5)},
        "dtype": {"coord": coord.astype(np.int32), "color": color},
    }
    for message, arrays in bad.items():
        for old in (tmp_path / "bad").glob("*.npy") if (tmp_path / "bad").exists() else []:
            old.unlink()
        with pytest.raises(DataError, match=message) as info:
            read_input(_folder(tmp_path, **arrays), NEEDS)
        assert "bad" in str(info.value)


def test_ply_without_colours_is_refused_when_the_model_needs_colour(tmp_path, rng):
    path = write_ply(tmp_path / "grey.ply", rng.uniform(size=(20, 3)))
    with pytest.raises(DataError, match="has no colours.*red, green, blue") as info:
        read_input(path, NEEDS)
    assert "grey.ply" in str(info.value)
    assert read_input(path, ("normal",)).cloud.color is None
    assert check_input(path) == "ply"


def test_real_scannet_mesh_reads_as_a_mesh_input(scannet_raw_sample):
    """The raw ScanNet mesh (skipped without ../shared/data): every vertex a point, face normals."""
    path = scannet_raw_sample / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply"
    scan = read_input(path, NEEDS)
    assert (scan.name, scan.kind, scan.normals) == ("scene0000_00_vh_clean_2", "mesh ply", "mesh faces")
    assert scan.cloud.num_points == 81369 and scan.faces.shape == (153587, 3)
    assert np.allclose(np.linalg.norm(scan.cloud.normal, axis=1), 1.0, atol=1e-5)
    assert 0 <= scan.cloud.color.min() and scan.cloud.color.max() <= 255
