"""Declaring a command's settings: one dataclass field per option, carrying everything about it.

Each srkd command has one settings dataclass (`srkd.distill.config.DistillConfig`,
`srkd.cache_teacher.config.CacheTeacherConfig`, `srkd.evaluate.config.EvalConfig`, ...). Its
field names are the command's option names (`--batch-size` -> `batch_size`), its field defaults
are the only home of the command's defaults, and `setting(default, flag, ...)` records the rest
on the field:

    flag      how the option is given on the command line (`Flag`: help text, bounds, choices,
              a value check, its name where it is not --<field-name>); the CLI builds the typer
              option from it (pipeline.commands.options.with_options), so adding an option to a
              command is adding one field to its settings class
    key       the name stages.yaml uses in the command's params section when it differs from the
              option's (generate-synthetic's `--out` is `params.data.root`)
    note      where a None default is filled in later, what it becomes ("the dataset's: ...",
              from srkd.data.registry.per_dataset)
    cli_only  the option cannot be set in stages.yaml (e.g. `--overwrite`, `--resume`)

An option that several commands take is one `Flag` constant (DEVICE, GRID_SIZE, MAX_SCENES,
TEACHER_MODEL here; srkd.data.registry.DATASET_FLAG) that each command's field names.

Standard library only: the CLI imports these classes to check options and render `--help`
before torch, spconv or zarr are imported.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any

DEFAULT_DEVICE = "auto"
"""--device of every command that runs a model: CUDA when present, else the CPU."""

THREADS_ENV = "SRKD_THREADS"
"""Environment variable that sets the torch CPU threads of every srkd command."""


def default_cpu_threads(share: int = 1) -> int:
    """Torch CPU threads when neither the command nor $SRKD_THREADS says: half the cores, split
    between `share` processes running side by side (`srkd run --jobs`), at least 1."""
    return max(1, (os.cpu_count() or 2) // 2 // share)


PRECISIONS = ("fp32", "bf16")
"""--precision of inference (`srkd evaluate`, `srkd predict`); the first is the default."""

BF16_MIN_AGREEMENT = 0.995
"""The share of points whose bf16 argmax must equal fp32's for `srkd evaluate` to call bf16 safe
for a model; below it the report says to keep fp32."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a settings field is given on the command line.

    help:      the option's short help (`--help` adds the effective default and its source)
    name:      the long flag when it is not `--<field name with dashes>` (e.g. "--format")
    short:     a one-letter alias (e.g. "-c")
    min, max:  bounds of a number (refused by the CLI before the command runs)
    choices:   the only values accepted (a str field; the CLI offers them as a choice)
    check:     value -> None, raising ValueError with the message for a bad value
    negatable: a bool option also gets --no-<name> (False: a switch that can only be turned on)

    The value's type is the field's (without None): a list field is a repeatable option, a
    mapping field (dict) a repeatable `name=value`."""

    help: str
    name: str | None = None
    short: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    negatable: bool = True


_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def check_device(value: str) -> None:
    """ValueError unless `value` names a device: auto, cpu, cuda or cuda:N (no torch needed)."""
    if not _DEVICE.match(str(value)):
        raise ValueError(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")


# -- options several commands take -----------------------------------------------------------------
DEVICE = Flag("auto (CUDA when present, else CPU), cpu, cuda or cuda:N.", check=check_device)
GRID_SIZE = Flag("Voxel size in metres.", min=1e-6)
PRECISION = Flag("Inference precision: fp32, or bf16 (a bfloat16 autocast: matrix products in bf16, "
                 "sparse convolutions on the CPU in fp32); opt-in, see docs/deployment.md.",
                 choices=PRECISIONS)
MAX_SCENES = Flag("Only the first N scenes of the split (sorted).", min=1)
TEACHER_MODEL = Flag("Registered preset a Pointcept teacher checkpoint is loaded into (e.g. ptv3_base); "
                     "an srkd checkpoint records its own.")


def setting(default: Any, flag: Flag | str, *, key: str | None = None, note: str | None = None,
            cli_only: bool = False) -> Any:
    """A dataclass field with its default and metadata (see the module docstring); a str `flag`
    is `Flag(help=flag)`.

    A list or dict default is copied per instance (dataclass default_factory)."""
    flag = Flag(flag) if isinstance(flag, str) else flag
    metadata = {"flag": flag, "key": key, "note": note, "cli_only": cli_only}
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


def option_flag(f: dataclasses.Field) -> Flag:  # type: ignore[type-arg]
    """How field `f` is given on the command line; TypeError when it was declared without one."""
    flag = f.metadata.get("flag")
    if not isinstance(flag, Flag):
        raise TypeError(f"settings field {f.name!r} has no Flag: declare it with setting(default, flag)")
    return flag
