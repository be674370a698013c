"""Building a teacher cache: plan (root metadata, resume), then one task per scene, in-process or
on dask.distributed workers.

    plan.py    validate the job, create or resume the cache root, list the scenes to compute
    worker.py  the per-process side: a SceneWorker (teacher + write-behind thread) per process,
               and the task functions `cache_sequence` / `flush_writes` that run on it
    build.py   `build_cache`: the lock, the plan, the tasks (here or on dask), the report

Concurrency contract (see `srkd.cache.writer`): the root metadata is written once, by the process
that calls `build_cache`, before any task starts; every task then computes AND writes one whole
sequence (schema 3: the samples of a recording, `srkd.cache.packed.plan_sequences`; schema 2:
one scene) into its own group, each array as one shard, so no two writers ever touch one chunk or
shard. On dask the last write of each worker is awaited by a final flush task. A sequence whose
write never finished (a lost worker, a kill) stays uncommitted and is redone by the next run; a
committed one that is incomplete (an array or shard missing) is redone too; the temporary files
killed writers left are deleted when the next build plans.

One build per cache: `build_cache` holds an OS lock on the cache directory (srkd.locking) from
planning to the last commit, so a second `srkd cache-teacher` on the same --out is refused with one
line instead of racing the first (the lock dies with its process, so a killed build never blocks
a re-run). Each scene records the content hash of the data its teacher saw (`data_sha256`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from srkd.cache import CacheSpec, CacheWriter
from srkd.cache_teacher.config import CacheJob
from srkd.cache_teacher.plan import plan_cache
from srkd.cache_teacher.worker import SceneDone, cache_sequence, flush_writes
from srkd.errors import CacheError, ConfigError
from srkd.locking import locked_dir


@dataclass
class BuildReport:
    """What `build_cache` did. `written` and `skipped` are scene ids (skipped = already committed
    and complete); `repaired` = committed scenes found incomplete and written again."""

    out: Path
    fingerprint: str
    spec: CacheSpec
    total: int
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    points_written: int = 0
    seconds: float = 0.0
    workers: int = 0


def build_cache(
    job: CacheJob,
    *,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    max_scenes: int | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_scene: Callable[[SceneDone], None] | None = None,
) -> BuildReport:
    """Build (or resume) the teacher cache described by `job`.

    Args:
        workers: 0 = in this process (no dask); K >= 1 = a dask LocalCluster of K single-threaded
            worker processes, unless `scheduler` is given.
        scheduler: address of a running dask scheduler (e.g. "tcp://host:8786"); its workers must
            see `job`'s paths.
        max_scenes: only the first N scenes of the split (sorted ids).
        on_start: called once with (scenes to compute, scenes already committed).
        on_scene: called in this process each time a scene is committed.
    Returns:
        BuildReport. Raises CacheError if a scene task finished but its scene is not committed.
    """
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    with locked_dir(Path(job.out).expanduser().resolve(), "teacher cache", CacheError):
        return _build_locked(job, overwrite, workers, scheduler, max_scenes, on_start, on_scene)


def _build_locked(
    job: CacheJob, overwrite: bool, workers: int, scheduler: str | None, max_scenes: int | None,
    on_start: Callable[[int, int], None] | None, on_scene: Callable[[SceneDone], None] | None,
) -> BuildReport:  # fmt: skip
    start = time.perf_counter()
    job, spec, todo, skipped, repaired = plan_cache(job, overwrite, max_scenes)
    scenes_todo = [s for _, samples in todo for s in samples]
    report = BuildReport(job.out, spec.fingerprint(), spec, len(scenes_todo) + len(skipped), skipped=skipped,
                         repaired=sorted(repaired))  # fmt: skip
    if on_start:
        on_start(len(scenes_todo), len(skipped))

    def done(events: list[SceneDone]) -> None:
        for event in events:
            report.written.append(event.scene_id)
            report.points_written += event.points
            if on_scene:
                on_scene(event)

    build = uuid.uuid4().hex[:8]  # this build's token: its tasks' keys, its write events
    if todo and workers == 0 and scheduler is None:
        report.workers = 0
        try:
            for sequence, scene_ids in todo:
                done(cache_sequence(job, spec, sequence, scene_ids, build))
        except BaseException:
            try:  # keep (commit) the previous scene's write, then report the first error
                flush_writes(build)
            except Exception:
                pass
            raise
        done(flush_writes(build))
    elif todo:
        report.workers = _run_dask(job, spec, todo, workers, scheduler, done, build)
    writer = CacheWriter.open(job.out, spec)
    missing = set(scenes_todo) - writer.committed_scenes()
    if missing:
        raise CacheError(
            f"{len(missing)} scene(s) were computed but are not committed (e.g. {sorted(missing)[:3]}): "
            "a worker was lost before its last write; re-run the same command to finish them"
        )

    report.seconds = time.perf_counter() - start
    return report


def _run_dask(
    job: CacheJob, spec: CacheSpec, todo: list[tuple[str, list[str]]], workers: int, scheduler: str | None,
    done: Callable[[list[SceneDone]], None], token: str,
) -> int:  # fmt: skip
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        if workers < 1:
            raise ConfigError("--workers 0 runs in-process and cannot be combined with a dask cluster")
        if job.torch_threads is None:  # K teacher processes share the machine's cores
            job = replace(job, torch_threads=max(1, (os.cpu_count() or 1) // workers))
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR, scheduler_port=0,
        )  # fmt: skip
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the dask scheduler at {scheduler!r}: {exc}") from None
    try:
        n_workers = len(client.scheduler_info()["workers"])
        futures = [
            client.submit(cache_sequence, job, spec, seq, samples, token, key=f"srkd-cache-{seq}-{token}", pure=False)
            for seq, samples in todo
        ]
        error: BaseException | None = None
        try:
            for fut in as_completed(futures):
                done(fut.result())
        except BaseException as exc:
            client.cancel(futures)
            error = exc
        # Commit each worker's last scene, also after an error elsewhere (then best effort).
        flushes = [
            client.submit(flush_writes, token, key=f"srkd-cache-flush-{i}-{token}", workers=[addr],
                          allow_other_workers=False, pure=False)
            for i, addr in enumerate(client.scheduler_info()["workers"])
        ]  # fmt: skip
        for fut in flushes:
            try:
                done(fut.result())
            except Exception:
                if error is None:
                    raise
        if error is not None:
            raise error
        return n_workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
