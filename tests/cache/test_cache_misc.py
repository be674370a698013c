"""Cache pieces outside the store conformance suite: spec/fingerprint, codecs, concurrency,
inspection, the `srkd inspect-cache` command, and the no-torch rule."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr

from srkd.cache import (
    CacheReader,
    CacheSpec,
    CacheWriter,
    CodecSpec,
    ensemble_of,
    measure_codec,
)
from srkd.cache.codecs import softmax_kl
from srkd.cache.inspect import summarize, verify
from srkd.errors import CacheError, ConfigError
from srkd.scoring import teacher_miou
from tests.cache.conftest import make_spec, make_views, teacher_like


def test_fingerprint_is_stable_and_covers_every_setting():
    spec = make_spec()
    assert spec.fingerprint() == make_spec().fingerprint()
    assert CacheSpec.from_json(spec.to_json()) == spec
    changes = {
        "dataset": "scannet", "split": "val",
        "class_names": tuple(f"c{i}" for i in range(20)), "teacher_name": "other",
        "teacher_args": {"channels": [8, 32], "depth": 2}, "teacher_sha256": "1" * 64,
        "feature_dim": 32, "codec": CodecSpec.create("float16"), "views": 1, "ensemble": False,
        "view_settings": {"augment": ["rotate_z"], "seeds": [1, 2]}, "grid_size": 0.05,
        "color_norm": "pointcept",
    }  # fmt: skip
    for field, value in changes.items():
        other = make_spec(**{field: value})
        assert other.fingerprint() != spec.fingerprint(), field
        diff = spec.diff(other)
        assert diff and all(line.startswith(field) for line in diff), (field, diff)
    assert spec.diff(make_spec(teacher_args={"channels": [8, 16], "depth": 3})) == ["teacher_args.depth: 2 != 3"]


def test_the_data_root_is_a_hint_not_part_of_the_identity():
    # the same data at another path (a copied project, a cluster mount) is the same cache; the
    # data itself is identified per scene by its content hash (data_sha256)
    spec, moved = make_spec(), make_spec(data_root="/mnt/elsewhere")
    assert moved.fingerprint() == spec.fingerprint() and spec.diff(moved) == []
    assert moved.to_json()["data_root"] == "/mnt/elsewhere"  # still recorded, as a hint
    # schema 1 (srkd 0.1) caches hashed the root too: their stored fingerprints stay verifiable
    assert moved.fingerprint(schema_version=1) != spec.fingerprint(schema_version=1)


def test_caches_without_a_recorded_colour_normalisation_keep_their_fingerprint():
    # caches of srkd 0.1 store no color_norm (their teacher saw color / 127.5 - 1): the spec read
    # back from them must hash to the fingerprint they were written with
    old = make_spec()
    stored = old.to_json()
    assert "color_norm" not in stored and old.teacher_color_norm == "legacy"
    assert CacheSpec.from_json(stored).fingerprint() == old.fingerprint()
    new = make_spec(color_norm="legacy")
    assert new.teacher_color_norm == "legacy" and new.fingerprint() != old.fingerprint()
    with pytest.raises(ConfigError, match="unknown colour normalisation"):
        make_spec(color_norm="rgb")
    # a "legacy" request resumes such a cache (it is what its teacher saw); "pointcept" does not
    from srkd.cache.schema import as_recorded

    assert as_recorded(new, old).fingerprint() == old.fingerprint()
    assert as_recorded(make_spec(color_norm="pointcept"), old).fingerprint() != old.fingerprint()


def test_spec_and_codec_values_validated():
    with pytest.raises(ConfigError, match="plain JSON"):
        make_spec(view_settings={"seed": np.int64(3)})
    with pytest.raises(ConfigError, match="unknown cache codec"):
        CodecSpec.create("jpeg")
    with pytest.raises(ConfigError, match="no parameter"):
        CodecSpec.create("float16", feature_step=0.1)
    with pytest.raises(ConfigError, match="feature_step"):
        CodecSpec.create("int8", feature_step=0.001)
    with pytest.raises(ConfigError, match="logit_levels"):
        CodecSpec.create("int8", logit_levels=300)
    spec = CodecSpec.create("int8", feature_step=np.float64(1 / 32))
    assert type(spec.options["feature_step"]) is float  # zarr attrs need Python floats
    assert str(spec) == "int8(clevel=5, feature_step=0.03125, logit_levels=127, logit_range=24.0, rotate=False)"


def test_ensemble_is_the_mean_probability():
    spec = make_spec(views=3)
    views = make_views(200, spec, seed=3)
    ens = ensemble_of(views)

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    mean_p = np.mean([softmax(v.logits.astype(np.float64)) for v in views], axis=0)
    np.testing.assert_allclose(softmax(ens.logits.astype(np.float64)), mean_p, atol=1e-6)
    np.testing.assert_allclose(ens.feature, np.mean([v.feature for v in views], axis=0), rtol=1e-5, atol=1e-6)
    extreme = [views[0]._replace(logits=np.array([[0.0, -200.0]], np.float32), feature=np.zeros((1, 64), np.float32))]
    assert np.isfinite(ensemble_of(extreme).logits).all()


def test_measure_codec_default_meets_the_error_targets(rng):
    logits, feature = teacher_like(20000, rng)
    result = measure_codec(CodecSpec.create("int8"), logits, feature, rng=rng)
    assert result["kl_mean"] <= 1e-3 and result["affinity_mae"] <= 0.01
    exact = measure_codec(CodecSpec.create("lossless"), logits, feature)
    assert exact["kl_mean"] == 0 and exact["affinity_mae"] == 0
    # quantised codes must actually be smaller on disk than the float32 originals
    assert result["bytes_per_point"] < exact["bytes_per_point"] / 3


def _write_scenes(path: str, scenes: list[str]) -> None:
    spec = make_spec()
    writer = CacheWriter.open(path, spec)
    for i, scene in enumerate(scenes):
        views = make_views(2000 + i, spec, seed=zlib.crc32(scene.encode()))
        writer.write_scene(scene, views, ensemble_of(views))


def test_two_processes_writing_different_scenes_lose_nothing(tmp_path):
    path = str(tmp_path / "cache")
    CacheWriter.create(path, make_spec(), schema_version=2)  # root written once, by this process
    jobs = [[f"w0_s{i}" for i in range(4)], [f"w1_s{i}" for i in range(4)]]
    ctx = multiprocessing.get_context("spawn")  # zarr runs an event-loop thread: do not fork it
    procs = [ctx.Process(target=_write_scenes, args=(path, job)) for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert verify(path) == []
    reader = CacheReader(path, expect=make_spec())
    assert set(reader.scene_ids) == {s for job in jobs for s in job}
    for scene in reader.scene_ids:
        views = make_views(2000 + int(scene[-1]), make_spec(), seed=zlib.crc32(scene.encode()))
        logits, _ = reader.read_all(scene, 0)
        assert softmax_kl(views[0].logits, logits).mean() < 1e-3


def test_reader_pickles_by_location(tmp_path):
    spec = make_spec()
    views = make_views(100, spec)
    CacheWriter.create(tmp_path, spec, schema_version=2).write_scene("s", views, ensemble_of(views))
    reader = pickle.loads(pickle.dumps(CacheReader(tmp_path, expect=spec)))
    assert reader.scene_ids == ("s",) and reader.gather("s", 1, np.arange(4))[0].shape == (4, 20)


def test_missing_or_file_location(tmp_path):
    with pytest.raises(CacheError, match="no teacher cache"):
        CacheReader(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="is a file"):
        CacheWriter.create(tmp_path / "file", make_spec(), schema_version=2)


def _built(tmp_path: Path, codec: str = "lossless") -> tuple[Path, dict[str, list]]:
    spec = make_spec(codec=CodecSpec.create(codec))
    writer = CacheWriter.create(tmp_path / "cache", spec, schema_version=2)
    truth = {}
    for i, scene in enumerate(["s0", "s1", "s2"]):
        views = make_views(400 + 10 * i, spec, seed=i)
        writer.write_scene(scene, views, ensemble_of(views))
        truth[scene] = views
    return tmp_path / "cache", truth


def test_summarize_verify_and_teacher_miou(tmp_path):
    path, truth = _built(tmp_path)
    summary = summarize(path)
    assert summary["scenes"] == 3 and summary["points"] == 400 + 410 + 420
    assert summary["entries_per_scene"] == 3 and summary["uncommitted"] == []
    assert 0 < summary["bytes_per_point"] < 4 * (20 + 64) * 1.2  # lossless float32 + overhead
    assert verify(path) == []

    # labels = argmax of view 0's exact logits, with some points ignored -> view 0 scores 100%
    labels = {s: v[0].logits.argmax(1) for s, v in truth.items()}
    labels["s1"][:50] = -1
    perfect = teacher_miou(path, labels.__getitem__, 20, view=0, num_workers=2)
    assert perfect["scenes"] == 3 and perfect["miou"] == pytest.approx(1.0)
    from srkd.metrics import SegmentationScores, confusion_matrix

    ens = teacher_miou(path, labels.__getitem__, 20)
    assert ens["view"] == "ensemble"
    cm = sum(confusion_matrix(ensemble_of(v).logits.argmax(1), labels[s], 20) for s, v in truth.items())
    assert ens["miou"] == pytest.approx(SegmentationScores.from_confusion(cm).miou)
    with pytest.raises(CacheError, match="other data"):
        teacher_miou(path, lambda s: np.zeros(3, np.int64), 20)


def test_verify_reports_uncommitted_and_damaged_scenes(tmp_path):
    path, _ = _built(tmp_path, codec="int8")
    zarr.open_group(path / "s1", mode="r+").update_attributes({"committed": False})
    chunk = next((path / "s2" / "ensemble" / "logits_code").rglob("c/*/*"))
    chunk.write_bytes(chunk.read_bytes()[:10])
    problems = verify(path)
    assert len(problems) == 2, problems
    assert "'s1' is not committed" in problems[0]
    assert "scene 's2', array ensemble/logits_code" in problems[1]
    assert summarize(path)["uncommitted"] == ["s1"]
    assert verify(tmp_path / "nothing")[0].startswith("no teacher cache")


def test_inspect_cache_command(tmp_path):
    from typer.testing import CliRunner

    from cli import app
    from srkd.data.scannet.classes import SCANNET20_CLASSES
    from srkd.data.scannet.layout import write_scene

    # a labelled dataset the cache claims to come from, so --verify can score the teacher
    spec = make_spec(
        dataset="scannet", data_root=str(tmp_path / "data"), class_names=SCANNET20_CLASSES,
        codec=CodecSpec.create("lossless"),  # exact logits: the labels below score exactly 100%
    )
    writer = CacheWriter.create(tmp_path / "cache", spec, schema_version=2)
    rng = np.random.default_rng(1)
    for scene in ("scene0000_00", "scene0001_00"):
        views = make_views(300, spec, seed=int(scene[5:9]))
        writer.write_scene(scene, views, ensemble_of(views))
        n = 300
        write_scene(tmp_path / "data", "train", scene, {
            "coord": rng.uniform(0, 3, (n, 3)).astype(np.float32),
            "color": rng.integers(0, 255, (n, 3)).astype(np.uint8),
            "normal": np.tile(np.array([0, 0, 1], np.float32), (n, 1)),
            "segment20": ensemble_of(views).logits.argmax(1).astype(np.int64),
        })  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["inspect-cache", str(tmp_path / "cache"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "scenes (committed)" in result.output and "mIoU 100.00" in result.output

    chunk = next((tmp_path / "cache" / "scene0001_00" / "view_0" / "feature").rglob("c/*/*"))
    chunk.write_bytes(b"not a chunk")
    result = runner.invoke(app, ["inspect-cache", str(tmp_path / "cache"), "--verify"])
    assert result.exit_code == 1 and "view_0/feature" in result.output
    result = runner.invoke(app, ["inspect-cache", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no teacher cache" in result.output


def test_cache_package_never_imports_torch():
    code = (
        "import sys, srkd.cache, srkd.cache.inspect, srkd.cache.writer, srkd.cache.reader;"
        "assert 'torch' not in sys.modules, 'srkd.cache imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_a_torn_scene_document_hides_that_scene_only(tmp_path: Path) -> None:
    # zarr's own group listing reads every child's zarr.json and raises on a torn one: the
    # committed-scene listing must still return the other scenes (and the reader open)
    spec = make_spec(views=1, ensemble=False)
    writer = CacheWriter.create(tmp_path / "cache", spec, schema_version=2)
    for i in range(3):
        writer.write_scene(f"s{i}", make_views(30, spec, seed=i)[:1])
    (tmp_path / "cache" / "s1" / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    assert CacheReader(tmp_path / "cache").scene_ids == ("s0", "s2")
    assert writer.committed_scenes() == {"s0", "s2"}


@pytest.mark.parametrize("overwrite", [False, True])
def test_creating_a_cache_never_deletes_a_folder_that_is_not_one(tmp_path: Path, overwrite: bool) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("precious")
    (tmp_path / "sub" / "data.bin").write_bytes(b"\1\2")
    with pytest.raises(CacheError, match="non-empty directory that is not a teacher cache"):
        CacheWriter.create(tmp_path, make_spec(), overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "precious" and (tmp_path / "sub" / "data.bin").is_file()
    assert not (tmp_path / "zarr.json").exists()
