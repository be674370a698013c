"""Planning a cache build: validate the job, create (or resume) the cache root, list the work.

Runs in the process that calls `srkd.cache_teacher.build.build_cache`, under its lock, before any
scene task starts: the root metadata is written here, once (see `srkd.cache.writer`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from srkd.cache import SCHEMA_VERSION, CacheReader, CacheSpec, CacheWriter
from srkd.cache.housekeeping import clean_leftovers, drop_consolidated
from srkd.cache.packed import plan_sequences
from srkd.cache.writer import refuse_foreign_dir
from srkd.cache_teacher.config import CacheJob
from srkd.cache_teacher.views import make_spec
from srkd.cache_teacher.worker import (
    WORKERS,
    open_split,
    teacher_key,
    with_dataset_defaults,
)
from srkd.data.registry import get_dataset_spec
from srkd.device import resolve_device
from srkd.errors import ConfigError
from srkd.models.teacher import load_teacher


class Plan(NamedTuple):
    """What a build will do: `todo` = the build tasks, (sequence, its scene ids) (schema 3: the
    samples of one sequence; schema 2: one scene each), new ones and `repaired` ones (committed
    but incomplete, keyed by sequence or scene); `skipped` = scenes of complete committed ones."""

    job: CacheJob
    spec: CacheSpec
    todo: list[tuple[str, list[str]]]
    skipped: list[str]
    repaired: dict[str, list[str]]


def plan_cache(job: CacheJob, overwrite: bool = False, max_scenes: int | None = None) -> Plan:
    """Validate everything, create (or resume) the cache root, and list the work.

    Loads the teacher once on the CPU of this process (clear errors before any worker starts).
    Returns a Plan (its job with absolute paths). Committed scenes that are incomplete are
    recomputed, not skipped. Call it inside `build_cache`'s lock when other builds may run.
    Raises: ConfigError/DataError/CheckpointError for bad inputs; CacheError for a foreign or
    stale cache at `job.out` (listing what differs) unless `overwrite`.
    """
    dataset = get_dataset_spec(job.dataset)
    job = with_dataset_defaults(_absolute(job), dataset)
    scenes = list(open_split(job.dataset, job.data_root, job.split).scene_ids)
    if max_scenes is not None:
        if max_scenes < 1:
            raise ConfigError(f"--max-scenes must be >= 1, got {max_scenes}")
        scenes = scenes[:max_scenes]
    model, info = load_teacher(job.teacher, dataset, "cpu")
    if resolve_device(job.device).type == "cpu":  # reuse it for in-process scene tasks
        WORKERS.get().adopt_teacher(teacher_key(job, info.sha256, "cpu"), model, info)
    spec = make_spec(dataset, job.data_root, job.split, info, job.views, job.codec, job.grid_size, job.ensemble)
    refuse_foreign_dir(job.out, f"--out {job.out}")
    writer = CacheWriter.create(job.out, spec, overwrite=overwrite, schema_version=job.schema_version or SCHEMA_VERSION)
    spec = writer.spec  # as the cache records it (a cache of srkd 0.1 leaves color_norm unstated)
    clean_leftovers(job.out)  # under the build's lock: no writer runs
    if writer.packed:
        drop_consolidated(job.out)  # rewritten when this build completes
        todo, skipped, damaged = _plan_sequences(writer, scenes, job.sequence_samples)
    else:
        committed = writer.committed_scenes()
        damaged = writer.damaged_scenes([s for s in scenes if s in committed])
        todo = [(s, [s]) for s in scenes if s not in committed or s in damaged]
        skipped = [s for s in scenes if s in committed and s not in damaged]
    if todo:  # before any teacher work: an old-schema cache can be complete, not extended
        writer.check_extendable()
    _check_resumed_data(job, dataset, skipped)
    return Plan(job, spec, todo, skipped, damaged)


def _plan_sequences(writer: CacheWriter, scenes: list[str], max_samples: int) -> tuple[
    list[tuple[str, list[str]]], list[str], dict
]:  # fmt: skip
    """Schema 3: (tasks, skipped scenes, damaged sequences). A planned sequence is done when a
    committed, complete sequence of its name holds all its samples (a smaller --max-scenes run
    never shrinks a bigger one). Committed sequences of another name that hold planned samples
    (the split was re-planned) are removed first, so no sample is committed twice."""
    planned = plan_sequences(scenes, max_samples)
    committed = writer.committed_sequences()
    wanted = set(scenes)
    stale = [name for name, samples in committed.items() if name not in planned and wanted & set(samples)]
    writer.remove_sequences(stale)
    damaged = writer.damaged_sequences([name for name in planned if name in committed])
    todo, skipped = [], []
    for name, samples in planned.items():
        if name in committed and name not in damaged and set(samples) <= set(committed[name]):
            skipped.extend(samples)
        else:
            todo.append((name, samples))
    return todo, skipped, damaged


def _check_resumed_data(job: CacheJob, dataset, committed: list[str]) -> None:  # type: ignore[no-untyped-def]
    """A resumed build must read the data its committed scenes were built from (the data root
    may have moved; its content may not): a sample of them is checked as distill checks it."""
    if committed:
        from srkd.cache.matching import check_cache_data

        scenes = open_split(dataset.name, job.data_root, job.split)
        check_cache_data(CacheReader(job.out, cache_bytes=0), scenes, committed)


def _absolute(job: CacheJob) -> CacheJob:
    teacher = replace(job.teacher, checkpoint=Path(job.teacher.checkpoint).expanduser().resolve())
    return replace(
        job, data_root=Path(job.data_root).expanduser().resolve(), out=Path(job.out).expanduser().resolve(),
        teacher=teacher,
    )  # fmt: skip
