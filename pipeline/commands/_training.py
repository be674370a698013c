"""Running a training job for `srkd distill` and `srkd train-teacher`: progress, rank, summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def launch_rank() -> int:
    """This process's rank in a torchrun job (its RANK when WORLD_SIZE > 1), else 0."""
    import os

    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def run_quietly(cfg) -> None:
    """Train as a rank other than 0: print nothing, show no warnings (rank 0 shows the ones every
    rank would); an error still reaches the command's error line."""
    import logging
    import warnings

    from srkd.distill.run import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            run(cfg)
        finally:
            logging.disable(logging.NOTSET)


def run_with_progress(cfg, title: str) -> None:
    """Run a training job with a rich progress bar, then print where the model went.

    Under torchrun only rank 0 prints (header, progress bar, loss shares, "done") and warns."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from srkd.device import configure_threads
    from srkd.distill.run import run

    configure_threads()
    if launch_rank() != 0:
        run_quietly(cfg)
        return
    console = Console(stderr=True)
    progress = Progress(
        TextColumn(f"[bold]{title}[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console,
    )
    state: dict[str, Any] = {}

    def on_start(info: dict[str, Any]) -> None:
        console.print(
            f"{title}: {info['steps']} steps ({info['steps_per_epoch']}/epoch) on {info['device']}"
            f" x{info['world']}, dataset {info['dataset']} at {info['data_root']}, "
            f"loss terms: {', '.join(info['losses'])}, {info.get('labels', 'dense labels')}"
        )
        if info.get("resume_note"):
            console.print(info["resume_note"])
        state["task"] = progress.add_task(title, total=info["steps"], info="")

    def on_step(record: dict[str, Any]) -> None:
        if "shares_shown" not in state:  # once per run: what each term weighs in the total
            state["shares_shown"] = True
            console.print(f"loss shares at step {record['step']}: {format_shares(record)}")
        progress.update(state["task"], completed=record["step"],
                        info=f"loss {record['loss']:.3f}  {record['points_per_s']:.0f} pts/s")

    with progress:
        result = run(cfg, on_step=on_step, on_start=on_start)
    best = f", best val mIoU {result.best_metric:.4f}" if result.best_metric is not None else ""
    if len(result.lr_schedule) > 1:  # a --resume with more epochs extended the run
        segments = ", ".join(f"{a}-{b}" for a, b in result.lr_schedule)
        console.print(f"lr schedule: one-cycle segments over steps {segments} (extended by --resume)")
    console.print(f"done: {result.step} steps{best}; model in {Path(cfg.out) / 'model.pt'}, "
                  f"curves in {Path(cfg.out) / 'curves.png'}")


def format_shares(record: dict[str, Any]) -> str:
    """'ce 0.41 (48.2%), kl 0.12 (14.1%), ...': each term's weighted value and share of the total."""
    parts = [f"{key[:-len('_share')]} {record[key[:-len('_share')] + '_weighted']:.4g} "
             f"({100 * record[key]:.1f}%)" for key in record if key.endswith("_share")]
    return ", ".join(parts) or "(no loss terms logged)"
