"""Atomic file writes: the one home of "write a temporary sibling, fsync, rename into place".

A reader (or a resumed run) sees either the old complete file or the new complete one, never a torn
one; the temporary file is removed whatever happens (an interrupt included). Files are created with
the usual permissions (0666 minus the process umask, i.e. 0644 under the common umask 022), not the
0600 of `tempfile.mkstemp`, so reports and checkpoints are readable by the people they are for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a fresh temporary sibling of `path`, fsync it, rename it onto `path`.

    Args:
        path: the file to create or replace; its parent folder is created if missing.
        write: writes the whole content to the path it is given (e.g. `fig.savefig`,
            `torch.save(obj, tmp)`, `tmp.write_text(...)`).
    Returns:
        `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically; returns the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write `value` as strict JSON (no NaN / inf; a trailing newline) atomically; returns the path.

    Raises ValueError / TypeError (before anything is written) when `value` is not JSON-able.
    """
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
