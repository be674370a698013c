"""`srkd cache-teacher`: run a frozen teacher once over a dataset split, write the Zarr teacher cache.

Options not given come from stages.yaml (`params.cache`, and `params.data.root` for the data root)
when the file exists, else from `srkd.cache_teacher.config.CacheTeacherConfig` (`--help` shows which).
"""

from __future__ import annotations

from typing import Any

import typer

from pipeline.commands import options as O
from pipeline.commands._common import task_progress, user_errors
from srkd.cache_teacher.config import CacheTeacherConfig


@O.with_options(CacheTeacherConfig)
def cache_teacher(**cli: Any) -> None:
    """Run the frozen teacher once per scene and view; write its per-point logits and features."""
    with user_errors():
        from dataclasses import replace

        from pipeline.params import command_defaults, resolve

        config = resolve(CacheTeacherConfig, "cache", cli)
        if config.data_root is None:  # the pipeline's dataset, as generate-synthetic writes it
            config = replace(config, data_root=command_defaults("data").get("root"))
        config.check()
        _run(config)


def _run(config) -> None:  # type: ignore[no-untyped-def]
    """Build the cache `config` (a CacheTeacherConfig) describes, with a progress bar."""
    import time

    from rich.console import Console

    from srkd.cache.inspect import summarize
    from srkd.cache_teacher.build import SceneDone, build_cache
    from srkd.device import configure_threads

    configure_threads()  # the in-process teacher; dask workers set their own share

    job = config.job()
    console = Console(stderr=True)
    state = {"points": 0, "done": 0, "todo": 0, "t0": time.perf_counter()}
    with task_progress(console, "cache-teacher") as on_progress:

        def on_start(todo: int, skipped: int) -> None:
            what = f"resuming: {skipped} scene(s) already committed" if skipped else "new cache"
            console.print(f"{what}; {todo} scene(s) to compute", highlight=False)
            state.update(todo=todo, t0=time.perf_counter())
            on_progress(0, todo, "scenes")

        def on_scene(event: SceneDone) -> None:
            state["points"] += event.points
            state["done"] += 1
            rate = state["points"] / max(time.perf_counter() - state["t0"], 1e-9)
            on_progress(state["done"], state["todo"], f"scenes, {rate:,.0f} pts/s")

        report = build_cache(
            job, overwrite=bool(config.overwrite), workers=int(config.workers), scheduler=config.scheduler,
            max_scenes=config.max_scenes, on_start=on_start, on_scene=on_scene,
        )  # fmt: skip
    summary = summarize(report.out)
    if report.repaired:
        typer.echo(f"rebuilt {len(report.repaired)} committed sequence(s) or scene(s) that were incomplete: "
                   f"{', '.join(report.repaired[:5])}{' ...' if len(report.repaired) > 5 else ''}")
    typer.echo(
        f"cache {report.out}: wrote {len(report.written)} scene(s), skipped {len(report.skipped)} "
        f"already committed; {summary['scenes']} scenes, {summary['points']:,} points, "
        f"{summary['bytes_per_point']:.1f} bytes/point/entry ({summary['entries_per_scene']} entries per scene), "
        f"{report.seconds:.1f} s"
    )
