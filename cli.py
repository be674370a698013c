"""The `srkd` command line: a typer app whose commands live in `pipeline.commands.*`.

Command modules import only typer, the standard library and light srkd modules at import time
(heavy imports such as torch and spconv happen inside the command bodies), so `srkd --help` stays
fast and a bad option value is refused before torch is imported. `SrkdCommand` shows each option's
effective default and where it comes from (stages.yaml or the command's config) in `--help`.
"""

from __future__ import annotations

import importlib

import typer

from pipeline.commands.options import SrkdCommand

# (command name, "module:attribute"): a function is a command, a typer.Typer a group.
# Add one line per built command.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("prepare", "pipeline.commands.prepare:app"),
    ("generate-synthetic", "pipeline.commands.synthetic:generate_synthetic"),
    ("train-teacher", "pipeline.commands.train_teacher:train_teacher"),
    ("cache-teacher", "pipeline.commands.cache_teacher:cache_teacher"),
    ("inspect-cache", "pipeline.commands.inspect_cache:inspect_cache"),
    ("distill", "pipeline.commands.distill:distill"),
    ("evaluate", "pipeline.commands.evaluate:evaluate"),
    ("predict", "pipeline.commands.predict:predict"),
    ("export", "pipeline.commands.export:export"),
    ("run", "pipeline.commands.run:run"),
)

app = typer.Typer(
    name="srkd",
    help="Offline teacher-cache knowledge distillation (SRKD) for 3D point-cloud segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _show_version(value: bool) -> None:
    if value:
        import srkd

        typer.echo(f"srkd {srkd.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the srkd version and exit."),
) -> None:
    """Offline teacher-cache knowledge distillation (SRKD) for 3D point-cloud segmentation."""


for _name, _target in COMMANDS:
    _module, _attr = _target.split(":")
    _obj = getattr(importlib.import_module(_module), _attr)
    if isinstance(_obj, typer.Typer):  # a command group, e.g. `srkd prepare scannet`
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name, cls=SrkdCommand)(_obj)


if __name__ == "__main__":
    app()
