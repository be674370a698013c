"""Helpers shared by command bodies: turn library errors into one clear line and exit 1."""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Iterator
from typing import Annotated, Optional

import typer

from srkd.data.scannet import DATASETS
from srkd.data.transforms.color import COLOR_NORMS
from srkd.types import LOSS_METHODS, TARGET_MODES, UNPOOLING_MODES

# Choices are enums built from the library's own name lists (numpy-only modules), so typer refuses a
# bad value at once, before any command body imports torch or spconv.
ColorNorm = enum.StrEnum("ColorNorm", {name: name for name in COLOR_NORMS})
"""Choices of --color-norm (srkd.data.transforms.color.COLOR_NORMS)."""

Unpooling = enum.StrEnum("Unpooling", {name: name for name in UNPOOLING_MODES})
"""Choices of --unpooling (PTv3 decoder semantics, srkd.models.ptv3_blocks.SerializedUnpooling)."""

Method = enum.StrEnum("Method", {name: name for name in LOSS_METHODS})
"""Choices of --method (srkd.types.LOSS_METHODS; weights in srkd.losses.recipes)."""

Targets = enum.StrEnum("Targets", {name: name for name in TARGET_MODES})
"""Choices of --targets (srkd.types.TARGET_MODES)."""

DatasetName = enum.StrEnum("DatasetName", {name: name for name in DATASETS.names()})
"""Choices of --dataset (the registered srkd.data.scannet.DATASETS)."""

_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def _check_device(value: Optional[str]) -> Optional[str]:
    if value is not None and not _DEVICE.match(value):
        raise typer.BadParameter(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")
    return value


def optional_float(value: object) -> Optional[float]:
    """None stays None (e.g. "the dataset's default"); anything else must be a number."""
    return None if value is None else float(value)  # type: ignore[arg-type]


DeviceOption = Annotated[Optional[str], typer.Option("--device", callback=_check_device, help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]
"""--device of every command that runs a model; None = the stages.yaml value, else auto."""


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
