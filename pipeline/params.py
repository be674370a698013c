"""Option values for commands: CLI > stages.yaml `params.<section>` > the config's default.

Every srkd command has one settings dataclass (COMMAND_CONFIGS) whose field names are its option
names and whose field defaults are the only home of its defaults (see `srkd.settings`).
`resolve(Config, section, cli)` builds it generically: an option given on the command line wins,
else the section's key (the field's name, or the `key` its `setting` names), else the default.

`srkd run --set distill.epochs=3` passes its overrides to every stage command through the
environment variable SRKD_SET (JSON), so a command invoked by the runner sees the same values
the runner fingerprinted. A command run by hand reads ./stages.yaml (or $SRKD_STAGES) when it
exists. The file is read and parsed once per process (`_stages`, keyed by path, modification
time and SRKD_SET) however many sections a command looks up.

The sections srkd's own commands read (SECTIONS) are checked: each key must be a field of the
command's config, so a typo such as `epoch: 1` is an error naming the file, the line and the
closest known key instead of being silently ignored. Fields marked cli_only (`--overwrite`,
`--resume`) are not valid keys. Only a section's own keys are checked: nested values
(`distill.weights`, a mapping of loss settings) are checked by the library when the command
starts, and sections no srkd command reads (the parameters of a stage of your own) are free-form.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import json
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.coerce import coerce
from srkd.errors import ConfigError
from srkd.settings import default_note, field_default, is_cli_only, stages_key

if TYPE_CHECKING:
    from pipeline.spec import PipelineSpec

ENV_OVERRIDES = "SRKD_SET"
ENV_STAGES_FILE = "SRKD_STAGES"
DEFAULT_STAGES_FILE = Path("stages.yaml")
DEFAULT_JOBS = 1
"""`srkd run --jobs`: stages at once (1: one after another, in dependency order)."""
C = TypeVar("C")

COMMAND_CONFIGS: dict[str, tuple[str | None, str]] = {
    "generate-synthetic": ("data", "srkd.data.synthetic.config:SyntheticConfig"),
    "train-teacher": ("teacher", "srkd.distill.config:TeacherConfig"),
    "cache-teacher": ("cache", "srkd.cache_teacher.config:CacheTeacherConfig"),
    "distill": ("distill", "srkd.distill.config:DistillConfig"),
    "evaluate": ("evaluate", "srkd.evaluate.config:EvalConfig"),
    "predict": (None, "srkd.predict.config:PredictConfig"),
    "export": (None, "srkd.export.config:ExportConfig"),
}
"""command -> (the stages.yaml params section it reads, "module:Class" of its settings). Other
commands read some other sections too (cache-teacher and train-teacher read data.root; evaluate
reads distill.out)."""

SECTIONS: dict[str, str] = {section: command for command, (section, _) in COMMAND_CONFIGS.items()
                            if section is not None}
"""params section -> the command whose options its keys are."""


def config_class(command: str) -> type:
    """The settings dataclass of `command` (e.g. 'distill' -> DistillConfig)."""
    module, attr = COMMAND_CONFIGS[command][1].split(":")
    return getattr(importlib.import_module(module), attr)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ['a.b=3', 'c=x'] into {'a.b': 3, 'c': 'x'} (values parsed as YAML scalars)."""
    import yaml

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


@dataclasses.dataclass
class _Loaded:
    """One read of stages.yaml: the spec, its params after SRKD_SET, the sections checked."""

    spec: PipelineSpec
    params: dict[str, Any]
    checked: set[str] = dataclasses.field(default_factory=set)


_CACHE: dict[tuple[Any, ...], _Loaded] = {}


def _stages(path: Path | None) -> _Loaded | None:
    """stages.yaml read, parsed and overridden once per (path, mtime, size, SRKD_SET); None when
    there is no such file."""
    from pipeline.spec import load_spec

    path = Path(path or os.environ.get(ENV_STAGES_FILE) or DEFAULT_STAGES_FILE)
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, os.environ.get(ENV_OVERRIDES))
    if key not in _CACHE:
        spec = load_spec(path)
        loaded = _Loaded(spec, apply_overrides(spec.params, env_overrides()))  # may raise: not kept
        _CACHE.clear()  # one file per process in practice; keep only the newest read
        _CACHE[key] = loaded
    return _CACHE[key]


def load_params(path: Path | None = None, check: tuple[str, ...] = ()) -> dict[str, Any]:
    """The effective parameters: stages.yaml `params` (if the file exists) + env overrides.

    The sections named in `check` are validated first (see `check_section`), once per read."""
    loaded = _stages(path)
    if loaded is None:
        return {}
    for section in check:
        if section not in loaded.checked:
            check_section(loaded.spec, section)
            loaded.checked.add(section)
    return copy.deepcopy(loaded.params)


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


def resolve(config: type[C], section: str | None, cli: Mapping[str, Any],
            path: Path | None = None) -> C:
    """`config` (a settings dataclass) from CLI > stages.yaml params.<section> > field default.

    cli: option name -> the value typer passed (None or [] = not given; enums are read by
    value). A stages.yaml value is coerced to the field's type, else ConfigError naming the
    file, line and key."""
    params = command_defaults(section, path) if section else {}
    loaded = _stages(path) if params else None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = cli.get(f.name)
        if value is not None and value != []:
            values[f.name] = value.value if isinstance(value, Enum) else value
        elif not is_cli_only(f) and stages_key(f) in params:
            where = _where(loaded, section, stages_key(f))
            values[f.name] = coerce(params[stages_key(f)], config, f.name, where)
    return config(**values)


def _where(loaded: _Loaded | None, section: str | None, key: str) -> str:
    """'stages.yaml:12: params.distill.epochs' for messages about one value."""
    if loaded is None:
        return f"params.{section}.{key}"
    line = loaded.spec.param_lines.get(f"{section}.{key}", 0)
    return f"{loaded.spec.path}:{line}: params.{section}.{key}"


def describe_defaults(command: str, path: Path | None = None) -> dict[str, str]:
    """option name -> its effective default for `--help`: '40 (stages.yaml)', '100', or the
    field's note for a default filled in later. An unreadable or invalid stages.yaml is
    skipped (the built-in defaults are shown), so `--help` always works."""
    section, _ = COMMAND_CONFIGS[command]
    try:
        params = command_defaults(section, path) if section else {}
    except (ConfigError, OSError, ValueError):  # ValueError: a bad SRKD_SET
        params = {}
    shown: dict[str, str] = {}
    for f in dataclasses.fields(config_class(command)):
        if not is_cli_only(f) and stages_key(f) in params:
            shown[f.name] = f"{_show(params[stages_key(f)])} (stages.yaml)"
            continue
        default = field_default(f)
        if default in (None, [], {}) or default is dataclasses.MISSING:
            if default_note(f):
                shown[f.name] = str(default_note(f))
        else:
            shown[f.name] = _show(default)
    return shown


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if value == "":
        return "''"
    return str(value)


def check_params(spec: PipelineSpec) -> None:
    """Check every section of `spec.params` that an srkd command reads (`srkd run` does this
    before it runs any stage)."""
    for section in SECTIONS:
        check_section(spec, section)


def check_section(spec: PipelineSpec, section: str) -> None:
    """ConfigError unless every key of params.<section> is a stages.yaml key of its command.

    Sections that no srkd command reads are free-form and pass unchecked.
    """
    value = spec.params.get(section)
    if value is None or section not in SECTIONS:
        return
    if not isinstance(value, dict):
        raise ConfigError(f"{spec.path}:{spec.param_lines.get(section, 0)}: params.{section} "
                          "must be a mapping of option names to values")
    known, cli_only = section_keys(section)
    for key in value:
        if str(key) in known:
            continue
        line = spec.param_lines.get(f"{section}.{key}", spec.param_lines.get(section, 0))
        raise ConfigError(f"{spec.path}:{line}: params.{section}: "
                          + _unknown_key(str(key), section, known, cli_only))


def section_keys(section: str) -> tuple[set[str], set[str]]:
    """(keys stages.yaml may set in `section`, option names that are command-line only), from
    the fields of the section's command config."""
    known: set[str] = set()
    cli_only: set[str] = set()
    for f in dataclasses.fields(config_class(SECTIONS[section])):
        (cli_only if is_cli_only(f) else known).add(f.name if is_cli_only(f) else stages_key(f))
    return known, cli_only


def _renamed(section: str) -> dict[str, str]:
    """option name -> stages.yaml key, where they differ (generate-synthetic's out -> root)."""
    return {f.name: stages_key(f) for f in dataclasses.fields(config_class(SECTIONS[section]))
            if stages_key(f) != f.name}


def _unknown_key(key: str, section: str, known: set[str], cli_only: set[str]) -> str:
    """The message for a key of params.<section> that its command does not read."""
    command = "srkd " + SECTIONS[section]
    option = "--" + key.replace("_", "-")
    if key in cli_only:
        return (f"{key!r} is a command-line-only option of {command} (stages.yaml cannot set it); "
                f"write {option} into the stage's cmd instead")
    renamed = _renamed(section)
    if key in renamed:
        target = renamed[key]
        return f"unknown key {key!r}; did you mean {target!r}? (stages.yaml sets {option} as {target!r})"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
    return f"unknown key {key!r} ({command} has no option {option}); {hint}"
