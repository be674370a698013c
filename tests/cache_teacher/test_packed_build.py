"""Schema-3 builds: samples packed per sequence, resumed, repaired and cleaned per sequence, and
`srkd inspect-cache --migrate` from schema 2."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from srkd.cache import CacheReader
from srkd.cache.inspect import verify_scenes
from srkd.cache_teacher.build import build_cache
from srkd.cache_teacher.views import ViewSettings

from .conftest import SCENES
from .test_teacher_cache import job_for

SEQUENCE = f"seq-{SCENES[0]}"  # the three tiny scenes are three rooms: one sequence holds them


@pytest.fixture
def job(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path):
    return job_for(dataset_root, teacher_ckpt, tmp_path / "cache", views=ViewSettings(views=1, seed=7), ensemble=False)


def invoke(args: list) -> object:
    from cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_scenes_are_packed_into_one_sequence_and_a_bigger_run_extends_it(job) -> None:
    first = build_cache(job, workers=0, max_scenes=2)
    assert first.written == list(SCENES[:2])
    reader = CacheReader(job.out)
    assert reader.schema_version == 3 and reader.scene_ids == SCENES[:2]
    assert list(reader.packed.sequences) == [SEQUENCE]
    offsets = reader.root[f"{SEQUENCE}/sample_offsets"][...]
    assert offsets.tolist() == [0, reader.num_points(SCENES[0]), sum(map(reader.num_points, SCENES[:2]))]
    assert build_cache(job, workers=0, max_scenes=1).skipped == [SCENES[0]]  # a smaller run never shrinks it
    second = build_cache(job, workers=0)
    assert sorted(second.written) == list(SCENES) and CacheReader(job.out).scene_ids == SCENES
    assert build_cache(job, workers=0).skipped == list(SCENES)
    assert verify_scenes(job.out) == (None, {})


def test_a_missing_shard_is_found_and_its_sequence_rebuilt_identically(job) -> None:
    build_cache(job, workers=0)
    before = CacheReader(job.out).read_all(SCENES[1], 0)
    shard = next(p for p in sorted((job.out / SEQUENCE / "view_0").rglob("*")) if p.is_file() and "/c/" in p.as_posix())
    shard.unlink()
    _, damaged = verify_scenes(job.out)
    assert list(damaged) == [SEQUENCE] and "shard file(s) missing" in damaged[SEQUENCE][0]
    report = build_cache(job, workers=0)
    assert report.repaired == [SEQUENCE] and sorted(report.written) == list(SCENES)
    for x, y in zip(before, CacheReader(job.out).read_all(SCENES[1], 0), strict=True):
        np.testing.assert_array_equal(x, y)


def test_verify_repair_marks_a_corrupt_sequence_and_the_next_build_rebuilds_it(job, monkeypatch) -> None:
    build_cache(job, workers=0)
    shard = next(p for p in sorted((job.out / SEQUENCE).rglob("*")) if p.is_file() and "feature_code/c/" in p.as_posix())
    shard.write_bytes(b"\0" * shard.stat().st_size)  # same size, checksums fail
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    res = invoke(["inspect-cache", job.out, "--verify", "--repair"])
    assert res.exit_code == 1 and "marked 1 scene(s) for rebuilding" in res.output, res.output
    assert CacheReader(job.out).scene_ids == ()
    assert sorted(build_cache(job, workers=0).written) == list(SCENES)
    assert verify_scenes(job.out) == (None, {})


def test_leftovers_of_killed_writers_are_deleted_by_the_next_build(job) -> None:
    build_cache(job, workers=0, max_scenes=2)
    leftovers = [job.out / "zarr.0123abcd.partial", job.out / SEQUENCE / "zarr.4567ef01.partial",
                 job.out / SEQUENCE / "view_0" / "feature_code" / "c" / "0.89ab.partial"]  # fmt: skip
    for path in leftovers:
        path.write_bytes(b"{")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr's "not recognized as a component" warning included
        build_cache(job, workers=0)
        assert CacheReader(job.out).scene_ids == SCENES
    assert not any(path.exists() for path in leftovers)


def test_migrate_a_schema_2_cache_bit_identically_and_resumably(job, tmp_path: Path, monkeypatch) -> None:
    old = dataclasses.replace(job, out=tmp_path / "old", schema_version=2)
    build_cache(old, workers=0)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    new = tmp_path / "new"
    res = invoke(["inspect-cache", old.out, "--migrate", new, "--json"])
    assert res.exit_code == 0, res.output
    a, b = CacheReader(old.out), CacheReader(new)
    assert (a.schema_version, b.schema_version) == (2, 3) and a.fingerprint == b.fingerprint
    assert a.scene_ids == b.scene_ids == SCENES
    for scene in SCENES:
        assert a.data_sha256(scene) == b.data_sha256(scene) and a.view_params(scene, 0) == b.view_params(scene, 0)
        for x, y in zip(a.read_all(scene, 0), b.read_all(scene, 0), strict=True):
            assert np.array_equal(x.view(np.uint32), y.view(np.uint32))
    res = invoke(["inspect-cache", old.out, "--migrate", new, "--json"])  # resumable: nothing to do
    assert res.exit_code == 0 and "0 scene(s) written" in res.output, res.output
    summary = json.loads(res.output[res.output.index("{"):])["summary"]
    assert summary["scenes"] == len(SCENES)
    assert build_cache(dataclasses.replace(job, out=new), workers=0).skipped == list(SCENES)  # a build resumes it
