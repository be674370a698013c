"""The per-process side of a cache build: each process (this one, or each dask worker) holds one
`SceneWorker` with the frozen teacher and the write-behind thread; the scene tasks run on it.

A task is one sequence (schema 3: its samples packed together; schema 2: one scene): its samples
are computed one by one and each is encoded at once (so only encoded targets accumulate).
Write-behind: the sequence's write runs on one background thread while the teacher computes the
next sequence (at most one write pending). A task hands its sequence to that thread and waits
only for the PREVIOUS write; `flush_writes` awaits the last one. Events are returned when a
sequence is committed, so "done" always means "on disk".

Dask pickles the task functions `cache_sequence` and `flush_writes` by reference: they reach this
process's worker through `WORKERS`, the one registry of per-process state (a worker per process id,
so a forked child never reuses its parent's write thread).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from srkd.cache import CacheSpec, CacheWriter, ViewTargets
from srkd.cache.schema import SampleTargets
from srkd.cache_teacher.config import CacheJob
from srkd.cache_teacher.targets import scene_targets
from srkd.data.dataset import SceneSource
from srkd.data.registry import dataset_default, get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.device import resolve_device
from srkd.errors import CacheError, SrkdError
from srkd.models.teacher import TeacherInfo, load_teacher


@dataclass(frozen=True)
class SceneDone:
    """Progress event: scene `scene_id` (`points` original points) is committed; `seconds` is the
    time its teacher forwards and target computation took."""

    scene_id: str
    points: int
    seconds: float


class WriteBehind:
    """One background thread writing scenes while the caller computes the next one.

    Each write belongs to a build (a token per `build_cache` call). A worker process can outlive a
    build (a `dask worker` whose client was killed) and serve the next one, whose first call then
    finishes the old build's last write: the events of a finished write are kept under their own
    build's token and returned only to a call of that build, so no build counts another's scenes."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="srkd-cache-write")
        self._pending: tuple[Future, list[SceneDone], str] | None = None
        self._done: dict[str, list[SceneDone]] = {}

    def put(self, write: Callable[[], None], events: list[SceneDone], name: str, build: str = "") -> list[SceneDone]:
        """Wait for the previous write (re-raising its error), start `write` (of sequence or
        scene `name`, for build `build`); returns the events of build `build`'s completed writes."""
        self._finish()
        self._pending = (self._pool.submit(_named_write, write, name), events, build)
        return self._done.pop(build, [])

    def drain(self, build: str = "") -> list[SceneDone]:
        """Wait for the pending write; the events of build `build`'s completed writes."""
        self._finish()
        return self._done.pop(build, [])

    def _finish(self) -> None:
        if self._pending is None:
            return
        fut, events, build = self._pending
        self._pending = None
        fut.result()
        self._done.setdefault(build, []).extend(events)
        if len(self._done) > 8:  # events nobody of a long-gone build will ask for
            self._done.pop(next(iter(self._done)))


def _named_write(write: Callable[[], None], name: str) -> None:
    try:
        write()
    except SrkdError:
        raise
    except Exception as exc:  # disk full, permissions, ...: name the sequence
        raise CacheError(f"writing {name!r} into the cache failed: {type(exc).__name__}: {exc}") from exc


def teacher_key(job: CacheJob, sha256: str, device: torch.device | str) -> tuple[str, ...]:
    """What identifies a loaded teacher: its reference, checkpoint hash and device."""
    ref = job.teacher
    return (str(ref.checkpoint), str(ref.pointcept_model), repr(sorted(ref.model_args.items())),
            str(ref.color_norm), sha256, str(device))  # fmt: skip


class SceneWorker:
    """One process's cache-building state: the frozen teacher (one at a time, loaded once per
    `teacher_key`) and the write-behind thread. Get this process's one with `WORKERS.get()`."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._teacher: tuple[tuple[str, ...], nn.Module, TeacherInfo] | None = None
        self._behind = WriteBehind()
        self._sources: dict[tuple[str, Path, str], SceneSource] = {}

    def adopt_teacher(self, key: tuple[str, ...], model: nn.Module, info: TeacherInfo) -> None:
        """Use a teacher loaded elsewhere in this process (`plan_cache`'s CPU copy)."""
        with self._lock:
            self._teacher = (key, model, info)

    def teacher(self, job: CacheJob, sha256: str) -> tuple[nn.Module, TeacherInfo]:
        """The frozen teacher of `job` on this process's device, loaded on first use; CacheError
        if its checkpoint no longer has hash `sha256`."""
        device = _worker_device(job)
        key = teacher_key(job, sha256, device)
        with self._lock:
            if self._teacher is None or self._teacher[0] != key:
                self._teacher = None  # one teacher per process
                if job.torch_threads:
                    torch.set_num_threads(int(job.torch_threads))
                model, info = load_teacher(job.teacher, get_dataset_spec(job.dataset), device)
                if info.sha256 != sha256:
                    raise CacheError(
                        f"teacher checkpoint {job.teacher.checkpoint} changed while the cache was being "
                        f"built (sha256 {info.sha256[:12]} != {sha256[:12]}); re-run to start over"
                    )
                self._teacher = (key, model, info)
            return self._teacher[1], self._teacher[2]

    def scenes(self, dataset: str, data_root: Path, split: str) -> SceneSource:
        """The scenes of one split. A lidar reader parses its tables when opened, so it is kept
        for the next tasks of this process; the ScanNet layout (one folder listing) opens anew."""
        if get_dataset_spec(dataset).layout == "scannet":
            return open_split(dataset, data_root, split)
        key = (dataset, Path(data_root), split)
        with self._lock:
            if key not in self._sources:
                if len(self._sources) >= 4:  # a worker serves one build at a time
                    self._sources.clear()
                self._sources[key] = open_split(dataset, data_root, split)
            return self._sources[key]

    def compute(self, job: CacheJob, spec: CacheSpec, scene_id: str) -> tuple[
        list[ViewTargets], ViewTargets | None, SceneDone, str
    ]:  # fmt: skip
        """Load one scene and run every view through the teacher: (views, ensemble-or-None,
        SceneDone event, the scene's content hash)."""
        start = time.perf_counter()
        model, info = self.teacher(job, spec.teacher_sha256)
        dataset = get_dataset_spec(job.dataset)
        job = with_dataset_defaults(job, dataset)
        pc = self.scenes(job.dataset, job.data_root, job.split).load(scene_id)
        device = next(model.parameters()).device
        features = info.feature_names or dataset.feature_names  # a Sonata teacher takes coord too
        views, ens = scene_targets(model, pc, job.views, job.grid_size, features, device,
                                   job.ensemble, color_norm=spec.teacher_color_norm)  # fmt: skip
        return views, ens, SceneDone(scene_id, pc.num_points, time.perf_counter() - start), pc.content_sha256()

    def cache_sequence(self, job: CacheJob, spec: CacheSpec, sequence: str, scene_ids: list[str],
                       build: str = "") -> list[SceneDone]:
        """Compute the scenes of one sequence and queue its write; the scenes of build `build`
        committed meanwhile."""
        writer = CacheWriter.open(job.out, spec)  # re-checks the root's fingerprint; never writes it
        events, samples = [], []
        for scene_id in scene_ids:
            views, ens, event, data_sha256 = self.compute(job, spec, scene_id)
            sample = SampleTargets(scene_id, views, ens, data_sha256)
            samples.append(writer.encode_sample(sample) if writer.packed else sample)
            events.append(event)
        if writer.packed:
            return self._behind.put(lambda: writer.write_sequence(sequence, samples, unless_complete=True), events,
                                    sequence, build)  # fmt: skip
        return self._behind.put(lambda: [writer.write_scene(*s) for s in samples], events, sequence, build)

    def flush(self, build: str = "") -> list[SceneDone]:
        """Wait for the pending write; the events of build `build`'s committed writes."""
        return self._behind.drain(build)


class ProcessWorkers:
    """The registry of per-process build state: one SceneWorker per process id, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: SceneWorker | None = None

    def get(self) -> SceneWorker:
        """This process's SceneWorker (a fresh one in a forked child)."""
        with self._lock:
            if self._worker is None or self._worker.pid != os.getpid():
                self._worker = SceneWorker()
            return self._worker


WORKERS = ProcessWorkers()
"""The one module-level object of a build: how task functions reach their process's worker."""


def cache_sequence(job: CacheJob, spec: CacheSpec, sequence: str, scene_ids: list[str],
                   build: str = "") -> list[SceneDone]:
    """Task body (in-process or on a dask worker): `SceneWorker.cache_sequence` of this process,
    for the build with token `build`. Call `flush_writes(build)` after the last task."""
    return WORKERS.get().cache_sequence(job, spec, sequence, scene_ids, build)


def flush_writes(build: str = "") -> list[SceneDone]:
    """Task body: wait for this process's pending write; the events of build `build`'s commits."""
    return WORKERS.get().flush(build)


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


def open_split(dataset: str, data_root: Path, split: str) -> SceneSource:
    """The scenes of one split, opened now (labels not required: a teacher needs none)."""
    return open_scenes(dataset, data_root, split, require_labels=False)


def with_dataset_defaults(job: CacheJob, dataset) -> CacheJob:  # type: ignore[no-untyped-def]
    """`job` with the dataset's grid size when it names none, and the dataset's view domain."""
    grid = dataset_default("grid_size", job.grid_size, dataset)
    return replace(job, grid_size=float(grid), views=replace(job.views, domain=dataset.domain))
