"""A schema-3 cache read without srkd: xarray (one Dataset per sequence, the sample offsets as a
coordinate; the whole tree from the consolidated metadata) and a second Zarr implementation,
tensorstore (optional dependency: skipped where it is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from srkd.cache import CacheReader, CacheWriter, CodecSpec, ensemble_of
from srkd.cache.housekeeping import consolidate_metadata
from srkd.cache.packed import plan_sequences
from tests.cache.conftest import make_spec, make_views

SCENES = ("a_000", "a_001", "a_002", "b_000", "b_001")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sequences (recordings a and b) of 2 views + ensemble, default codec, consolidated."""
    path = tmp_path_factory.mktemp("interop") / "cache"
    spec = make_spec(codec=CodecSpec())
    writer = CacheWriter.create(path, spec)
    for name, samples in plan_sequences(SCENES, max_samples=3).items():
        packed = []
        for i, scene in enumerate(samples):
            views = make_views(150 + 40 * i, spec, seed=i)
            packed.append(writer.encode_sample(_sample(scene, views)))
        writer.write_sequence(name, packed)
    consolidate_metadata(path)
    return path


def _sample(scene, views):  # type: ignore[no-untyped-def]
    from srkd.cache.schema import SampleTargets

    return SampleTargets(scene, views, ensemble_of(views), "0" * 64)


def _arrays(path: Path) -> dict[str, zarr.Array]:
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    out: dict[str, zarr.Array] = {}

    def walk(group: zarr.Group) -> None:
        for _, arr in group.arrays():
            out[arr.path] = arr
        for _, sub in group.groups():
            walk(sub)

    walk(root)
    return out


def test_each_sequence_opens_as_an_xarray_dataset_with_its_offsets(cache: Path) -> None:
    xr = pytest.importorskip("xarray")
    reader = CacheReader(cache)
    assert reader.scene_ids == SCENES and sorted(reader.packed.sequences) == ["seq-a_000", "seq-b_000"]
    for seq, attrs in reader.packed.sequences.items():
        ds = xr.open_zarr(cache, group=f"{seq}/view_1", consolidated=False)
        offsets = xr.open_zarr(cache, group=seq, consolidated=False)["sample_offsets"].values
        ds = ds.assign_coords(sample_offsets=("sample_edge", offsets))
        assert offsets.tolist() == np.concatenate([[0], np.cumsum(attrs["num_points"])]).tolist()
        assert ds.sizes["point"] == offsets[-1] and ds.sizes["sample"] == len(attrs["samples"])
        for pos, scene in enumerate(attrs["samples"]):
            rows = slice(int(offsets[pos]), int(offsets[pos + 1]))
            point, side = reader.encoded(scene, 1)
            for name, data in point.items():
                np.testing.assert_array_equal(ds[name].isel(point=rows).values, data)
            for name, data in side.items():
                np.testing.assert_array_equal(ds[name].isel(sample=pos).values, data)
    tree = xr.open_datatree(cache, engine="zarr", consolidated=True)  # the document a build writes
    assert {"seq-a_000", "seq-b_000"} <= set(tree.children)


def test_tensorstore_reads_every_array_as_zarr_python_does(cache: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    arrays = _arrays(cache)
    assert len(arrays) >= 2 * (1 + 3 * 5)  # per sequence: offsets + 3 entries x (3 point + 2 side)
    for path, arr in arrays.items():
        store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(cache / path)}}, read=True).result()
        meta = json.loads((cache / path / "zarr.json").read_text())
        assert list(store.domain.labels) == meta["dimension_names"], path
        np.testing.assert_array_equal(store.read().result(), arr[...], err_msg=path)
