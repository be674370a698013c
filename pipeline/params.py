"""Parameter values for commands: stages.yaml's `params` section plus `--set key=value` overrides.

`srkd run --set distill.epochs=3` passes its overrides to every stage command through the
environment variable SRKD_SET (JSON), so a command invoked by the runner sees the same values
the runner fingerprinted. A command run by hand reads ./stages.yaml when it exists.

The sections that srkd's own commands read (SECTION_COMMANDS) are checked: each key must be the
name of an option of that command (`--batch-size` -> `batch_size`), so a typo such as
`epoch: 1` is an error naming the file, the line and the closest known key instead of being
silently ignored. The option list in the command's signature is the only source of these names.
Options with a non-None default (such as `--overwrite`, `--resume`) are never looked up in
stages.yaml and are therefore not valid keys. Only a section's own keys are checked: nested
values (`distill.weights`, a mapping of loss settings) are checked by the library when the
command starts (`srkd.losses.recipe` names the known settings), and sections no srkd command
reads (e.g. the parameters of a stage of your own) are free-form. Caveat: an option whose default
is None but which its command never looks up in stages.yaml passes the check and is ignored; such
a command should read it with `pick` (or give the option a non-None default).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from srkd.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.spec import PipelineSpec

ENV_OVERRIDES = "SRKD_SET"
ENV_STAGES_FILE = "SRKD_STAGES"
DEFAULT_STAGES_FILE = Path("stages.yaml")

SECTION_COMMANDS: dict[str, str] = {
    "data": "pipeline.commands.synthetic:generate_synthetic",
    "teacher": "pipeline.commands.train_teacher:train_teacher",
    "cache": "pipeline.commands.cache_teacher:cache_teacher",
    "distill": "pipeline.commands.distill:distill",
    "evaluate": "pipeline.commands.evaluate:evaluate",
}
"""params section -> the command ("module:function") whose options its keys are. Other commands
read some of these too (cache-teacher and train-teacher read data.root; evaluate reads
distill.out)."""

RENAMED: dict[str, dict[str, str]] = {
    "data": {"out": "root"},
    "distill": {"weight": "weights"},
    "evaluate": {"checkpoint": "checkpoints"},
}
"""Where a section's key is not the option's name: option name -> key (--out of
generate-synthetic reads params.data.root)."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ['a.b=3', 'c=x'] into {'a.b': 3, 'c': 'x'} (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set distill.epochs=3")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def apply_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `params` with dotted-key overrides set; the key must already exist."""
    result = copy.deepcopy(params)
    for key, value in overrides.items():
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}: {part!r} is not a parameter group in stages.yaml")
            node = node[part]
        if parts[-1] not in node:
            known = ", ".join(sorted(node)) or "(none)"
            raise ConfigError(f"--set {key}: no such parameter; known here: {known}")
        node[parts[-1]] = value
    return result


def env_overrides() -> dict[str, Any]:
    """Overrides handed down by `srkd run` (empty when run by hand)."""
    raw = os.environ.get(ENV_OVERRIDES)
    return json.loads(raw) if raw else {}


def load_params(path: Path | None = None, check: tuple[str, ...] = ()) -> dict[str, Any]:
    """The effective parameters: stages.yaml `params` (if the file exists) + env overrides.

    The sections named in `check` are validated first (see `check_section`).
    """
    from pipeline.spec import load_spec

    path = Path(path or os.environ.get(ENV_STAGES_FILE) or DEFAULT_STAGES_FILE)
    if not path.is_file():
        return {}
    spec = load_spec(path)
    for section in check:
        check_section(spec, section)
    return apply_overrides(spec.params, env_overrides())


def command_defaults(section: str, path: Path | None = None) -> dict[str, Any]:
    """The parameter group `section` (e.g. 'distill'), or {} without a stages.yaml.

    Raises ConfigError (file, line, key, closest known key) when the section holds a key that
    its command does not read, before the command does any work.
    """
    value = load_params(path, check=(section,)).get(section)
    if value is None:  # no such section, or an empty one (`distill:` alone is YAML null)
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"stages.yaml: params.{section} must be a mapping")
    return value


def check_params(spec: PipelineSpec) -> None:
    """Check every section of `spec.params` that an srkd command reads (`srkd run` does this
    before it runs any stage)."""
    for section in SECTION_COMMANDS:
        check_section(spec, section)


def check_section(spec: PipelineSpec, section: str) -> None:
    """ConfigError unless every key of params.<section> is a stages.yaml key of its command.

    Sections that no srkd command reads are free-form and pass unchecked.
    """
    value = spec.params.get(section)
    if value is None or section not in SECTION_COMMANDS:
        return
    if not isinstance(value, dict):
        raise ConfigError(f"{spec.path}:{spec.param_lines.get(section, 0)}: params.{section} "
                          "must be a mapping of option names to values")
    command = _command(section)
    known, cli_only = section_keys(section)
    for key in value:
        if str(key) in known:
            continue
        line = spec.param_lines.get(f"{section}.{key}", spec.param_lines.get(section, 0))
        raise ConfigError(f"{spec.path}:{line}: params.{section}: "
                          + _unknown_key(str(key), section, command.__name__, known, cli_only))


def section_keys(section: str) -> tuple[set[str], set[str]]:
    """(keys stages.yaml may set in `section`, option names that are command-line only).

    Derived from the signature of the section's command: an option whose default is None falls
    back to stages.yaml; any other default means typer always passes a value, so the command
    never looks the option up.
    """
    renamed = RENAMED.get(section, {})
    known: set[str] = set()
    cli_only: set[str] = set()
    for name, parameter in inspect.signature(_command(section)).parameters.items():
        if parameter.default is None:
            known.add(renamed.get(name, name))
        else:
            cli_only.add(name)
    return known, cli_only


def _command(section: str) -> Callable[..., Any]:
    module, attr = SECTION_COMMANDS[section].split(":")
    return getattr(importlib.import_module(module), attr)


def _unknown_key(key: str, section: str, function: str, known: set[str], cli_only: set[str]) -> str:
    """The message for a key of params.<section> that its command does not read."""
    command = "srkd " + function.replace("_", "-")
    option = "--" + key.replace("_", "-")
    if key in cli_only:
        return (f"{key!r} is a command-line-only option of {command} (stages.yaml cannot set it); "
                f"write {option} into the stage's cmd instead")
    if key in RENAMED.get(section, {}):
        target = RENAMED[section][key]
        return f"unknown key {key!r}; did you mean {target!r}? (stages.yaml sets {option} as {target!r})"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
    return f"unknown key {key!r} ({command} has no option {option}); {hint}"


def pick(cli_value: Any, defaults: dict[str, Any], key: str, fallback: Any) -> Any:
    """Option precedence: explicit CLI value > stages.yaml value > built-in fallback."""
    if cli_value is not None:
        return cli_value
    return defaults.get(key, fallback)
