"""Helpers shared by command bodies: turn library errors into one clear line and exit 1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer


@contextlib.contextmanager
def task_progress(console, title: str) -> Iterator:  # type: ignore[no-untyped-def]
    """A rich progress bar for one task of a command (`title`), yielding the library's progress
    callback `(done, total, message) -> None`; the bar closes with the block."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(f"[bold]{title}[/bold] {{task.description}}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console)  # fmt: skip
    with bar:
        task = bar.add_task("loading", total=None)

        def on_progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message)

        yield on_progress


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report `SrkdError` (and missing files) as one red line on stderr and exit with code 1."""
    from srkd.errors import SrkdError

    try:
        yield
    except (SrkdError, FileNotFoundError) as exc:
        typer.secho(f"error: {_message(exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


def _message(exc: BaseException) -> str:
    """The error's own message. A DataLoader worker re-raises an error as the same type with the
    worker's traceback as its text ("Caught DataError in DataLoader worker process 0. Original
    Traceback ..."): keep only the original message, its last line."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return last.removeprefix(f"{type(exc).__module__}.{type(exc).__name__}: ")
