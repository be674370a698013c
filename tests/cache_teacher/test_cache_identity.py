"""A cache that knows its data by content, one build per cache, and damaged scenes rebuilt."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from srkd.cache import CacheReader, CacheWriter
from srkd.cache.inspect import verify
from srkd.cache.schema import ROOT_KEY
from srkd.cache_teacher.build import build_cache
from srkd.cache_teacher.views import ViewSettings
from srkd.data.scannet import get_dataset_spec, load_scene
from srkd.errors import CacheError
from srkd.locking import locked_dir
from tests.conftest import WIDE

from .conftest import SCENES, make_dataset
from .test_teacher_cache import job_for

DATASET = get_dataset_spec("scannet")


@pytest.fixture
def fresh(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path):
    """A 1-view int8 schema-2 cache (a group per scene) of the tiny scenes, built in-process in
    this test's folder."""
    job = job_for(dataset_root, teacher_ckpt, tmp_path / "cache", views=ViewSettings(views=1, seed=7), ensemble=False)
    job = dataclasses.replace(job, schema_version=2)
    build_cache(job, workers=0)
    return job


def test_each_scene_records_the_content_hash_of_its_data(fresh) -> None:
    reader = CacheReader(fresh.out)
    assert reader.schema_version == 2
    for scene in SCENES:
        pc = load_scene(fresh.data_root, "train", scene, DATASET)
        assert reader.data_sha256(scene) == pc.content_sha256()
        reader.check_scene_data(scene, pc.content_sha256())  # passes
    with pytest.raises(CacheError, match="is not the data the teacher cache"):
        reader.check_scene_data(SCENES[0], "0" * 64, "/other/root")


def test_same_data_at_another_path_resumes_other_data_does_not_match(fresh, tmp_path: Path) -> None:
    moved = shutil.copytree(fresh.data_root, tmp_path / "moved")
    report = build_cache(job_for(moved, fresh.teacher.checkpoint, fresh.out, views=fresh.views, ensemble=False),
                         workers=0)  # fmt: skip
    assert report.skipped == list(SCENES) and not report.written  # nothing recomputed
    other = make_dataset(tmp_path / "other", seed=99)  # same scene names and sizes, other values
    with pytest.raises(CacheError, match="is not the data the teacher cache"):  # never mixed into it
        build_cache(job_for(other, fresh.teacher.checkpoint, fresh.out, views=fresh.views, ensemble=False),
                    workers=0)  # fmt: skip
    reader = CacheReader(fresh.out)
    pc = load_scene(other, "train", SCENES[0], DATASET)
    assert pc.num_points == reader.num_points(SCENES[0])
    with pytest.raises(CacheError, match=SCENES[0]):
        reader.check_scene_data(SCENES[0], pc.content_sha256(), str(other))


def test_a_committed_scene_missing_an_array_is_rebuilt(fresh) -> None:
    before = CacheReader(fresh.out).read_all(SCENES[1], 0)
    victim = next(p for p in (fresh.out / SCENES[1] / "view_0").iterdir() if p.is_dir())
    shutil.rmtree(victim)  # e.g. what two racing writers left behind: committed, array gone
    assert any("missing" in p or "cannot be read" in p for p in verify(fresh.out))
    report = build_cache(fresh, workers=0)
    assert report.repaired == [SCENES[1]] and report.written == [SCENES[1]]
    assert verify(fresh.out) == []
    after = CacheReader(fresh.out).read_all(SCENES[1], 0)
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)


def test_verify_repair_marks_chunk_damage_for_rebuilding(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import app

    chunk = next(p for p in sorted((fresh.out / SCENES[2]).rglob("*")) if p.is_file() and "/c/" in p.as_posix())
    chunk.write_bytes(b"\0" * max(8, chunk.stat().st_size))  # same size, checksum fails
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    res = CliRunner().invoke(app, ["inspect-cache", str(fresh.out), "--verify", "--repair"])
    assert res.exit_code == 1 and "marked 1 scene(s) for rebuilding" in res.output, res.output
    assert SCENES[2] not in CacheReader(fresh.out).scene_ids
    report = build_cache(fresh, workers=0)
    assert report.written == [SCENES[2]] and verify(fresh.out) == []
    res = CliRunner().invoke(app, ["inspect-cache", str(fresh.out), "--repair"])
    assert res.exit_code == 1 and "--repair needs --verify" in res.output


def test_write_scene_does_not_commit_a_scene_with_a_missing_array(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    import srkd.cache.writer as writer_module

    reader = CacheReader(fresh.out)
    views = [reader.read_all(SCENES[0], 0)]
    from srkd.cache import ViewTargets

    targets = [ViewTargets(views[0][0], views[0][1], reader.view_params(SCENES[0], 0))]
    real = writer_module.write_entry

    def drops_an_array(group, entry, codec, encoded):  # type: ignore[no-untyped-def]
        first = next(iter(encoded.point))  # as if a racing writer deleted it
        real(group, entry, codec, dataclasses.replace(encoded, point={k: v for k, v in encoded.point.items() if k != first}))

    monkeypatch.setattr(writer_module, "write_entry", drops_an_array)
    writer = CacheWriter.open(fresh.out, reader.spec)
    with pytest.raises(CacheError, match="was not committed"):
        writer.write_scene(SCENES[0], targets, None, reader.data_sha256(SCENES[0]))
    assert SCENES[0] not in CacheReader(fresh.out).scene_ids  # absent, to be rebuilt


def test_schema_1_caches_are_read_but_not_extended(fresh) -> None:
    group = zarr.open_group(str(fresh.out), mode="r+", use_consolidated=False)
    record = dict(group.attrs[ROOT_KEY])
    spec = CacheReader(fresh.out).spec
    group.update_attributes({ROOT_KEY: {**record, "schema_version": 1, "fingerprint": spec.fingerprint(1)}})
    for scene in SCENES:  # srkd 0.1 recorded no content hash
        attrs = dict(group[scene].attrs)
        del attrs["data_sha256"]
        group[scene].attrs.put(attrs)
    reader = CacheReader(fresh.out)
    assert reader.schema_version == 1 and reader.scene_ids == SCENES
    assert reader.data_sha256(SCENES[0]) is None
    reader.check_scene_data(SCENES[0], "f" * 64)  # unverifiable: accepted (point counts still checked)
    assert build_cache(fresh, workers=0).skipped == list(SCENES)  # complete: used as it is
    shutil.rmtree(fresh.out / SCENES[0])
    with pytest.raises(CacheError, match="older srkd"):  # but not extended
        build_cache(fresh, workers=0)
    with pytest.raises(CacheError, match="older srkd"):
        CacheWriter.open(fresh.out, spec).write_scene(SCENES[0], [], None)


def test_a_second_build_of_one_cache_is_refused_while_the_first_holds_it(fresh) -> None:
    held = locked_dir(fresh.out, "teacher cache", CacheError)  # as a running build holds it
    with held, pytest.raises(CacheError, match=r"being written \(or read\) by another srkd process"):
        build_cache(fresh, workers=0)
    assert build_cache(fresh, workers=0).skipped == list(SCENES)  # released with its holder


def test_locked_dir_removes_a_folder_it_created_when_left_empty(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    with locked_dir(target, "run folder", CacheError):
        assert target.is_dir()
    assert not target.exists()
    with locked_dir(target, "run folder", CacheError):
        (target / "kept").write_text("x")
    assert (target / "kept").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="is a file"), locked_dir(tmp_path / "file", "run folder", CacheError):
        pass


def test_evaluate_refuses_a_cache_built_from_other_data(fresh, tmp_path: Path) -> None:
    from srkd.data.scannet import ScanNetScenes
    from srkd.evaluate.run import evaluate_models

    other = make_dataset(tmp_path / "other", seed=98)
    scenes = ScanNetScenes(other, "train", DATASET)
    with pytest.raises(CacheError, match="is not the data the teacher cache"):
        evaluate_models(scenes, [], cache=CacheReader(fresh.out), tta=False, latency_runs=0)


def test_a_refused_lock_never_removes_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    real_exists = Path.exists
    with locked_dir(target, "teacher cache", CacheError), pytest.MonkeyPatch.context() as mp:
        # a second caller that found no folder (it raced the holder to create it) is refused
        mp.setattr(Path, "exists", lambda self: False if self == target else real_exists(self))
        with pytest.raises(CacheError, match="by another srkd process"), locked_dir(target, "teacher cache", CacheError):
            pass
        assert target.is_dir()  # still there for its holder


def test_readers_hold_a_shared_lock_that_writers_respect(fresh) -> None:
    with (locked_dir(fresh.out, "teacher cache", CacheError, shared=True),
          locked_dir(fresh.out, "teacher cache", CacheError, shared=True),  # readers share
          pytest.raises(CacheError, match=r"being written \(or read\)")):
        build_cache(dataclasses.replace(fresh), workers=0, overwrite=True)
    assert CacheReader(fresh.out).scene_ids == SCENES  # untouched


def test_cli_read_only_out_is_one_clear_error(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores chmod, so the store's first write fails as a read-only folder makes it."""
    import errno

    from cli import app

    real = zarr.open_group

    def read_only(store, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("mode") in ("a", "w"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(store, *args, **kwargs)

    monkeypatch.setattr(zarr, "open_group", read_only)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    out = tmp_path / "ro"
    res = CliRunner().invoke(app, ["cache-teacher", "--teacher", str(teacher_ckpt), "--data-root", str(dataset_root),
                                   "--out", str(out), "--workers", "0", "--device", "cpu", "--max-scenes", "1"],
                             env=WIDE)  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"cannot write the teacher cache at {out} (Permission denied)" in res.output, res.output
    assert not out.exists()  # the folder the command created is removed again
