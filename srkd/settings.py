"""Declaring a command's settings: dataclass fields that carry their own default and its story.

Each srkd command has one settings dataclass (`srkd.distill.config.DistillConfig`,
`srkd.cache_teacher.config.CacheTeacherConfig`, `srkd.evaluate.config.EvalConfig`, ...). Its
field names are the command's option names (`--batch-size` -> `batch_size`), its field defaults
are the only home of the command's defaults, and `setting(...)` records the rest on the field:

    key       the name stages.yaml uses in the command's params section when it differs from the
              option's (generate-synthetic's `--out` is `params.data.root`)
    note      where a None default is filled in later, what it becomes ("the dataset's: ...",
              from srkd.data.registry.per_dataset)
    cli_only  the option cannot be set in stages.yaml (e.g. `--overwrite`, `--resume`)

Standard library only: the CLI imports these classes to check options and render `--help`
before torch, spconv or zarr are imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_DEVICE = "auto"
"""--device of every command that runs a model: CUDA when present, else the CPU."""


def setting(default: Any = None, *, key: str | None = None, note: str | None = None,
            cli_only: bool = False) -> Any:
    """A dataclass field with its default and metadata (see the module docstring).

    A list or dict default is copied per instance (dataclass default_factory)."""
    metadata = {"key": key, "note": note, "cli_only": cli_only}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def stages_key(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """The key of field `f` in stages.yaml's params section (its own name unless renamed)."""
    return f.metadata.get("key") or f.name


def is_cli_only(f: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    """True when stages.yaml cannot set field `f`."""
    return bool(f.metadata.get("cli_only"))


def default_note(f: dataclasses.Field) -> str | None:  # type: ignore[type-arg]
    """What a None default stands for, as written on the field (None when nothing was said)."""
    return f.metadata.get("note")


def field_default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    """The field's default value (a fresh copy for factory defaults); MISSING when required."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
