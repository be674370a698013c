"""`srkd predict`: label new scans (.ply meshes / point clouds, scene folders) with a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.commands._common import DeviceOption, task_progress, user_errors

DEFAULT_OUT = Path("predictions")
INPUTS_HELP = (
    "Scans to label: a .ply (a mesh such as ScanNet's scene*_vh_clean_2.ply, whose vertices are "
    "the points, or a point cloud), or a folder holding coord.npy (N, 3) metres plus, as the model "
    "needs, color.npy (N, 3) 0..255 and normal.npy (N, 3) (a Pointcept scene folder; other files "
    "such as labels are ignored). Colour must be present when the model takes colour; missing "
    "normals are computed (mesh: area-weighted face normals; point cloud: PCA over k nearest "
    "neighbours, oriented towards the scan's centroid)."
)


def predict(
    inputs: Annotated[list[Path], typer.Argument(help=INPUTS_HELP, show_default=False)],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="srkd checkpoint (a student from `srkd distill`, or srkd/assets/demo_teacher.pt).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: <name>.labels.npy (int64 class id per input point, input order) and <name>.ply (the points coloured by class, with a 'label' property).")] = DEFAULT_OUT,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="13 test-time views (4 rotations x 3 scales + flip, as `srkd evaluate`) or one view (13x faster).")] = True,
    device: DeviceOption = None,
    grid_size: Annotated[Optional[float], typer.Option("--grid-size", min=1e-6, help="Voxel size in metres. Default: the checkpoint's recorded grid size, else its dataset's (0.02 ScanNet, 0.05 lidar).")] = None,
    neighbours: Annotated[Optional[int], typer.Option("--normal-neighbours", min=3, help="k of the PCA normals of point clouds without normals. Default: srkd.data.normals.DEFAULT_NEIGHBOURS (16).")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="A bad input file is reported and skipped, the others are labelled (exit code 1 at the end). Default: the first bad file stops the run. Missing inputs always stop it before the model runs.")] = False,
) -> None:
    """Label every point of new scans with a trained model; write per-point labels and coloured PLYs."""
    from rich.console import Console

    console = Console(stderr=True)
    with user_errors():
        from srkd.device import configure_threads
        from srkd.predict.run import run_predict

        configure_threads()
        with task_progress(console, "predict") as on_progress:
            run = run_predict(checkpoint, inputs, out, tta=tta, device=device or "auto",
                              grid_size=grid_size, neighbours=neighbours, keep_going=keep_going,
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
