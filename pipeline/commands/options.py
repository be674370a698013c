"""The typer options of srkd's commands, built from the settings dataclasses' fields.

A configurable command (one with a settings dataclass, pipeline.params.COMMAND_CONFIGS) declares
each option once, as a field of that class: `setting(default, Flag(help, bounds, choices, ...))`
(srkd.settings). `with_options(Config)` turns the fields into the command's typer parameters, so
the command is written as `def command(own arguments..., **cli)` and adding an option is adding
one field. Every generated default is None, meaning "not given": the value then comes from
stages.yaml or the field's default (`pipeline.params.resolve`), the only home of the defaults.
`SrkdCommand` adds each option's effective default and its source to `--help`.

Choices become enums, so typer refuses a bad value at once, before any command body imports
torch or spconv. The few parameters that are no setting (predict's scans, and the options of the
commands without a settings class: inspect-cache, prepare, run) are `Annotated` aliases below.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from srkd.settings import Flag, option_flag

F = typing.TypeVar("F", bound=Callable[..., None])


def with_options(config: type) -> Callable[[F], F]:
    """Give a command written as `def command(own..., **cli)` one typer option per field of its
    settings dataclass `config`, all defaulting to None; typer passes them into `cli` by name.

    Order in `--help`: the command's own parameters, then the fields `config` declares itself
    (in its class body's order), then the fields it inherits."""

    def declare(command: F) -> F:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = typing.get_type_hints(config)
        generated = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                       annotation=cli_annotation(f, hints[f.name]))
                     for f in _in_help_order(config)]
        command.__signature__ = inspect.Signature(own + generated, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + generated}
        return command

    return declare


def _in_help_order(config: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """`config`'s fields: those its own class body declares first, then the inherited ones."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    own = [name for name in vars(config).get("__annotations__", {}) if name in fields]
    return [fields[name] for name in own] + [f for name, f in fields.items() if name not in own]


def cli_annotation(f: dataclasses.Field, hint: Any) -> Any:  # type: ignore[type-arg]
    """`Annotated[T | None, typer.Option(...)]` for settings field `f` of type `hint` (its `Flag`
    gives names, help, bounds and check): T is the field's type without None, an enum of the
    flag's choices, or list[str] (repeatable name=value items) for a mapping."""
    flag = option_flag(f)
    value = _without_none(hint)
    if flag.choices:
        value = _choice_enum(f.name, flag.choices)
    elif dict in (value, typing.get_origin(value)):
        value = list[str]
    name = flag.name or "--" + f.name.replace("_", "-")
    if value is bool and flag.negatable:
        name = f"{name}/--no-{name.removeprefix('--')}"
    names = (name, flag.short) if flag.short else (name,)
    option = typer.Option(*names, help=flag.help, min=flag.min, max=flag.max, callback=_callback(flag))
    return Annotated[value | None, option]


def _without_none(hint: Any) -> Any:
    """`X` of `X | None` (or of Optional[X]); `hint` itself otherwise."""
    if typing.get_origin(hint) in (UnionType, typing.Union):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def _choice_enum(field: str, choices: tuple[str, ...]) -> type[enum.StrEnum]:
    """The enum typer offers for a field with fixed choices (values read back as str)."""
    return enum.StrEnum("".join(part.title() for part in field.split("_")), {c: c for c in choices})


def _callback(flag: Flag) -> Callable[[Any], Any] | None:
    """A typer callback running `flag.check` on a given value (a ValueError becomes typer's
    'Invalid value' error), or None when the flag has no check."""
    check = flag.check
    if check is None:
        return None

    def callback(value: Any) -> Any:
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    return callback


def _opt(*names: str, **kwargs: Any) -> Any:
    return typer.Option(*names, **kwargs)


P = Optional[Path]
# -- predict -------------------------------------------------------------------------------------
INPUTS_HELP = (
    "Scans to label: a .ply (a mesh such as ScanNet's scene*_vh_clean_2.ply, whose vertices are "
    "the points, or a point cloud), or a folder holding coord.npy (N, 3) metres plus, as the model "
    "needs, color.npy (N, 3) 0..255 and normal.npy (N, 3) (a Pointcept scene folder; other files "
    "such as labels are ignored). Colour must be present when the model takes colour; missing "
    "normals are computed (mesh: area-weighted face normals; point cloud: PCA over k nearest "
    "neighbours, oriented towards the scan's centroid)."
)
Inputs = Annotated[list[Path], typer.Argument(help=INPUTS_HELP, show_default=False)]

# -- commands without a settings config (their defaults are the flags' own: off, 1, stages.yaml) --
InspectCacheDir = Annotated[Path, typer.Argument(help="Teacher cache directory (written by `srkd cache-teacher`).")]
Verify = Annotated[bool, _opt("--verify", help="Decode every scene, check it against the data it was built from, and score the cached teacher against ground truth.")]
Repair = Annotated[bool, _opt("--repair", help="With --verify: mark damaged scenes as uncommitted, so the next `srkd cache-teacher` with the same settings rebuilds them.")]
InspectDataRoot = Annotated[P, _opt("--data-root", help="Dataset root for the labels of --verify's mIoU (default: the root recorded in the cache).")]
AsJson = Annotated[bool, _opt("--json", help="Print the summary (and verification) as JSON instead of tables.")]
Upgrade = Annotated[bool, _opt("--upgrade", help="Add the Zarr dimension names and decode attributes that caches written by older srkd versions lack (so xarray opens them); only array metadata changes, never a chunk or the fingerprint.")]
Migrate = Annotated[P, _opt("--migrate", help="Rewrite the cache (any schema) as a schema-3 cache (samples packed per sequence) in this new directory: encoded arrays copied, decoded values checked bit-identical; resumable.")]
RawScanNet = Annotated[Path, _opt("--raw", help="ScanNet release folder: scans/, labels tsv and split lists (in it or in meta/).")]
PrepareOut = Annotated[Path, _opt("--out", help="Output root; scenes go to <out>/<split>/<scene>/.")]
PrepareWorkers = Annotated[int, _opt("--workers", min=1, help="Scenes converted in parallel (processes).")]
Splits = Annotated[Optional[list[str]], _opt("--splits", help="Split to convert (train, val, test); repeatable or comma-separated. Default: every split with a list file.")]
Stage = Annotated[Optional[list[str]], _opt("--stage", help="Run only this stage (and what it needs); repeatable.")]
Force = Annotated[bool, _opt("--force", help="Run the named stages (or all) even if up to date.")]
SetParam = Annotated[Optional[list[str]], _opt("--set", help="Override a parameter: key=value, e.g. distill.epochs=3; repeatable.")]
StagesFile = Annotated[Path, _opt("--file", help="The pipeline file.")]
DryRun = Annotated[bool, _opt("--dry-run", help="Say what would run and why, run nothing.")]
Jobs = Annotated[int, _opt("--jobs", "-j", min=1, help=(
    "Stages to run at once: a stage starts as soon as the stages it needs have finished. With "
    "more than 1, each stage's output lines are prefixed with its name, and each gets its share "
    "of the CPU threads (half the cores / jobs) unless SRKD_THREADS is set."))]


class SrkdCommand(TyperCommand):
    """A typer command whose `--help` shows each option's effective default and its source:
    '[default: 40 (stages.yaml)]', '[default: 100]' or what a None default becomes."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from pipeline.params import COMMAND_CONFIGS, describe_defaults

        if self.name in COMMAND_CONFIGS:
            shown = describe_defaults(self.name)
            bracket = "\\[" if self.rich_markup_mode == "rich" else "["  # "[" opens rich markup
            for param in self.params:
                if param.name in shown and getattr(param, "help", None) is not None:
                    param.help = f"{param.help} {bracket}default: {shown[param.name]}]"
                    param.show_default = False
        super().format_help(ctx, formatter)
