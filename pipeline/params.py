"""Parameter values for commands: stages.yaml's `params` section plus `--set key=value` overrides.

`srkd run --set distill.epochs=3` passes its overrides to every stage command through the
environment variable SRKD_SET (JSON), so a command invoked by the runner sees the same values
the runner fingerprinted. A command run by hand reads ./stages.yaml when it exists.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml

from srkd.errors import ConfigError

ENV_OVERRIDES = "SRKD_SET"
ENV_STAGES_FILE = "SRKD_STAGES"
DEFAULT_STAGES_FILE = Path("stages.yaml")


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


def load_params(path: Path | None = None) -> dict[str, Any]:
    """The effective parameters: stages.yaml `params` (if the file exists) + env overrides."""
    from pipeline.spec import load_spec

    path = Path(path or os.environ.get(ENV_STAGES_FILE) or DEFAULT_STAGES_FILE)
    if not path.is_file():
        return {}
    return apply_overrides(load_spec(path).params, env_overrides())


def command_defaults(section: str, path: Path | None = None) -> dict[str, Any]:
    """The parameter group `section` (e.g. 'distill'), or {} without a stages.yaml."""
    value = load_params(path).get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"stages.yaml: params.{section} must be a mapping")
    return value


def pick(cli_value: Any, defaults: dict[str, Any], key: str, fallback: Any) -> Any:
    """Option precedence: explicit CLI value > stages.yaml value > built-in fallback."""
    if cli_value is not None:
        return cli_value
    return defaults.get(key, fallback)
