"""`srkd predict`: label new scans (.ply meshes / point clouds, scene folders) with a checkpoint."""

from __future__ import annotations

from typing import Any

import typer

from pipeline.commands import options as O
from pipeline.commands._common import task_progress, user_errors
from srkd.predict.config import PredictConfig


@O.with_options(PredictConfig)
def predict(inputs: O.Inputs, **cli: Any) -> None:
    """Label every point of new scans with a trained model; write per-point labels and coloured PLYs."""
    from rich.console import Console

    console = Console(stderr=True)
    with user_errors():
        from pipeline.params import resolve

        c = resolve(PredictConfig, None, cli)

        from srkd.device import configure_threads
        from srkd.predict.run import run_predict

        configure_threads()
        with task_progress(console, "predict") as on_progress:
            run = run_predict(c.checkpoint, inputs, c.out, runtime=c.runtime, model=c.model, tta=c.tta,
                              device=c.device, precision=c.precision, grid_size=c.grid_size, neighbours=c.neighbours, keep_going=c.keep_going,
                              progress=on_progress)  # fmt: skip
        _summary(console, run)
        if run.failures:
            for path, message in run.failures:
                typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            typer.secho(f"{len(run.failures)} of {len(inputs)} inputs failed", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1)


def _summary(console, run) -> None:
    """One row per labelled input: points, normals' source, time, the most frequent classes."""
    from rich.table import Table

    p = run.predictor
    table = Table(title=f"{p.source}: {p.dataset} classes, {run.views} view(s), {p.device}")
    for col in ("input", "kind", "points", "normals", "seconds", "top classes", "written"):
        table.add_column(col, justify="right" if col in ("points", "seconds") else "left")
    for r in run.results:
        order = r.histogram.argsort()[::-1][:3]
        top = ", ".join(f"{p.class_names[k]} {100 * r.histogram[k] / r.points:.0f}%"
                        for k in order if r.histogram[k])  # fmt: skip
        table.add_row(r.name, r.kind, f"{r.points:,}", r.normals, f"{r.seconds:.1f}", top,
                      f"{r.labels_path.name}, {r.ply_path.name}")  # fmt: skip
    console.print(table)
    if run.results:
        console.print(f"wrote {2 * len(run.results)} files to {run.results[0].ply_path.parent}")
