"""Each option is declared once: a field of its command's settings dataclass carries the flag,
help, bounds, choices and check (srkd.settings.Flag), and the command's typer parameters are
built from those fields (pipeline.commands.options.with_options)."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

import dataclasses
import enum
import typing
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from cli import app
from pipeline import params as P
from pipeline.commands.options import with_options
from srkd.distill.config import OPTIM_OPTIONS, RUN_FIELDS, DistillConfig, TeacherConfig
from srkd.settings import Flag, option_flag, setting

from .conftest import WIDE

NOT_SETTINGS = {"predict": {"inputs"}}
"""Command parameters that are deliberately no settings field (predict's scans: arguments)."""


def _click_params(command: str) -> dict:
    return {p.name: p for p in get_command(app).commands[command].params}


@pytest.mark.parametrize("command", sorted(P.COMMAND_CONFIGS))
def test_every_option_is_built_from_its_settings_field(command):
    params = _click_params(command)
    fields = dataclasses.fields(P.config_class(command))
    assert set(params) - NOT_SETTINGS.get(command, set()) == {f.name for f in fields}
    for f in fields:
        flag, param = option_flag(f), params[f.name]
        assert param.opts[0] == (flag.name or "--" + f.name.replace("_", "-")), f.name
        assert param.help == flag.help and (param.min, param.max) == (flag.min, flag.max), f.name
        assert (param.callback is not None) == (flag.check is not None), f.name
        assert bool(param.secondary_opts) == (param.is_flag and flag.negatable), f.name
        choices = param.type_descriptor.annotation
        if flag.choices:
            assert [c.value for c in choices] == list(flag.choices), f.name
        else:
            assert not (isinstance(choices, type) and issubclass(choices, enum.Enum)), f.name
        if flag.short:
            assert flag.short in param.opts
    names = [p.opts[0] for p in params.values()]
    assert len(names) == len(set(names)), f"{command}: a flag name twice"


def test_an_option_several_commands_take_is_one_declaration():
    # the same help text on two fields is one Flag object (srkd.settings.DEVICE, ...), not a copy
    by_help: dict[str, set[int]] = {}
    for command in P.COMMAND_CONFIGS:
        for f in dataclasses.fields(P.config_class(command)):
            by_help.setdefault(option_flag(f).help, set()).add(id(option_flag(f)))
    copies = [text for text, flags in by_help.items() if len(flags) > 1]
    assert not copies, f"declared more than once: {copies}"
    shared = {"--device", "--grid-size", "--dataset", "--max-scenes", "--teacher-model"}
    for flag_name in shared:
        takers = [c for c in P.COMMAND_CONFIGS if any(p.opts[0] == flag_name for p in _click_params(c).values())]
        assert len(takers) >= 2, flag_name


def _tiny_command():
    """A command built from a settings class declared here, as a new command would be."""

    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
        count: int = setting(3, Flag("How many.", min=1, max=9))
        colour: str = setting("red", Flag("Which colour.", choices=("red", "blue")))
        fmt: str | None = setting(None, Flag("Output format.", name="--format", check=_no_x))
        fast: bool = setting(True, "Go fast.")
        force: bool = setting(False, Flag("Overwrite.", negatable=False))
        table: dict | None = setting({}, "name=value entries.")
        paths: list[Path] = setting([], Flag("Inputs.", short="-p"))

    seen: dict = {}

    @with_options(TinyConfig)
    def tiny(name: str, **cli) -> None:
        seen.update(cli, name=name)

    command = typer.Typer()
    command.command()(tiny)
    return command, seen


def _no_x(value: str) -> None:
    if "x" in value:
        raise ValueError(f"{value!r} has an x")


def test_a_new_field_is_a_new_option_with_its_bounds_choices_and_check():
    command, seen = _tiny_command()
    runner = CliRunner()
    ok = runner.invoke(command, ["n", "--count", "4", "--colour", "blue", "--format", "png", "--no-fast",
                                 "--force", "--table", "a=1", "--table", "b=2", "-p", "x.ply"])
    assert ok.exit_code == 0, ok.output
    assert seen["name"] == "n" and (seen["count"], seen["colour"], seen["fmt"]) == (4, "blue", "png")
    assert (seen["fast"], seen["force"], seen["table"], seen["paths"]) == (False, True, ["a=1", "b=2"], [Path("x.ply")])
    runner.invoke(command, ["n"])
    assert all(seen[k] is None for k in ("count", "colour", "fmt", "fast", "force", "table", "paths"))  # not given
    for argv, message in ((["--count", "0"], "greater than or equal to 1"), (["--colour", "green"], "'green' is not one of"),
                          (["--format", "xyz"], "'xyz' has an x"), (["--no-force"], "No such option")):
        result = runner.invoke(command, ["n", *argv])
        assert result.exit_code == 2 and message in result.output, result.output
    help_text = runner.invoke(command, ["--help"], env=WIDE).output
    order = [help_text.index(flag) for flag in ("--count", "--colour", "--format", "--fast", "--force",
                                                "--table", "--paths")]
    assert order == sorted(order)  # the class body's order


def test_a_field_without_a_flag_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Bare:
        count: int = dataclasses.field(default=1)

    with pytest.raises(TypeError, match="'count' has no Flag"):
        with_options(Bare)(lambda **cli: None)


def _another(value, hint):
    """A value of type `hint` (None left out) other than `value`."""
    if type(None) in typing.get_args(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return not value
    if hint in (int, float):
        return (value or 0) + 1
    if hint is Path:
        return Path("elsewhere")
    if dict in (hint, typing.get_origin(hint)):
        return {"kl": 3.0}
    return "other"


@pytest.mark.parametrize("config", [DistillConfig, TeacherConfig])
def test_every_training_option_sets_one_field_of_the_run_record(config):
    # a new option cannot be dropped on its way into the checkpoint's train_params
    hints = typing.get_type_hints(config)
    base = config().run_config().to_json()
    for f in dataclasses.fields(config):
        changed = dataclasses.replace(config(), **{f.name: _another(getattr(config(), f.name), hints[f.name])})
        record = changed.run_config().to_json()
        field = "optim" if f.name in OPTIM_OPTIONS else RUN_FIELDS.get(f.name, f.name)
        assert {k for k in base if base[k] != record[k]} == {field}, f.name
