"""`srkd generate-synthetic`: procedural indoor rooms in the ScanNet scene layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.commands._common import user_errors


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
        int, typer.Option("--workers", help="Scenes generated in parallel (processes).")
    ] = 1,
) -> None:
    """Generate a synthetic ScanNet-20 dataset of furnished rooms (train/val splits).

    Unset options come from stages.yaml's params.data (root, scenes, seed, val_fraction, points).
    A run that fails part-way leaves <out>/unfinished.json instead of <out>/synthetic.json;
    readers refuse such a folder, and re-running the same command finishes it.
    """
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from srkd.data.classes import SCANNET20_CLASSES
    from srkd.data.synthetic import generate_dataset, split_sizes

    from pipeline.params import command_defaults, pick
    from srkd.data.layout import UNFINISHED
    from srkd.errors import ConfigError, DataError

    console = Console(stderr=True)
    with user_errors():
        d = command_defaults("data")
        out = pick(out, d, "root", None)
        if out is None:
            raise ConfigError("pass --out DIR (or run where stages.yaml sets params.data.root)")
        out = Path(out)
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
