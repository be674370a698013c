"""The settings of `srkd cache-teacher`: `CacheTeacherConfig` (one field per option, the
command's defaults) and the `CacheJob` it builds (what the build and its dask workers run).

Light on purpose: the CLI imports this module to resolve options and render `--help` before
torch, spconv or zarr are imported. `CacheJob`'s parts (`ViewSettings` from
srkd.cache_teacher.views, `TeacherRef` from srkd.models.teacher, `CodecSpec` from srkd.cache)
live in heavier modules and are imported only when a default or a job is made.
"""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from srkd.data.registry import per_dataset
from srkd.errors import ConfigError
from srkd.settings import DEFAULT_DEVICE, setting
from srkd.types import DEFAULT_CODEC, DEFAULT_DATASET, SEQUENCE_SAMPLES, TRAIN_SPLIT, VIEW_SEED, VIEWS

if TYPE_CHECKING:
    from srkd.cache import CodecSpec
    from srkd.cache_teacher.views import ViewSettings
    from srkd.models.teacher import TeacherRef


def _default_views() -> ViewSettings:
    from srkd.cache_teacher.views import ViewSettings

    return ViewSettings()


def _default_codec() -> CodecSpec:
    from srkd.cache import CodecSpec

    return CodecSpec()


@dataclass(frozen=True)
class CacheJob:
    """Everything a scene task needs (picklable: it travels to dask workers).

    Paths should be absolute and, on a multi-machine scheduler, on a filesystem every worker sees.
    `plan_cache` fills in the dataset's grid size (grid_size None) and view domain.
    torch_threads: intra-op threads of each teacher process (None = torch's default).
    views / codec default to ViewSettings() / CodecSpec() (one view; the default codec).
    schema_version: the layout of a NEW cache (None: srkd.cache.SCHEMA_VERSION, samples packed
    per sequence; 2: a group per scene); a resumed cache keeps its own.
    sequence_samples: most samples packed into one sequence (schema 3; one build task).
    """

    dataset: str
    data_root: Path
    split: str
    teacher: TeacherRef
    out: Path
    views: ViewSettings = field(default_factory=_default_views)
    codec: CodecSpec = field(default_factory=_default_codec)
    grid_size: float | None = None  # None: the dataset's (DatasetSpec.grid_size)
    ensemble: bool = False
    device: str = DEFAULT_DEVICE
    torch_threads: int | None = None
    schema_version: int | None = None
    sequence_samples: int = SEQUENCE_SAMPLES


@dataclass(frozen=True)
class CacheTeacherConfig:
    """`srkd cache-teacher`'s settings (stages.yaml params.cache): field = option name.

    teacher and data_root are required in effect (data_root falls back to params.data.root, which
    the command reads); `job()` says which is missing."""

    dataset: str = setting(DEFAULT_DATASET)
    teacher: Path | None = setting(None, note="stages.yaml cache.teacher")
    teacher_model: str | None = setting(None, note="none: an srkd checkpoint records its model")
    color_norm: str | None = setting(None, note="the checkpoint's, else pointcept")
    unpooling: str | None = setting(None, note="the preset's; v3m1 for ptv3_base and ptv3_half")
    noise_seed: int | None = setting(None, note="0; a CDSegNet teacher's test-time noise draw")
    data_root: Path | None = setting(None, note="stages.yaml data.root")
    split: str = setting(TRAIN_SPLIT)
    out: Path = setting(Path("cache"))
    views: int = setting(VIEWS)
    seed: int = setting(VIEW_SEED)
    grid_size: float | None = setting(None, note=per_dataset("grid_size"))
    codec: str = setting(DEFAULT_CODEC)
    ensemble: bool | None = setting(None, note="on when --views > 1")
    workers: int = setting(1)
    scheduler: str | None = setting(None, note="a local cluster")
    overwrite: bool = setting(False, cli_only=True)
    device: str = setting(DEFAULT_DEVICE)
    max_scenes: int | None = setting(None, note="all")
    sequence_samples: int = setting(SEQUENCE_SAMPLES)

    def check(self) -> None:
        """ConfigError when no teacher or data root is set, or --unpooling is given without
        --teacher-model (light: no torch)."""
        if self.teacher is None:
            raise ConfigError("no teacher: pass --teacher CKPT (or set params.cache.teacher in stages.yaml)")
        if self.data_root is None:
            raise ConfigError("no dataset root: pass --data-root DIR (or set params.data.root in stages.yaml)")
        if self.unpooling is not None and self.teacher_model is None:
            raise ConfigError("--unpooling applies to a Pointcept checkpoint loaded with --teacher-model; "
                              "an srkd checkpoint records its own")

    def job(self) -> CacheJob:
        """The CacheJob these settings describe (imports the teacher and cache modules); `check`
        first."""
        from srkd.cache import CodecSpec
        from srkd.cache_teacher.views import ViewSettings
        from srkd.models.teacher import TeacherRef

        self.check()
        args = {"unpooling": self.unpooling} if self.unpooling else {}
        if self.noise_seed is not None:
            args["noise_seed"] = int(self.noise_seed)
        ensemble = int(self.views) > 1 if self.ensemble is None else bool(self.ensemble)
        return CacheJob(
            dataset=str(self.dataset), data_root=Path(self.data_root), split=str(self.split),
            teacher=TeacherRef(Path(self.teacher), self.teacher_model, color_norm=self.color_norm,
                               model_args=args),
            out=Path(self.out), views=ViewSettings(views=int(self.views), seed=int(self.seed)),
            codec=CodecSpec.create(str(self.codec)), ensemble=ensemble, device=str(self.device),
            grid_size=None if self.grid_size is None else float(self.grid_size),
            sequence_samples=int(self.sequence_samples),
        )  # fmt: skip
