"""The cache conformance suite: every test runs against a LocalStore directory and a MemoryStore."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from srkd.cache import CacheReader, CacheWriter, CodecSpec, ViewTargets, ensemble_of
from srkd.cache.codecs import affinity_error, softmax_kl
from srkd.errors import CacheError, CacheMissError, ConfigError
from tests.cache.conftest import make_spec, make_views

# codec -> (max mean KL at T=2, max affinity MAE, max feature relative error). int8 rounds each
# unit-direction component to a step s, so its relative error is about s * sqrt(D / 12). These
# features are noise-like; a trained teacher's affinity error is ~4e-3 (bench/cache_codec.py).
_STEP = CodecSpec.create("int8").options["feature_step"]
BOUNDS = {
    "int8": (1e-3, 0.015, 1.2 * _STEP * np.sqrt(64 / 12)),
    "float16": (1e-5, 1e-3, 1e-3),
    "lossless": (0.0, 0.0, 0.0),
}


def _write(case, spec, scenes=("scene_a", "scene_b"), n=600):
    writer = CacheWriter.create(case.location, spec, schema_version=case.schema)
    truth = {}
    for i, scene in enumerate(scenes):
        views = make_views(n + 37 * i, spec, seed=i)
        ens = ensemble_of(views) if spec.ensemble else None
        writer.write_scene(scene, views, ens)
        truth[scene] = (views, ens)
    return writer, truth


@pytest.mark.parametrize("codec", ["int8", "float16", "lossless"])
def test_round_trip_within_codec_bounds(store_case, codec):
    spec = make_spec(codec=CodecSpec.create(codec))
    _, truth = _write(store_case, spec)
    reader = CacheReader(store_case.location, expect=spec)
    assert reader.scene_ids == ("scene_a", "scene_b")
    max_kl, max_aff, max_feat = BOUNDS[codec]
    for scene, (views, ens) in truth.items():
        assert reader.num_points(scene) == len(views[0].logits)
        assert reader.views(scene) == 2 and reader.entries(scene) == [0, 1, "ensemble"]
        for v, target in [(0, views[0]), (1, views[1]), ("ensemble", ens)]:
            logits, feature = reader.read_all(scene, v)
            assert logits.dtype == np.float32 and feature.dtype == np.float32
            assert logits.shape == target.logits.shape and feature.shape == target.feature.shape
            if codec == "lossless":
                np.testing.assert_array_equal(logits, target.logits)
                np.testing.assert_array_equal(feature, target.feature)
                continue
            assert softmax_kl(target.logits, logits).mean() <= max_kl
            assert affinity_error(target.feature, feature) <= max_aff
            rel = np.linalg.norm(feature - target.feature, axis=1) / np.linalg.norm(target.feature, axis=1)
            assert rel.mean() <= max_feat
            assert (logits.argmax(1) == target.logits.argmax(1)).mean() >= 0.98  # near-ties may flip
        assert reader.view_params(scene, 1)["rotate_z"] == 0.5
        assert reader.view_params(scene, "ensemble") == {"kind": "ensemble", "views": 2}


def test_gather_any_subset_and_order(store_case, rng):
    spec = make_spec()
    _, truth = _write(store_case, spec)
    reader = CacheReader(store_case.location, cache_bytes=1 << 20)
    n = reader.num_points("scene_b")
    full_l, full_f = reader.read_all("scene_b", 1)
    for idx in [rng.permutation(n), rng.integers(0, n, 5000), np.array([n - 1, 0, 0, 7]), np.array([], np.int64)]:
        logits, feature = reader.gather("scene_b", 1, idx.astype(np.int32))
        # equal up to float32 rounding (BLAS may sum in another order for another row count)
        np.testing.assert_allclose(logits, full_l[idx], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(feature, full_f[idx], rtol=1e-5, atol=1e-5)
    with pytest.raises(CacheError, match="out of range"):
        reader.gather("scene_b", 0, np.array([n]))
    with pytest.raises(CacheError, match="1-D integer"):
        reader.gather("scene_b", 0, np.array([0.5]))
    with pytest.raises(CacheMissError):
        reader.gather("scene_b", 2, np.arange(3))
    with pytest.raises(CacheMissError):
        reader.gather("no_such_scene", 0, np.arange(3))


def test_uncommitted_scene_is_invisible_and_rewritable(store_case, monkeypatch):
    spec = make_spec()
    writer, truth = _write(store_case, spec, scenes=("scene_a",))
    views = make_views(300, spec, seed=9)

    import srkd.cache.packed as packed_module
    import srkd.cache.writer as writer_module

    module, name = (writer_module, "write_entry") if store_case.schema == 2 else (packed_module, "_write_array")
    real = getattr(module, name)
    calls = []

    def crash_on_second_array(*args, **kwargs):  # a crash half way through a scene
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crash_on_second_array)
    with pytest.raises(KeyboardInterrupt):
        writer.write_scene("scene_b", views, ensemble_of(views))
    with pytest.raises(KeyboardInterrupt):  # rewriting a COMMITTED scene clears its marker first
        calls.clear()
        writer.write_scene("scene_a", views, ensemble_of(views))
    monkeypatch.setattr(module, name, real)

    assert writer.committed_scenes() == set()
    reader = CacheReader(store_case.location)
    assert reader.scene_ids == ()
    with pytest.raises(CacheMissError, match="not committed"):
        reader.gather("scene_b", 0, np.arange(3))

    writer.write_scene("scene_b", views, ensemble_of(views))
    assert writer.committed_scenes() == {"scene_b"}
    logits, _ = CacheReader(store_case.location).read_all("scene_b", 0)
    assert logits.shape == (300, spec.num_classes)
    assert softmax_kl(views[0].logits, logits).mean() < 1e-3


def test_rewrite_replaces_a_committed_scene(store_case):
    spec = make_spec(codec=CodecSpec.create("lossless"))
    writer, _ = _write(store_case, spec, scenes=("scene_a",), n=500)
    views = make_views(123, spec, seed=5)
    writer.write_scene("scene_a", views, ensemble_of(views))
    logits, _ = CacheReader(store_case.location).read_all("scene_a", 1)
    np.testing.assert_array_equal(logits, views[1].logits)


def test_stale_cache_refused_with_the_differences(store_case):
    spec = make_spec()
    _write(store_case, spec, scenes=("scene_a",))
    other = make_spec(teacher_sha256="f" * 64, views=3, codec=CodecSpec.create("int8", feature_step=1 / 32))
    for attempt in (lambda: CacheWriter.create(store_case.location, other),
                    lambda: CacheWriter.open(store_case.location, other),
                    lambda: CacheReader(store_case.location, expect=other)):  # fmt: skip
        with pytest.raises(CacheError) as info:
            attempt()
        message = str(info.value)
        assert "teacher_sha256" in message and "views: 2 != 3" in message
        assert "codec.params" in message and "--overwrite" in message
    assert CacheWriter.create(store_case.location, spec).committed_scenes() == {"scene_a"}  # resume
    fresh = CacheWriter.create(store_case.location, other, overwrite=True)
    assert fresh.committed_scenes() == set()
    assert CacheReader(store_case.location, expect=other).scene_ids == ()


def test_foreign_and_other_version_stores_refused(store_case):
    root = zarr.open_group(store_case.location, mode="w")
    root.create_array("logits", shape=(4, 2), dtype="float32")
    with pytest.raises(CacheError, match="not a srkd teacher cache"):
        CacheReader(store_case.location)
    with pytest.raises(CacheError, match="not a srkd teacher cache"):
        CacheWriter.create(store_case.location, make_spec())

    writer = CacheWriter.create(store_case.location, make_spec(), overwrite=True)
    record = dict(writer._group.attrs["srkd_cache"])
    writer._group.update_attributes({"srkd_cache": {**record, "schema_version": 99}})
    with pytest.raises(CacheError, match="schema version 99"):
        CacheReader(store_case.location)
    writer._group.update_attributes({"srkd_cache": {**record, "spec": {**record["spec"], "split": "val"}}})
    with pytest.raises(CacheError, match="fingerprint"):
        CacheReader(store_case.location)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "delete"])
def test_damaged_chunk_raises_naming_scene_and_array(store_case, damage):
    spec = make_spec()
    _write(store_case, spec, scenes=("scene_a",))
    key = "scene_a/view_1/feature_code/c"
    if damage == "delete":
        store_case.delete(key)
    else:
        good = [k for k in store_case.keys() if key in k]
        assert good, store_case.keys()
        data = b"\x00garbage" * 40 if damage == "garbage" else b"\x02\x01"
        store_case.corrupt(key, data)
    reader = CacheReader(store_case.location)
    reader.gather("scene_a", 0, np.arange(5))  # other entries still read
    with pytest.raises(CacheError, match=r"scene 'scene_a', array view_1/feature_code"):
        reader.gather("scene_a", 1, np.arange(5))


@pytest.mark.parametrize("bad", ["../x", "/", "a/b", "..", "", ".hidden", "x/../y"])
def test_unsafe_scene_id_refused(store_case, bad):
    spec = make_spec()
    writer = CacheWriter.create(store_case.location, spec, schema_version=store_case.schema)
    views = make_views(10, spec)
    with pytest.raises(CacheError, match="not a plain name"):
        writer.write_scene(bad, views, ensemble_of(views))
    with pytest.raises(CacheError, match="not a plain name"):
        CacheReader(store_case.location).gather(bad, 0, np.arange(2))


def test_bad_targets_refused_before_touching_the_store(store_case):
    spec = make_spec()
    writer, _ = _write(store_case, spec, scenes=("scene_a",), n=50)
    views = make_views(50, spec)
    nan = ViewTargets(views[0].logits.copy(), views[0].feature, {})
    nan.logits[3, 2] = np.nan
    cases = {
        "got 1 view": ([views[0]], ensemble_of(views)),
        "needs an ensemble": (views, None),
        "NaN": ([nan, views[1]], ensemble_of(views)),
        "expected \\(N, 20\\)": ([ViewTargets(views[0].logits[:, :5], views[0].feature, {}), views[1]], ensemble_of(views)),
        "expected 50": ([views[0], ViewTargets(views[1].logits[:40], views[1].feature[:40], {})], ensemble_of(views)),
        "plain JSON": ([ViewTargets(views[0].logits, views[0].feature, {"a": np.float32(1)}), views[1]], ensemble_of(views)),
    }
    for message, (vs, ens) in cases.items():
        with pytest.raises(ConfigError, match=message):
            writer.write_scene("scene_a", vs, ens)
    assert writer.committed_scenes() == {"scene_a"}  # the good scene survived every refusal


def test_empty_scene_round_trips(store_case):
    spec = make_spec()
    writer = CacheWriter.create(store_case.location, spec, schema_version=store_case.schema)
    views = make_views(0, spec)
    writer.write_scene("empty", views, ensemble_of(views))
    logits, feature = CacheReader(store_case.location).gather("empty", "ensemble", np.array([], np.int64))
    assert logits.shape == (0, 20) and feature.shape == (0, 64)
