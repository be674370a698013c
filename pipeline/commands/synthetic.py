"""`srkd generate-synthetic`: procedural indoor rooms in the ScanNet scene layout, or (with
`--kind outdoor`) simulated lidar drives in the nuScenes-lidarseg or SemanticKITTI format."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.commands._common import user_errors


class Kind(StrEnum):
    indoor = "indoor"
    outdoor = "outdoor"


class LidarFormat(StrEnum):
    nuscenes = "nuscenes"
    semantickitti = "semantickitti"


def generate_synthetic(
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Output root; scenes go to <out>/{train,val}/synthetic_NNNN/. "
                     "Default: stages.yaml data.root."),
    ] = None,
    scenes: Annotated[Optional[int], typer.Option("--scenes", help="Number of scenes (>= 1). [default: 24]")] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Dataset seed (>= 0); same seed, same files. [default: 0]")
    ] = None,
    val_fraction: Annotated[
        Optional[float], typer.Option("--val-fraction", help="Share of scenes in the val split, in [0, 1). [default: 0.25]")
    ] = None,
    points: Annotated[Optional[int], typer.Option("--points", help="Points per scene (>= 1000). [default: 30000]")] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Scenes generated in parallel (processes; indoor only).")
    ] = 1,
    kind: Annotated[Kind, typer.Option("--kind", help="indoor: furnished rooms (ScanNet layout); outdoor: simulated 32-beam lidar drives.")] = Kind.indoor,
    fmt: Annotated[LidarFormat, typer.Option("--format", help="Outdoor only: write the nuScenes-lidarseg release format (--dataset nuscenes) or SemanticKITTI's (--dataset semantickitti).")] = LidarFormat.nuscenes,
    keyframes: Annotated[int, typer.Option("--keyframes", min=1, help="Outdoor only: labelled scans per drive, 0.5 s apart.")] = 4,
    sweeps: Annotated[int, typer.Option("--sweeps", min=0, help="Outdoor nuScenes only: unlabelled 20 Hz sweeps written before each keyframe (for multi-sweep reading).")] = 0,
    beams: Annotated[int, typer.Option("--beams", min=1, help="Outdoor only: lidar beams (nuScenes' HDL-32E has 32).")] = 32,
    azimuth_steps: Annotated[int, typer.Option("--azimuth-steps", min=8, help="Outdoor only: returns per beam and revolution.")] = 1080,
) -> None:
    """Generate a synthetic dataset with train/val splits: ScanNet-20 rooms, or outdoor lidar scans.

    Unset options come from stages.yaml's params.data (root, scenes, seed, val_fraction, points).
    A run that fails part-way leaves <out>/unfinished.json instead of <out>/synthetic.json;
    readers refuse such a folder, and re-running the same command finishes it.
    """
    if kind == Kind.outdoor:
        _outdoor(out, scenes, seed, val_fraction, points, fmt.value,
                 dict(keyframes=keyframes, sweeps=sweeps, beams=beams, azimuth_steps=azimuth_steps))
        return
    import numpy as np
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from pipeline.params import command_defaults, pick
    from srkd.data.scannet.classes import SCANNET20_CLASSES
    from srkd.data.scannet.layout import UNFINISHED
    from srkd.data.synthetic.rooms import generate_dataset, split_sizes
    from srkd.errors import DataError

    console = Console(stderr=True)
    with user_errors():
        d = command_defaults("data")
        out = _output_folder(out, d)
        scenes = int(pick(scenes, d, "scenes", 24))
        seed = int(pick(seed, d, "seed", 0))
        val_fraction = float(pick(val_fraction, d, "val_fraction", 0.25))
        points = int(pick(points, d, "points", 30_000))
        n_train, n_val = split_sizes(scenes, val_fraction)
        progress = Progress(
            TextColumn("[bold]generate[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("synthetic", total=scenes)

            def on_scene(path: Path) -> None:
                progress.update(task, advance=1, description=f"{path.parent.name}/{path.name}")

            try:
                paths = generate_dataset(out, scenes, seed, val_fraction, points, workers, on_scene)
            except OSError as exc:  # e.g. a full disk: one line, and say what was left behind
                left = (
                    f"; the folder is marked unfinished ({UNFINISHED}): fix the cause and re-run "
                    "the same command"
                    if (out / UNFINISHED).is_file()
                    else ""
                )
                raise DataError(f"writing the dataset to {out} failed ({exc}){left}") from None

        counts = np.zeros(len(SCANNET20_CLASSES) + 1, dtype=np.int64)  # last slot: ignore (-1)
        for path in paths:
            seg = np.load(path / "segment20.npy")
            counts += np.bincount(
                np.where(seg < 0, len(SCANNET20_CLASSES), seg), minlength=len(counts)
            )
        total = int(counts.sum())
        table = Table(title="points per class")
        table.add_column("class")
        table.add_column("points", justify="right")
        table.add_column("share", justify="right")
        for name, n in zip((*SCANNET20_CLASSES, "ignore (-1)"), counts.tolist()):
            table.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%")
        console.print(table)
        console.print(
            f"wrote {len(paths)} scenes ({n_train} train, {n_val} val, {total:,} points) to {out}"
        )


def _outdoor(out: Optional[Path], scenes: Optional[int], seed: Optional[int],
             val_fraction: Optional[float], points: Optional[int], fmt: str, opts: dict[str, Any]) -> None:
    """`generate-synthetic --kind outdoor`: simulate the drives, write them, print the classes."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from pipeline.params import command_defaults, pick
    from srkd.data.scannet import get_dataset_spec
    from srkd.data.sources import open_scenes
    from srkd.data.synthetic.lidar import LidarConfig
    from srkd.data.synthetic.lidar_dataset import generate_outdoor_dataset
    from srkd.data.synthetic.rooms import split_sizes
    from srkd.errors import ConfigError, DataError

    console = Console(stderr=True)
    with user_errors():
        if points is not None:
            raise ConfigError("--points sets the size of an indoor room; an outdoor scan's size "
                              "follows from --beams and --azimuth-steps")
        d = command_defaults("data")
        out = _output_folder(out, d)
        scenes = int(pick(scenes, d, "scenes", 8))
        _, n_val = split_sizes(scenes, float(pick(val_fraction, d, "val_fraction", 0.25)))
        lidar = LidarConfig(beams=opts["beams"], azimuth_steps=opts["azimuth_steps"])
        with console.status(f"simulating {scenes} drives x {opts['keyframes']} keyframes"):
            try:
                done = generate_outdoor_dataset(out, scenes, int(pick(seed, d, "seed", 0)), n_val, fmt=fmt,
                                                keyframes=opts["keyframes"], sweeps=opts["sweeps"], lidar=lidar)
            except OSError as exc:
                raise DataError(f"writing the dataset to {out} failed ({exc}); re-run the same "
                                "command into an empty folder") from None
        spec = get_dataset_spec(fmt)
        counts = np.zeros(spec.num_classes + 1, dtype=np.int64)  # last slot: ignore (-1)
        for split in ("train", "val")[: 2 if n_val else 1]:
            source = open_scenes(spec, out, split)
            for scene in source.scene_ids:
                seg = source.load(scene).segment
                counts += np.bincount(np.where(seg < 0, spec.num_classes, seg), minlength=len(counts))
        table = Table(title=f"points per class ({fmt} labels)")
        for column in ("class", "points", "share"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name, n in zip((*spec.class_names, "ignore (-1)"), counts.tolist()):
            table.add_row(name, f"{n:,}", f"{100 * n / max(int(counts.sum()), 1):.1f}%")
        console.print(table)
        console.print(f"wrote {done['train']} train and {done['val']} val scans ({fmt} format, "
                      f"{done['points']:,} keyframe points) to {out}; read them with --dataset {fmt}")


def _output_folder(out: Optional[Path], data_params: dict[str, Any]) -> Path:
    """--out, else stages.yaml's params.data.root; ConfigError when neither is given."""
    from pipeline.params import pick
    from srkd.errors import ConfigError

    out = pick(out, data_params, "root", None)
    if out is None:
        raise ConfigError("pass --out DIR (or run where stages.yaml sets params.data.root)")
    return Path(out)
