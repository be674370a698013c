"""`srkd evaluate`: precise mIoU on every original point, several models in one table, reports.

With no model flags it evaluates the student that stages.yaml's distill stage writes
(`params.distill.out`/model.pt), or the list in `params.evaluate.checkpoints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipeline.commands import options as O
from pipeline.commands._common import task_progress, user_errors
from srkd.evaluate.config import EvalConfig


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


@O.with_options(EvalConfig)
def evaluate(**cli: Any) -> None:
    """Score models on every original point of a split (TTA), write metrics.json, report.md and pictures."""
    from rich.console import Console

    console = Console(stderr=True)
    with user_errors():
        config = _settings(cli)

        from srkd.device import configure_threads
        from srkd.evaluate.report import render_markdown_table
        from srkd.evaluate.run import run_evaluation, write_evaluation

        configure_threads()

        with task_progress(console, "evaluate") as on_progress:
            evaluation = run_evaluation(
                list(config.checkpoint), cache=config.cache, dataset=config.dataset,
                data_root=config.data_root, split=config.split, grid_size=config.grid_size,
                tta=config.tta, device=config.device, precision=config.precision, max_scenes=config.max_scenes,
                render_scene=config.render_scene, latency_runs=config.latency_runs,
                progress=on_progress,
            )  # fmt: skip
        written = write_evaluation(evaluation, config.out)
        typer.echo(render_markdown_table(evaluation.rows, evaluation.spec.class_names))
        console.print(f"wrote {len(written)} files to {config.out}: "
                      + ", ".join(sorted(p.name for p in written.values())))  # fmt: skip


def _settings(cli: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The EvalConfig of this call. Beyond CLI > params.evaluate > default: the models default
    to params.evaluate.checkpoints, else the distill stage's student, unless --checkpoint or
    --cache is given; params.evaluate.cache joins only when neither models nor --split are given."""
    from dataclasses import replace

    from pipeline.params import command_defaults, resolve
    from srkd.errors import ConfigError

    config = resolve(EvalConfig, "evaluate", {**cli, "checkpoint": None, "cache": None})
    params = command_defaults("evaluate")
    checkpoints = list(cli["checkpoint"] or [])
    cache = cli["cache"]
    if cache is None and not checkpoints and cli["split"] is None:  # the default evaluation
        cache = params.get("cache")
    if not checkpoints and cli["cache"] is None:
        checkpoints = default_checkpoints(params, command_defaults("distill"))
        if not checkpoints and cache is None:
            raise ConfigError(
                "nothing to evaluate: pass --checkpoint PATH (repeatable) and/or --cache DIR, or "
                "run from a folder whose stages.yaml sets params.distill.out or "
                "params.evaluate.checkpoints"
            )
    return replace(config, checkpoint=checkpoints, cache=Path(cache) if cache is not None else None,
                   data_root=Path(config.data_root) if config.data_root is not None else None)
