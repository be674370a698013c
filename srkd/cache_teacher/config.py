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

from srkd.data.registry import DATASET_FLAG, per_dataset
from srkd.data.transforms.color import COLOR_NORMS
from srkd.errors import ConfigError
from srkd.settings import (
    DEFAULT_DEVICE,
    DEVICE,
    GRID_SIZE,
    MAX_SCENES,
    TEACHER_MODEL,
    Flag,
    setting,
)
from srkd.types import (
    CODEC_NAMES,
    DEFAULT_CODEC,
    DEFAULT_DATASET,
    SEQUENCE_SAMPLES,
    TRAIN_SPLIT,
    UNPOOLING_MODES,
    VIEW_SEED,
    VIEWS,
)

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

    dataset: str = setting(DEFAULT_DATASET, DATASET_FLAG)
    teacher: Path | None = setting(None, (
        "Teacher checkpoint: an srkd checkpoint, or a Pointcept .pth with --teacher-model."),
        note="stages.yaml cache.teacher")
    teacher_model: str | None = setting(None, TEACHER_MODEL, note="none: an srkd checkpoint records its model")
    color_norm: str | None = setting(None, Flag(
        "Colour normalisation the teacher was trained with: pointcept = color/255 (Pointcept >= 1.6), "
        "legacy = color/127.5-1 (older Pointcept). An srkd checkpoint records its own.",
        choices=tuple(COLOR_NORMS)), note="the checkpoint's, else pointcept")
    unpooling: str | None = setting(None, Flag(
        "PTv3 decoder semantics of a --teacher-model checkpoint: v3m1 (Pointcept PT-v3m1) or v3m2.",
        choices=UNPOOLING_MODES), note="the preset's; v3m1 for ptv3_base and ptv3_half")
    noise_seed: int | None = setting(None, (
        "Seed of a CDSegNet teacher's test-time noise draw (its output depends on it; the cache "
        "records it)."), note="0; a CDSegNet teacher's test-time noise draw")
    data_root: Path | None = setting(None, (
        "Dataset root: <split>/<scene>/ folders for ScanNet, the release's top folder for nuScenes / "
        "SemanticKITTI."), note="stages.yaml data.root")
    split: str = setting(TRAIN_SPLIT, "Split folder to cache.")
    out: Path = setting(Path("cache"), "Cache directory (Zarr v3).")
    views: int = setting(VIEWS, Flag("Views per scene; view 0 is the scene as stored.", min=1))
    seed: int = setting(VIEW_SEED, Flag("Seed of the augmented views 1..V-1.", min=0))
    grid_size: float | None = setting(None, GRID_SIZE, note=per_dataset("grid_size"))
    codec: str = setting(DEFAULT_CODEC, Flag("Target encoding.", choices=CODEC_NAMES))
    ensemble: bool | None = setting(None, "Also store the mean over views.", note="on when --views > 1")
    workers: int = setting(1, Flag("Dask worker processes; 0 = in this process, no dask.", min=0))
    scheduler: str | None = setting(None, (
        "Address of a running dask scheduler (e.g. tcp://host:8786) instead of a local cluster."),
        note="a local cluster")
    overwrite: bool = setting(False, Flag("Replace a cache built with other settings.", negatable=False),
                              cli_only=True)
    device: str = setting(DEFAULT_DEVICE, DEVICE)
    max_scenes: int | None = setting(None, MAX_SCENES, note="all")
    sequence_samples: int = setting(SEQUENCE_SAMPLES, Flag(
        "Most scenes packed into one sequence of the cache (one build task; whole recordings stay "
        "together where they fit).", min=1))

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
