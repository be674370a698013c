"""`srkd evaluate`: precise mIoU on every original point, several models in one table, reports.

With no model flags it evaluates the student that stages.yaml's distill stage writes
(`params.distill.out`/model.pt), or the list in `params.evaluate.checkpoints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.commands._common import (
    DatasetName,
    DeviceOption,
    task_progress,
    user_errors,
)

DEFAULT_OUT = Path("reports/eval")



def default_checkpoints(evaluate_params: dict[str, Any], distill_params: dict[str, Any]) -> list[Path]:
    """Checkpoints to evaluate when none is given: params.evaluate.checkpoints, else the distill
    stage's student <params.distill.out>/model.pt; [] when stages.yaml names neither."""
    listed = evaluate_params.get("checkpoints")
    if listed:
        if isinstance(listed, (str, Path)):
            listed = [listed]
        return [Path(str(p)) for p in listed]
    out = distill_params.get("out")
    return [Path(str(out)) / "model.pt"] if out else []


def evaluate(
    checkpoint: Annotated[Optional[list[Path]], typer.Option("--checkpoint", "-c", help="srkd checkpoint to score; repeat to compare several models in one table. Default: the distill stage's student from stages.yaml.")] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Teacher cache directory: score the cached teacher's predictions without running it.")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Dataset root with <split>/<scene>/ folders. Default: the root recorded in the checkpoint (or cache).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split folder to score. Default: params.evaluate.split, else 'val' (the cache's split when only --cache is given).")] = None,
    dataset: Annotated[Optional[DatasetName], typer.Option("--dataset", help="Dataset name (scannet, scannet200, nuscenes, semantickitti). Default: recorded in the checkpoint (or cache), else scannet.")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="The release's test-time views (ScanNet: 13 = 4 rotations x 3 scales + flip; nuScenes / SemanticKITTI: 10 = 5 scales x flip) or one view. Default: params.evaluate.tta, else on.")] = None,
    grid_size: Annotated[Optional[float], typer.Option("--grid-size", min=1e-6, help="Voxel size in metres. Default: each checkpoint's recorded grid size, else the dataset's (0.02 ScanNet, 0.05 lidar).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder for metrics.json, report.md and PNGs. Default: params.evaluate.out, else reports/eval.")] = None,
    device: DeviceOption = None,
    max_scenes: Annotated[Optional[int], typer.Option("--max-scenes", min=1, help="Score only the first N scenes (sorted).")] = None,
    render_scene: Annotated[Optional[str], typer.Option("--render-scene", help="Scene drawn top-down and used for latency. Default: the first scene.")] = None,
    latency_runs: Annotated[int, typer.Option("--latency-runs", min=0, help="Timed runs per model (after 2 warm-up runs); 0 skips latency.")] = 10,
) -> None:
    """Score models on every original point of a split (TTA), write metrics.json, report.md and pictures."""
    from rich.console import Console

    from pipeline.params import command_defaults, pick
    from srkd.errors import ConfigError

    console = Console(stderr=True)
    with user_errors():
        params = command_defaults("evaluate")
        checkpoints = list(checkpoint or [])
        cache_given = cache is not None  # `--cache` alone scores only the cached teacher
        if cache is None and not checkpoint and split is None:  # the default evaluation
            cache = params.get("cache")
        if not checkpoint and not cache_given:
            checkpoints = default_checkpoints(params, command_defaults("distill"))
            if not checkpoints and cache is None:
                raise ConfigError(
                    "nothing to evaluate: pass --checkpoint PATH (repeatable) and/or --cache DIR, or "
                    "run from a folder whose stages.yaml sets params.distill.out or "
                    "params.evaluate.checkpoints"
                )
        out_dir = Path(pick(out, params, "out", DEFAULT_OUT))
        use_tta = bool(pick(tta, params, "tta", True))
        split = pick(split, params, "split", None)
        data_root = pick(data_root, params, "data_root", None)
        dataset = pick(dataset.value if dataset else None, params, "dataset", None)
        grid_size = pick(grid_size, params, "grid_size", None)
        max_scenes = pick(max_scenes, params, "max_scenes", None)
        render_scene = pick(render_scene, params, "render_scene", None)

        from srkd.device import configure_threads
        from srkd.evaluate.report import render_markdown_table
        from srkd.evaluate.run import run_evaluation, write_evaluation

        configure_threads()

        with task_progress(console, "evaluate") as on_progress:
            evaluation = run_evaluation(
                checkpoints, cache=Path(cache) if cache is not None else None, dataset=dataset,
                data_root=Path(data_root) if data_root is not None else None, split=split, grid_size=grid_size, tta=use_tta,
                device=str(pick(device, params, "device", "auto")), max_scenes=max_scenes, render_scene=render_scene,
                latency_runs=latency_runs, progress=on_progress,
            )
        written = write_evaluation(evaluation, out_dir)
        typer.echo(render_markdown_table(evaluation.rows, evaluation.spec.class_names))
        console.print(f"wrote {len(written)} files to {out_dir}: "
                      + ", ".join(sorted(p.name for p in written.values())))  # fmt: skip
