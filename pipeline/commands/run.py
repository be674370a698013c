"""`srkd run`: all stages of stages.yaml in dependency order, re-running only what changed."""

from __future__ import annotations

import typer

from pipeline.commands import options as O
from pipeline.commands._common import user_errors
from pipeline.params import DEFAULT_JOBS, DEFAULT_STAGES_FILE


def run(
    stage: O.Stage = None,
    force: O.Force = False,
    set_: O.SetParam = None,
    file: O.StagesFile = DEFAULT_STAGES_FILE,
    dry_run: O.DryRun = False,
    jobs: O.Jobs = DEFAULT_JOBS,
) -> None:
    """Run the pipeline in stages.yaml: each stage only if its cmd, deps or params changed.

    Each stage runs in its own process group, which is stopped as a whole when `srkd run` is
    interrupted (exit code 128 + signal number) or killed (see pipeline.runner).
    """
    from rich.console import Console

    from pipeline.params import parse_overrides
    from pipeline.runner import RunInterrupted, run_pipeline
    from pipeline.spec import load_spec

    console = Console(stderr=True)
    with user_errors():
        spec = load_spec(file)
        try:
            results = run_pipeline(
                spec, targets=stage or None, force=force, overrides=parse_overrides(set_ or []),
                dry_run=dry_run, log=console.print, jobs=jobs,
            )
        except RunInterrupted as exc:  # one red line like any error, but the signal's exit code
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=exc.exit_code) from None
        ran = [r.name for r in results if r.ran]
        console.print(f"{'would run' if dry_run else 'ran'} {len(ran)} of {len(results)} stages"
                      + (f": {', '.join(ran)}" if ran else ""))
        left_out = [name for name, s in spec.stages.items()
                    if s.manual and name not in {r.name for r in results}]
        if left_out:
            console.print(f"[dim]manual stages not run (name them with --stage): {', '.join(left_out)}[/dim]")
