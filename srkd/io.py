"""Writing files and recording values: the one home of atomic writes and of plain values.

Atomic writes ("write a temporary sibling, fsync, rename into place"): a reader (or a resumed
run) sees either the old complete file or the new complete one, never a torn one; the temporary
file is removed whatever happens (an interrupt included). Files are created with the usual
permissions (0666 minus the process umask, i.e. 0644 under the common umask 022), not the 0600
of `tempfile.mkstemp`, so reports and checkpoints are readable by the people they are for.

Plain values (`to_plain`): what a checkpoint, a train state or a cache's metadata records is
nested dicts and lists of str / int / float / bool / None, so it loads without running code
(``torch.load(weights_only=True)``, JSON) and compares equal across sessions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from srkd.errors import ConfigError


def temp_sibling(path: Path) -> Path:
    """The temporary file `atomic_write` fills before renaming it onto `path`:
    ``.<name>.<pid>.tmp`` in the same folder (one per process, so writers never share one)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _replace_atomically(path: Path, fill: Callable[[Path], Any]) -> Path:
    """Create `temp_sibling(path)` (0666 minus umask), `fill` it (durably), rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        fill(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the write's own error
            tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a fresh temporary sibling of `path`, fsync it, rename it onto `path`.

    Args:
        path: the file to create or replace; its parent folder is created if missing.
        write: writes the whole content to the path it is given (e.g. `fig.savefig`,
            `tmp.write_text(...)`).
    Returns:
        `path`.
    """

    def fill(tmp: Path) -> None:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    return _replace_atomically(path, fill)


class _RecordingFile:
    """A binary file that keeps the first OSError of `write`: torch.save reports a failed write
    (e.g. ENOSPC) as RuntimeError("[enforce fail at inline_container.cc] unexpected pos"), errno lost."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_write_stream(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """`atomic_write` for writers of an open binary file (e.g. ``torch.save(obj, f)``).

    An OSError of the file's writes (disk full, ...) reaches the caller as that OSError, also when
    the writer reported it as something else (torch.save's RuntimeError). Returns `path`.
    """

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as raw:
            f = _RecordingFile(raw)
            try:
                write(f)  # type: ignore[arg-type]
            except Exception as e:
                if f.error is not None:  # the real cause behind the writer's own error
                    raise f.error from e
                raise
            raw.flush()
            os.fsync(raw.fileno())

    return _replace_atomically(path, fill)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically; returns the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write `value` as strict JSON (no NaN / inf; a trailing newline) atomically; returns the path.

    Raises ValueError / TypeError (before anything is written) when `value` is not JSON-able.
    """
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


# ---- plain values -----------------------------------------------------------------------------

_JSON_KEYS = {True: "true", False: "false", None: "null"}


def to_plain(value: Any, *, where: str = "value", keep_tuples: bool = False, lenient: bool = False,
             json: bool = False, error: type[Exception] = ConfigError) -> Any:
    """`value` as nested dicts (str keys) and lists of str / int / float / bool / None.

    The three records that need plain values differ in exactly these ways (the flags):

    - default (checkpoints): str / int / float / bool / None are kept as they are, numpy and
      torch 0-d scalars become their Python value (``.item()``), paths become str; a non-string
      key or any other value raises `error` naming where it sits ("train_params.optim.lr").
    - `keep_tuples`: tuples stay tuples (torch.save keeps them); otherwise they become lists.
    - `lenient` (a run's resume identity and checkpoint metadata): keys become ``str(key)``;
      every value but str / int / bool / None goes through ``float()`` (numpy scalars included).
    - `json` (cache metadata, the input of the cache fingerprint): exactly what a sorted JSON
      round trip gives: subclasses (numpy float64, str enums) become the base type, keys are
      spelt as JSON spells them and sorted, NaN / inf and every non-JSON type (numpy ints,
      float32, paths) raise `error`.

    Args:
        where: the value's name in error messages; nested values add ".key" / "[index]".
        error: the exception class raised for a value that cannot be made plain.
    """
    if json and (lenient or keep_tuples):
        raise ValueError("to_plain: json=True already fixes tuples and leniency")
    rules = (keep_tuples, lenient, json, error)
    return _walk(value, where, rules)


def _walk(value: Any, where: str, rules: tuple[bool, bool, bool, type[Exception]]) -> Any:
    keep_tuples, lenient, json_, error = rules
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _key(key, where, lenient, json_, error)
            out[name] = _walk(item, f"{where}.{name}", rules)
        return dict(sorted(out.items())) if json_ else out
    if isinstance(value, list | tuple):
        items = [_walk(v, f"{where}[{i}]", rules) for i, v in enumerate(value)]
        return tuple(items) if keep_tuples and isinstance(value, tuple) else items
    if json_:
        return _json_leaf(value, where, error)
    if lenient:
        return _lenient_leaf(value, where, error)
    return _leaf(value, where, error)


def _key(key: Any, where: str, lenient: bool, json_: bool, error: type[Exception]) -> str:
    if isinstance(key, str):
        return str.__str__(key) if json_ else key
    if lenient:
        return str(key)
    if json_ and (key is None or isinstance(key, bool)):
        return _JSON_KEYS[key]
    if json_ and isinstance(key, int | float):
        leaf = _json_leaf(key, where, error)
        return int.__repr__(leaf) if isinstance(leaf, int) else float.__repr__(leaf)
    raise error(f"{where}: key {key!r} is not a string")


def _leaf(value: Any, where: str, error: type[Exception]) -> Any:
    """Checkpoint rules: plain values as they are, 0-d numpy / torch scalars, paths."""
    if isinstance(value, bool | str | int | float) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise error(f"{where}: value of type {type(value).__name__} cannot be stored as a plain value; "
                "use plain numbers, strings, lists and dicts")


def _lenient_leaf(value: Any, where: str, error: type[Exception]) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise error(f"{where}: value of type {type(value).__name__} is not a number, string, "
                    "bool or None") from None


def _json_leaf(value: Any, where: str, error: type[Exception]) -> Any:
    """JSON rules: the base type of str / int / float / bool / None; finite floats only."""
    if value is None or isinstance(value, bool):
        return None if value is None else bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(int.__repr__(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{where}: {value!r} is not a finite number; use plain JSON values "
                        "(no numpy, NaN)")
        return float(float.__repr__(value))
    raise error(f"{where}: value of type {type(value).__name__} is not JSON serializable; use "
                "plain JSON values (no numpy, NaN)")
