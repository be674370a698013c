"""`srkd prepare scannet`: raw ScanNet release -> the Pointcept scene layout, with a progress bar."""

from __future__ import annotations

import typer

from pipeline.commands import options as O
from pipeline.commands._common import user_errors

app = typer.Typer(
    name="prepare",
    help="Convert raw datasets into the scene layout srkd reads.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Convert raw datasets into the scene layout srkd reads."""


@app.command("scannet")
def scannet(
    raw: O.RawScanNet,
    out: O.PrepareOut,
    workers: O.PrepareWorkers = 1,
    splits: O.Splits = None,
) -> None:
    """Convert raw ScanNet scans (PLY mesh, segs, aggregation) to coord/color/normal/segment .npy files."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from srkd.data.scannet.prepare import SceneResult, prepare_scannet

    console = Console(stderr=True)
    chosen = [s.strip() for item in splits or [] for s in item.split(",") if s.strip()] or None
    with user_errors():
        progress = Progress(
            TextColumn("[bold]prepare[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task("scannet", total=None)

            def on_scene(result: SceneResult, done: int, total: int) -> None:
                progress.update(
                    task, completed=done, total=total,
                    description=f"{result.split}/{result.scene_id} ({result.status})",
                )

            report = prepare_scannet(raw, out, workers=workers, progress_callback=on_scene, splits=chosen)
        converted, skipped = report.count("converted"), report.count("skipped")
        console.print(
            f"converted {converted} scenes, skipped {skipped} already done; layout in {out}"
        )
        absent = {s: n for s, n in report.listed_missing.items() if n}
        if absent:
            console.print(
                "listed in the split files but not found under scans/: "
                + ", ".join(f"{s} {n}" for s, n in absent.items())
            )
