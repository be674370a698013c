"""The settings of one `srkd cache-teacher` build: `CacheJob`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.cache import CodecSpec
from srkd.cache_teacher.views import ViewSettings
from srkd.models.teacher import TeacherRef


@dataclass(frozen=True)
class CacheJob:
    """Everything a scene task needs (picklable: it travels to dask workers).

    Paths should be absolute and, on a multi-machine scheduler, on a filesystem every worker sees.
    `plan_cache` fills in the dataset's grid size (grid_size None) and view domain.
    torch_threads: intra-op threads of each teacher process (None = torch's default).
    """

    dataset: str
    data_root: Path
    split: str
    teacher: TeacherRef
    out: Path
    views: ViewSettings = ViewSettings()
    codec: CodecSpec = CodecSpec()
    grid_size: float | None = None  # None: the dataset's (DatasetSpec.grid_size)
    ensemble: bool = False
    device: str = "auto"
    torch_threads: int | None = None
