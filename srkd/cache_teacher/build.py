"""Building a teacher cache: plan (root metadata, resume), then one task per scene, in-process or
on dask.distributed workers.

Concurrency contract (see `srkd.cache.writer`): the root metadata is written once, by the process
that calls `build_cache`, before any scene task starts; every task then computes AND writes one
whole scene into its own group, so no two writers ever touch one chunk.

Write-behind: in each process, a scene's encoding and writing run on one background thread while
the teacher computes the next scene (at most one write pending, so at most two scenes' targets are
in memory). A task hands its scene to that thread and waits only for the PREVIOUS scene's write;
on dask the last write of each worker is awaited by a final flush task. Progress events are
emitted when a scene is committed, so "done" always means "on disk". A scene whose write never
finished (a lost worker, a kill) stays uncommitted and is redone by the next run; a committed scene
that is incomplete (an array or chunk missing) is redone too.

One build per cache: `build_cache` holds an OS lock on the cache directory (srkd.locking) from
planning to the last commit, so a second `srkd cache-teacher` on the same --out is refused with one
line instead of racing the first (the lock dies with its process, so a killed build never blocks
a re-run). Each scene records the content hash of the data its teacher saw (`data_sha256`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from srkd.cache import CacheReader, CacheSpec, CacheWriter, ViewTargets
from srkd.cache_teacher.config import CacheJob
from srkd.cache_teacher.views import make_spec, scene_targets
from srkd.data.scannet import get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.device import resolve_device
from srkd.errors import CacheError, ConfigError, SrkdError
from srkd.locking import locked_dir
from srkd.models.teacher import TeacherInfo, load_teacher


@dataclass(frozen=True)
class SceneDone:
    """Progress event: scene `scene_id` (`points` original points) is committed; `seconds` is the
    time its teacher forwards and target computation took."""

    scene_id: str
    points: int
    seconds: float


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


# ---- per-process state (one teacher, one write-behind thread per process) ---------------------

_LOCK = threading.Lock()
_TEACHERS: dict[tuple[str, ...], tuple[nn.Module, TeacherInfo]] = {}
_BEHIND: dict[int, WriteBehind] = {}


def _worker_device(job: CacheJob) -> torch.device:
    device = resolve_device(job.device)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        try:  # local dask workers are named 0..K-1: spread them over the GPUs
            from distributed import get_worker

            name = get_worker().name
            if isinstance(name, int):
                device = torch.device("cuda", name % torch.cuda.device_count())
        except (ImportError, ValueError):
            pass
    return device


def _teacher_key(job: CacheJob, sha256: str, device: torch.device | str) -> tuple[str, ...]:
    ref = job.teacher
    return (str(ref.checkpoint), str(ref.pointcept_model), repr(sorted(ref.model_args.items())),
            str(ref.color_norm), sha256, str(device))  # fmt: skip


def process_teacher(job: CacheJob, sha256: str) -> tuple[nn.Module, TeacherInfo]:
    """The frozen teacher of this process, loaded once per (checkpoint, sha256, device)."""
    device = _worker_device(job)
    key = _teacher_key(job, sha256, device)
    with _LOCK:
        if key not in _TEACHERS:
            if job.torch_threads:
                torch.set_num_threads(int(job.torch_threads))
            model, info = load_teacher(job.teacher, get_dataset_spec(job.dataset), device)
            if info.sha256 != sha256:
                raise CacheError(
                    f"teacher checkpoint {job.teacher.checkpoint} changed while the cache was being "
                    f"built (sha256 {info.sha256[:12]} != {sha256[:12]}); re-run to start over"
                )
            _TEACHERS.clear()  # one teacher per process
            _TEACHERS[key] = (model, info)
        return _TEACHERS[key]


class WriteBehind:
    """One background thread writing scenes while the caller computes the next one."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="srkd-cache-write")
        self._pending: tuple[Future, SceneDone] | None = None

    def put(self, write: Callable[[], None], event: SceneDone) -> list[SceneDone]:
        """Wait for the previous write (re-raising its error), start `write`; returns the events
        of the writes that completed."""
        done = self.drain()
        self._pending = (self._pool.submit(_named_write, write, event.scene_id), event)
        return done

    def drain(self) -> list[SceneDone]:
        """Wait for the pending write; its event as a list (empty if none was pending)."""
        if self._pending is None:
            return []
        fut, event = self._pending
        self._pending = None
        fut.result()
        return [event]


def _named_write(write: Callable[[], None], scene_id: str) -> None:
    try:
        write()
    except SrkdError:
        raise
    except Exception as exc:  # disk full, permissions, ...: name the scene
        raise CacheError(f"writing scene {scene_id!r} into the cache failed: {type(exc).__name__}: {exc}") from exc


def _behind() -> WriteBehind:
    with _LOCK:
        return _BEHIND.setdefault(os.getpid(), WriteBehind())


def compute_scene(
    job: CacheJob, spec: CacheSpec, scene_id: str
) -> tuple[list[ViewTargets], ViewTargets | None, SceneDone, str]:
    """Load one scene and run every view through this process's teacher.

    Returns (views, ensemble-or-None, SceneDone event, the scene's content hash).
    """
    start = time.perf_counter()
    model, _ = process_teacher(job, spec.teacher_sha256)
    dataset = get_dataset_spec(job.dataset)
    job = _with_dataset_defaults(job, dataset)
    pc = _scenes(job.dataset, job.data_root, job.split).load(scene_id)
    device = next(model.parameters()).device
    views, ens = scene_targets(model, pc, job.views, job.grid_size, dataset.feature_names, device, job.ensemble,
                               color_norm=spec.teacher_color_norm)
    return views, ens, SceneDone(scene_id, pc.num_points, time.perf_counter() - start), pc.content_sha256()


def _scenes(dataset: str, data_root: Path, split: str, fresh: bool = False):  # type: ignore[no-untyped-def]
    """The scene source of one split. A lidar reader parses its tables when opened, so scene tasks
    reuse one per process; the ScanNet layout (one folder listing) and `fresh` open it anew."""
    if fresh or get_dataset_spec(dataset).layout == "scannet":
        return open_scenes(dataset, data_root, split, require_labels=False)
    return _process_scenes(dataset, data_root, split)


@functools.lru_cache(maxsize=4)
def _process_scenes(dataset: str, data_root: Path, split: str):  # type: ignore[no-untyped-def]
    return open_scenes(dataset, data_root, split, require_labels=False)


def _with_dataset_defaults(job: CacheJob, dataset) -> CacheJob:  # type: ignore[no-untyped-def]
    """`job` with the dataset's grid size when it names none, and the dataset's view domain."""
    grid = job.grid_size if job.grid_size is not None else dataset.grid_size
    return replace(job, grid_size=float(grid), views=replace(job.views, domain=dataset.domain))


def cache_scene(job: CacheJob, spec: CacheSpec, scene_id: str) -> list[SceneDone]:
    """Task body: compute scene `scene_id` and queue its write; returns the scenes committed
    meanwhile (the previous one of this process). Call `flush_writes` after the last task."""
    views, ens, event, data_sha256 = compute_scene(job, spec, scene_id)
    writer = CacheWriter.open(job.out, spec)  # re-checks the root's fingerprint; never writes it
    return _behind().put(lambda: writer.write_scene(scene_id, views, ens, data_sha256), event)


def flush_writes() -> list[SceneDone]:
    """Wait for this process's pending write; the events of what it committed."""
    return _behind().drain()


# ---- the client side ----------------------------------------------------------------------------


def _check_out_dir(out: Path) -> None:
    """Refuse a non-empty directory that is not a Zarr store: creating a cache there would
    delete its contents (zarr clears a store opened with mode "w")."""
    if out.is_dir() and not (out / "zarr.json").is_file() and any(out.iterdir()):
        raise CacheError(
            f"--out {out} is a non-empty directory that is not a teacher cache; creating a cache "
            "there would delete its contents: choose a new or empty directory"
        )


class Plan(NamedTuple):
    """What a build will do: `todo` = scenes to compute (new ones and `repaired` ones: committed
    but incomplete, see srkd.cache.schema.scene_damage); `skipped` = complete committed scenes."""

    job: CacheJob
    spec: CacheSpec
    todo: list[str]
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
    job = _with_dataset_defaults(_absolute(job), dataset)
    scenes = list(_scenes(job.dataset, job.data_root, job.split, fresh=True).scene_ids)
    if max_scenes is not None:
        if max_scenes < 1:
            raise ConfigError(f"--max-scenes must be >= 1, got {max_scenes}")
        scenes = scenes[:max_scenes]
    model, info = load_teacher(job.teacher, dataset, "cpu")
    if resolve_device(job.device).type == "cpu":  # reuse it for in-process scene tasks
        with _LOCK:
            _TEACHERS.clear()
            _TEACHERS[_teacher_key(job, info.sha256, "cpu")] = (model, info)
    spec = make_spec(dataset, job.data_root, job.split, info, job.views, job.codec, job.grid_size, job.ensemble)
    _check_out_dir(job.out)
    writer = CacheWriter.create(job.out, spec, overwrite=overwrite)
    spec = writer.spec  # as the cache records it (a cache of srkd 0.1 leaves color_norm unstated)
    committed = writer.committed_scenes()
    damaged = writer.damaged_scenes([s for s in scenes if s in committed])
    todo = [s for s in scenes if s not in committed or s in damaged]
    skipped = [s for s in scenes if s in committed and s not in damaged]
    if todo:  # before any teacher work: an old-schema cache can be complete, not extended
        writer.check_extendable()
    _check_resumed_data(job, dataset, skipped)
    return Plan(job, spec, todo, skipped, damaged)


def _check_resumed_data(job: CacheJob, dataset, committed: list[str]) -> None:  # type: ignore[no-untyped-def]
    """A resumed build must read the data its committed scenes were built from (the data root
    may have moved; its content may not): a sample of them is checked as distill checks it."""
    if committed:
        from srkd.distill.targets import check_cache_data

        scenes = _scenes(dataset.name, job.data_root, job.split, fresh=True)
        check_cache_data(CacheReader(job.out, cache_bytes=0), scenes, committed)


def _absolute(job: CacheJob) -> CacheJob:
    teacher = replace(job.teacher, checkpoint=Path(job.teacher.checkpoint).expanduser().resolve())
    return replace(
        job, data_root=Path(job.data_root).expanduser().resolve(), out=Path(job.out).expanduser().resolve(),
        teacher=teacher,
    )  # fmt: skip


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
    report = BuildReport(job.out, spec.fingerprint(), spec, len(todo) + len(skipped), skipped=skipped,
                         repaired=sorted(repaired))  # fmt: skip
    if on_start:
        on_start(len(todo), len(skipped))

    def done(events: list[SceneDone]) -> None:
        for event in events:
            report.written.append(event.scene_id)
            report.points_written += event.points
            if on_scene:
                on_scene(event)

    if todo and workers == 0 and scheduler is None:
        report.workers = 0
        try:
            for scene_id in todo:
                done(cache_scene(job, spec, scene_id))
        except BaseException:
            try:  # keep (commit) the previous scene's write, then report the first error
                flush_writes()
            except Exception:
                pass
            raise
        done(flush_writes())
    elif todo:
        report.workers = _run_dask(job, spec, todo, workers, scheduler, done)
    missing = set(todo) - CacheWriter.open(job.out, spec).committed_scenes()
    if missing:
        raise CacheError(
            f"{len(missing)} scene(s) were computed but are not committed (e.g. {sorted(missing)[:3]}): "
            "a worker was lost before its last write; re-run the same command to finish them"
        )
    report.seconds = time.perf_counter() - start
    return report


def _run_dask(
    job: CacheJob, spec: CacheSpec, todo: list[str], workers: int, scheduler: str | None,
    done: Callable[[list[SceneDone]], None],
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
    token = uuid.uuid4().hex[:8]
    try:
        n_workers = len(client.scheduler_info()["workers"])
        futures = [
            client.submit(cache_scene, job, spec, s, key=f"srkd-cache-{s}-{token}", pure=False) for s in todo
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
            client.submit(flush_writes, key=f"srkd-cache-flush-{i}-{token}", workers=[addr],
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
