"""The whole cache as one lazy xarray Dataset (`srkd.cache.dataset`), the bulk metadata reads
behind a fast open and resume check (`srkd.cache.store_files`), and reading a sequence at once
(`CacheReader.read_many`): each gives exactly what srkd's per-sample reader gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, MemoryStore

from srkd.cache import CacheReader, CacheWriter, CodecSpec, ensemble_of
from srkd.cache.packed import plan_sequences
from srkd.cache.schema import SampleTargets
from srkd.cache.store_files import StoreFiles, shard_keys
from srkd.errors import CacheError
from tests.cache.conftest import make_spec, make_views

SCENES = ("a_000", "a_001", "a_002", "b_000", "b_001")


def build(path: Path, schema: int, codec: CodecSpec) -> CacheReader:
    spec = make_spec(codec=codec)
    writer = CacheWriter.create(path, spec, schema_version=schema)
    sizes = {scene: 120 + 35 * i for i, scene in enumerate(SCENES)}
    if schema == 3:
        for name, samples in plan_sequences(SCENES, max_samples=2).items():  # a: two sequences, b: one
            views = {s: make_views(sizes[s], spec, seed=i) for i, s in enumerate(samples)}
            packed = [writer.encode_sample(SampleTargets(s, v, ensemble_of(v), "0" * 64)) for s, v in views.items()]
            writer.write_sequence(name, packed)
    else:
        for i, scene in enumerate(SCENES):
            views = make_views(sizes[scene], spec, seed=i)
            writer.write_scene(scene, views, ensemble_of(views), data_sha256="0" * 64)
    return CacheReader(path)


@pytest.mark.parametrize(("schema", "codec"), [(3, CodecSpec()), (3, CodecSpec.create("int8")), (2, CodecSpec())])
def test_the_whole_cache_as_one_dataset_equals_the_reader(tmp_path: Path, schema: int, codec: CodecSpec) -> None:
    pytest.importorskip("xarray")
    from srkd.cache.dataset import open_dataset

    reader = build(tmp_path / "cache", schema, codec)
    for view in (1, "ensemble"):
        ds = open_dataset(tmp_path / "cache", view)
        assert tuple(ds.sample.values) == SCENES and ds.attrs["schema_version"] == schema
        offsets = ds.sample_offsets.values
        assert offsets[0] == 0 and np.diff(offsets).tolist() == [reader.num_points(s) for s in SCENES]
        logits, feature = ds.logits.values, ds.feature.values  # every block computed
        assert logits.dtype == feature.dtype == np.float32 and len(logits) == offsets[-1]
        for i, scene in enumerate(SCENES):
            want = reader.read_all(scene, view)
            np.testing.assert_array_equal(logits[offsets[i] : offsets[i + 1]], want[0])
            np.testing.assert_array_equal(feature[offsets[i] : offsets[i + 1]], want[1])
    if schema == 3:
        assert ds.logits.data.numblocks[0] == 3  # one dask block per sequence
    with pytest.raises(CacheError, match="holds no entry 7"):
        open_dataset(tmp_path / "cache", 7)


def test_read_many_reads_a_sequence_at_once_and_equals_read_all(tmp_path: Path) -> None:
    reader = build(tmp_path / "cache", 3, CodecSpec())
    order = ["b_000", "a_001", "a_000", "a_002"]  # across sequences, out of order
    for scene, (logits, feature) in zip(order, reader.read_many(order, 0), strict=True):
        want = reader.read_all(scene, 0)
        np.testing.assert_array_equal(logits, want[0])
        np.testing.assert_array_equal(feature, want[1])
    with pytest.raises(CacheError, match="views 0..1"):
        reader.read_many(["a_000"], 5)


@pytest.mark.parametrize(
    ("shape", "chunks", "shards"),
    [((1000, 20), (64, 20), (256, 20)), ((7,), (3,), None), ((0, 4), (8, 4), None), ((5, 3), (2, 2), None),
     ((300, 3, 2), (100, 3, 2), None)],
)
def test_shard_keys_are_the_keys_zarr_writes(tmp_path: Path, shape, chunks, shards) -> None:  # type: ignore[no-untyped-def]
    encodings = {"default-slash": {"name": "default", "separator": "/"},
                 "default-dot": {"name": "default", "separator": "."}, "v2-dot": {"name": "v2", "separator": "."}}
    for folder, encoding in encodings.items():
        array_dir = tmp_path / folder / "x"
        root = zarr.open_group(LocalStore(tmp_path / folder), mode="w-")  # w-: never clears a folder
        arr = root.create_array("x", shape=shape, dtype="int16", chunks=chunks, shards=shards,
                                chunk_key_encoding=encoding, fill_value=0, config={"write_empty_chunks": True})  # fmt: skip
        arr[...] = 1
        written = sorted(str(p.relative_to(array_dir)) for p in array_dir.rglob("*")
                         if p.is_file() and p.name != "zarr.json")  # fmt: skip
        doc = StoreFiles(root.store).read_json(["x/zarr.json"])["x/zarr.json"]
        assert sorted(shard_keys(doc)) == written


def test_bulk_reads_agree_on_a_directory_and_in_memory(tmp_path: Path) -> None:
    local = zarr.open_group(LocalStore(tmp_path / "s"), mode="w-")
    memory = zarr.open_group(MemoryStore(), mode="w")
    for root in (local, memory):
        root.create_group("seq").attrs["n"] = 3
        root.create_array("seq/x", shape=(10,), dtype="int8", chunks=(5,))[...] = 1
    (tmp_path / "s" / "seq" / "torn.json").write_bytes(b'{"node_ty')
    keys = ["seq/zarr.json", "seq/x/zarr.json", "nothing/zarr.json"]
    docs = {kind: StoreFiles(root.store).read_json(keys) for kind, root in (("local", local), ("memory", memory))}
    assert docs["local"] == docs["memory"] and docs["local"]["nothing/zarr.json"] is None
    assert docs["local"]["seq/zarr.json"]["attributes"] == {"n": 3}
    assert StoreFiles(local.store, "seq").read_json(["torn.json"]) == {"torn.json": None}
    for root in (local, memory):
        files = StoreFiles(root.store, "seq")
        assert files.exists(["x/c/0", "x/c/1", "x/c/2"]) == {"x/c/0": True, "x/c/1": True, "x/c/2": False}
