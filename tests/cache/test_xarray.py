"""A cache opens in xarray (a whole cache as a DataTree, one view as a Dataset), and its arrays'
own attributes are enough to decode what srkd decodes, bit for bit in float32."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from srkd.cache import CacheReader, CacheWriter, CodecSpec, arrays, ensemble_of
from srkd.cache.annotations import DECODE
from srkd.cache.upgrade import upgrade_metadata
from srkd.errors import CacheError
from tests.cache.conftest import make_spec, make_views

SCENES = {"synthetic_0000": 300, "synthetic_0001": 700}  # the second spans three chunks of 256 rows


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 256 rows, so small scenes cross chunk boundaries (dask blocks) too."""
    monkeypatch.setattr(arrays, "CHUNK_ROWS", 256)


def build(path: Path, codec: CodecSpec) -> CacheReader:
    spec = make_spec(codec=codec, views=2, ensemble=True)
    writer = CacheWriter.create(path, spec, schema_version=2)
    for i, (scene, n) in enumerate(SCENES.items()):
        views = make_views(n, spec, seed=i)
        views[0].feature[:3] = 0  # zero features: the decode's length-0 rule is exercised
        writer.write_scene(scene, views, ensemble_of(views), data_sha256="0" * 64)
    return CacheReader(path)


def decode_by_attributes(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Decode an entry following only the arrays' `srkd_decode` attributes (no srkd code)."""
    f32 = lambda name: ds[name].astype(np.float32)
    [lname] = [n for n in ds.data_vars if ds[n].attrs.get(DECODE, {}).get("to") == "logits"]
    [fname] = [n for n in ds.data_vars if ds[n].attrs.get(DECODE, {}).get("to") == "feature"]
    lrule, frule = ds[lname].attrs[DECODE], ds[fname].attrs[DECODE]
    assert lrule["dtype"] == frule["dtype"] == "float32"
    if "scale" not in lrule:  # float16 / lossless: a cast
        return f32(lname), f32(fname)
    logits = f32(lrule["offset"]) + f32(lrule["scale"]) * f32(lname)
    u = f32(fname) * np.float32(frule["step"])
    if "basis" in frule:
        u = xr.dot(u, f32(frule["basis"]), dim="axis")
    length = np.sqrt(xr.dot(u, u, dim="channel"))
    return logits, u * (f32(frule["norm"]) / xr.where(length > 0, length, 1))


@pytest.mark.parametrize(
    "codec",
    [CodecSpec.create("int8"), CodecSpec.create("int8", rotate=True), CodecSpec.create("float16"),
     CodecSpec.create("lossless")],
    ids=["int8", "int8-rotate", "float16", "lossless"],
)  # fmt: skip
def test_xarray_opens_a_cache_and_decodes_what_srkd_decodes(tmp_path: Path, codec: CodecSpec) -> None:
    reader = build(tmp_path / "cache", codec)
    tree = xr.open_datatree(tmp_path / "cache", engine="zarr", consolidated=False)
    assert tree.attrs["srkd_cache"]["fingerprint"] == reader.fingerprint
    k, d = reader.spec.num_classes, reader.spec.feature_dim
    for scene, n in SCENES.items():
        assert tree[scene].attrs["committed"] is True and set(tree[scene].children) == {"view_0", "view_1", "ensemble"}
        for view in reader.entries(scene):
            entry = "ensemble" if view == "ensemble" else f"view_{view}"
            ds = xr.open_zarr(tmp_path / "cache", group=f"{scene}/{entry}", consolidated=False)
            assert ds.sizes["point"] == n and ds.sizes["class"] == k and len(ds.chunks["point"]) == -(-n // 256)
            assert ds.sizes["channel" if "channel" in ds.sizes else "axis"] == d
            xr.testing.assert_identical(ds.compute(), tree[f"{scene}/{entry}"].to_dataset().compute())
            logits, feature = decode_by_attributes(ds)
            assert logits.dims == ("point", "class") and feature.dims == ("point", "channel")
            want_l, want_f = reader.read_all(scene, view)
            got_l, got_f = logits.values, feature.values
            assert got_l.dtype == got_f.dtype == np.float32
            np.testing.assert_array_equal(got_l, want_l)  # the same float32 operations, in order
            if codec.options.get("rotate"):
                # srkd rotates with a BLAS matmul, xr.dot with einsum: the D-term sums run in
                # another order, so equal to float32 rounding of the sums, not bit for bit
                scale = np.abs(want_f).max(axis=1, keepdims=True)
                # measured: at most 7.9e-7 of the row's largest value (6.6 float32 epsilons)
                assert (np.abs(got_f - want_f) <= 2e-6 * scale).all()
            else:
                np.testing.assert_array_equal(got_f, want_f)


def test_dimension_names_never_join_arrays_of_different_lengths(tmp_path: Path) -> None:
    # K == D here, so a shared name would go unnoticed by xarray: the names must still differ
    spec = make_spec(codec=CodecSpec.create("int8", rotate=True), views=1, ensemble=False, feature_dim=20)
    CacheWriter.create(tmp_path / "cache", spec, schema_version=2).write_scene("s", make_views(40, spec))
    entry = zarr.open_group(tmp_path / "cache", mode="r")["s/view_0"]
    dims = {name: arr.metadata.dimension_names for name, arr in entry.arrays()}
    assert dims == {
        "logits_code": ("point", "class"), "logits_scale": ("point",), "logits_offset": ("point",),
        "feature_code": ("point", "axis"), "feature_norm": ("point",), "feature_basis": ("channel", "axis"),
    }  # fmt: skip
    assert entry["logits_code"].attrs["kind"] == "point" and entry["feature_basis"].attrs["kind"] == "side"


def strip_annotations(cache: Path) -> int:
    """Turn a cache into what srkd wrote before it recorded dimension names: every array's
    metadata without `dimension_names` and with attributes {"kind": ...} only."""
    count = 0
    for meta in cache.glob("*/*/*/zarr.json"):
        doc = json.loads(meta.read_text())
        doc.pop("dimension_names", None)
        doc["attributes"] = {"kind": doc["attributes"]["kind"]}
        meta.write_text(json.dumps(doc, indent=2))
        count += 1
    return count


def test_upgrade_adds_the_metadata_to_an_older_cache_and_changes_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reader = build(cache, CodecSpec.create("int8"))
    before = {scene: [reader.read_all(scene, v) for v in reader.entries(scene)] for scene in SCENES}
    arrays = strip_annotations(cache)
    chunks = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file() and p.name != "zarr.json"}
    root_meta = (cache / "zarr.json").read_bytes()
    with pytest.raises(KeyError, match="dimension_names"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.open_zarr(cache, group="synthetic_0000/view_0", consolidated=False)
    old = CacheReader(cache)  # srkd reads the older cache as before
    np.testing.assert_array_equal(old.read_all("synthetic_0000", 0)[1], before["synthetic_0000"][0][1])

    assert upgrade_metadata(cache) == arrays == 2 * 3 * 5
    assert upgrade_metadata(cache) == 0  # idempotent: a crashed upgrade is finished by a re-run
    assert (cache / "zarr.json").read_bytes() == root_meta  # the fingerprint's record untouched
    assert {p: p.read_bytes() for p in chunks} == chunks  # no chunk rewritten
    upgraded = CacheReader(cache)
    assert upgraded.fingerprint == reader.fingerprint
    for scene in SCENES:
        for view, (want_l, want_f) in zip(upgraded.entries(scene), before[scene]):
            got_l, got_f = upgraded.read_all(scene, view)
            np.testing.assert_array_equal(got_l, want_l)
            np.testing.assert_array_equal(got_f, want_f)
    ds = xr.open_zarr(cache, group="synthetic_0001/ensemble", consolidated=False)
    np.testing.assert_array_equal(decode_by_attributes(ds)[0].values, before["synthetic_0001"][2][0])


def test_upgrade_refuses_what_is_not_a_srkd_cache(tmp_path: Path) -> None:
    zarr.open_group(tmp_path / "foreign", mode="w")
    with pytest.raises(CacheError, match="not a srkd teacher cache"):
        upgrade_metadata(tmp_path / "foreign")


def test_inspect_cache_upgrade_makes_an_older_cache_open_in_xarray(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    cache = tmp_path / "cache"
    build(cache, CodecSpec.create("int8"))
    n = strip_annotations(cache)
    res = CliRunner().invoke(app, ["inspect-cache", str(cache), "--upgrade", "--json"])
    assert res.exit_code == 0, res.output
    assert f"--upgrade: {n} array(s)" in res.output
    xr.open_zarr(cache, group="synthetic_0000/view_0", consolidated=False)  # no longer refused
