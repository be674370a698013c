"""Helpers shared by command bodies: turn library errors into one clear line and exit 1."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

import typer

from srkd.data.transforms_color import COLOR_NORMS
from srkd.types import UNPOOLING_MODES

ColorNorm = enum.StrEnum("ColorNorm", {name: name for name in COLOR_NORMS})
"""Choices of --color-norm (srkd.data.transforms_color.COLOR_NORMS)."""

Unpooling = enum.StrEnum("Unpooling", {name: name for name in UNPOOLING_MODES})
"""Choices of --unpooling (PTv3 decoder semantics, srkd.models.ptv3_blocks.SerializedUnpooling)."""


class Device(str, enum.Enum):
    """Where models run: auto = CUDA when available, else CPU."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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
