"""`srkd cache-teacher`: run a frozen teacher once over a dataset split, write the Zarr teacher cache.

Defaults come from stages.yaml (`params.cache`, and `params.data.root` for the data root) when the
file exists, else from the built-in values shown in `--help`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.commands._common import (
    ColorNorm,
    DatasetName,
    DeviceOption,
    Unpooling,
    optional_float,
    user_errors,
)

FALLBACK = {
    "dataset": "scannet",
    "split": "train",
    "out": "./cache",
    "views": 1,
    "seed": 0,
    "codec": "int8",
    "workers": 1,
}


class Codec(StrEnum):
    int8 = "int8"
    float16 = "float16"
    lossless = "lossless"


def cache_teacher(
    dataset: Annotated[Optional[DatasetName], typer.Option("--dataset", help="Dataset name (scannet, scannet200, nuscenes, semantickitti); picks the reader, classes, input features, grid size and view chain. (default: scannet)")] = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="Teacher checkpoint: an srkd checkpoint, or a Pointcept .pth with --teacher-model.")] = None,
    teacher_model: Annotated[Optional[str], typer.Option("--teacher-model", help="Registered model name to load a Pointcept checkpoint into (e.g. ptv3_base).")] = None,
    color_norm: Annotated[Optional[ColorNorm], typer.Option("--color-norm", help="Colour normalisation the teacher was trained with: pointcept = color/255 (Pointcept >= 1.6), legacy = color/127.5-1 (older Pointcept). An srkd checkpoint records its own. (default: the checkpoint's, else pointcept)")] = None,
    unpooling: Annotated[Optional[Unpooling], typer.Option("--unpooling", help="PTv3 decoder semantics of a --teacher-model checkpoint: v3m1 (Pointcept PT-v3m1) or v3m2. (default: the preset's; v3m1 for ptv3_base and ptv3_half)")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Dataset root: <split>/<scene>/ folders for ScanNet, the release's top folder for nuScenes / SemanticKITTI (default: stages.yaml data.root).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split folder to cache. (default: train)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Cache directory (Zarr v3). (default: ./cache)")] = None,
    views: Annotated[Optional[int], typer.Option("--views", min=1, help="Views per scene; view 0 is the scene as stored. (default: 1)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Seed of the augmented views 1..V-1. (default: 0)")] = None,
    grid_size: Annotated[Optional[float], typer.Option("--grid-size", help="Teacher voxel size in metres. (default: the dataset's: 0.02 ScanNet, 0.05 nuScenes / SemanticKITTI)")] = None,
    codec: Annotated[Optional[Codec], typer.Option("--codec", help="Target encoding. (default: int8)")] = None,
    ensemble: Annotated[Optional[bool], typer.Option("--ensemble/--no-ensemble", help="Also store the mean over views. (default: on when --views > 1)")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="Dask worker processes; 0 = in this process, no dask. (default: 1)")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running dask scheduler (e.g. tcp://host:8786) instead of a local cluster.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a cache built with other settings.")] = False,
    device: DeviceOption = None,
    max_scenes: Annotated[Optional[int], typer.Option("--max-scenes", min=1, help="Only the first N scenes of the split (sorted).")] = None,
) -> None:
    """Run the frozen teacher once per scene and view; write its per-point logits and features."""
    with user_errors():
        from pipeline.params import command_defaults, pick
        from srkd.errors import ConfigError

        params = command_defaults("cache")
        data_params = command_defaults("data")
        teacher_path = pick(teacher, params, "teacher", None)
        if teacher_path is None:
            raise ConfigError("no teacher: pass --teacher CKPT (or set params.cache.teacher in stages.yaml)")
        root = pick(data_root, params, "data_root", None) or data_params.get("root")
        if root is None:
            raise ConfigError("no dataset root: pass --data-root DIR (or set params.data.root in stages.yaml)")
        n_views = int(pick(views, params, "views", FALLBACK["views"]))
        use_ensemble = pick(ensemble, params, "ensemble", None)
        settings = dict(
            dataset=str(pick(dataset.value if dataset else None, params, "dataset", FALLBACK["dataset"])),
            data_root=Path(root),
            split=str(pick(split, params, "split", FALLBACK["split"])),
            teacher=Path(teacher_path),
            teacher_model=pick(teacher_model, params, "teacher_model", None),
            color_norm=pick(color_norm.value if color_norm else None, params, "color_norm", None),
            unpooling=pick(unpooling.value if unpooling else None, params, "unpooling", None),
            out=Path(pick(out, params, "out", FALLBACK["out"])),
            views=n_views,
            seed=int(pick(seed, params, "seed", FALLBACK["seed"])),
            grid_size=optional_float(pick(grid_size, params, "grid_size", None)),
            codec=str(pick(codec.value if codec else None, params, "codec", FALLBACK["codec"])),
            ensemble=bool(n_views > 1 if use_ensemble is None else use_ensemble),
            device=str(pick(device, params, "device", "auto")),
        )
        if settings["unpooling"] is not None and settings["teacher_model"] is None:
            raise ConfigError("--unpooling applies to a Pointcept checkpoint loaded with --teacher-model; "
                              "an srkd checkpoint records its own")
        n_workers = int(pick(workers, params, "workers", FALLBACK["workers"]))
        _run(settings, n_workers, pick(scheduler, params, "scheduler", None), overwrite,
             pick(max_scenes, params, "max_scenes", None))


def _run(settings: dict, workers: int, scheduler: Optional[str], overwrite: bool, max_scenes: Optional[int]) -> None:  # type: ignore[type-arg]
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from srkd.cache import CodecSpec
    from srkd.cache.inspect import summarize
    from srkd.cache_teacher.build import SceneDone, build_cache
    from srkd.cache_teacher.config import CacheJob
    from srkd.cache_teacher.views import ViewSettings
    from srkd.device import configure_threads
    from srkd.models.teacher import TeacherRef

    configure_threads()  # the in-process teacher; dask workers set their own share

    job = CacheJob(
        dataset=settings["dataset"], data_root=settings["data_root"], split=settings["split"],
        teacher=TeacherRef(settings["teacher"], settings["teacher_model"], color_norm=settings["color_norm"],
                           model_args={"unpooling": settings["unpooling"]} if settings["unpooling"] else {}),
        out=settings["out"],
        views=ViewSettings(views=settings["views"], seed=settings["seed"]), codec=CodecSpec.create(settings["codec"]),
        grid_size=settings["grid_size"], ensemble=settings["ensemble"], device=settings["device"],
    )  # fmt: skip
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]cache-teacher[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )  # fmt: skip
    state = {"points": 0, "t0": time.perf_counter(), "task": None}

    def on_start(todo: int, skipped: int) -> None:
        what = f"resuming: {skipped} scene(s) already committed" if skipped else "new cache"
        console.print(f"{what}; {todo} scene(s) to compute", highlight=False)
        state["t0"] = time.perf_counter()
        state["task"] = progress.add_task("scenes", total=todo, rate="")

    def on_scene(event: SceneDone) -> None:
        state["points"] += event.points
        rate = state["points"] / max(time.perf_counter() - state["t0"], 1e-9)
        progress.update(state["task"], advance=1, rate=f"{rate:,.0f} pts/s")

    with progress:
        report = build_cache(
            job, overwrite=overwrite, workers=workers, scheduler=scheduler, max_scenes=max_scenes,
            on_start=on_start, on_scene=on_scene,
        )  # fmt: skip
    summary = summarize(report.out)
    if report.repaired:
        typer.echo(f"rebuilt {len(report.repaired)} committed scene(s) that were incomplete: "
                   f"{', '.join(report.repaired[:5])}{' ...' if len(report.repaired) > 5 else ''}")
    typer.echo(
        f"cache {report.out}: wrote {len(report.written)} scene(s), skipped {len(report.skipped)} "
        f"already committed; {summary['scenes']} scenes, {summary['points']:,} points, "
        f"{summary['bytes_per_point']:.1f} bytes/point/entry ({summary['entries_per_scene']} entries per scene), "
        f"{report.seconds:.1f} s"
    )
