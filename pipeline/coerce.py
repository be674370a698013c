"""A stages.yaml value turned into the type of the config field it sets, or one clear error.

YAML gives ints, floats, strings, booleans, lists and mappings; a field is typed `int`, `float
| None`, `Path`, `list[Path]`, `dict[str, Any]`, ... (its annotation in the settings dataclass).
A YAML 1.1 quirk is handled on the way: `5e-3` (no dot) reads as a string, so a float field
accepts numeric strings.
"""

from __future__ import annotations

import functools
import types
import typing
from pathlib import Path
from typing import Any

from srkd.errors import ConfigError


@functools.cache
def _hints(config: type) -> dict[str, Any]:
    return typing.get_type_hints(config)


def coerce(value: Any, config: type, name: str, where: str) -> Any:
    """`value` as the type of field `name` of `config`; ConfigError naming `where` (file, line,
    key) and the expected type when it does not fit."""
    hint = _hints(config)[name]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if value is None:
        if optional:
            return None
        if typing.get_origin(hint) is list:  # `checkpoints:` with no entries
            return []
        raise ConfigError(f"{where}: no value (null); give a {_name(hint)} or remove the key")
    try:
        return _convert(value, hint)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a {_name(hint)}") from None


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        items = value if isinstance(value, list) else [value]
        return [_convert(v, item) for v in items]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError("not a mapping")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("not a boolean")
        return value
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError("not an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError("not a number")
        return float(value)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise TypeError("not a path")
        return Path(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise TypeError("not a string")
        return str(value)
    return value


def _name(hint: Any) -> str:
    names = {bool: "boolean (true/false)", int: "whole number", float: "number", Path: "path",
             str: "string"}
    if typing.get_origin(hint) is list:
        return "list"
    if typing.get_origin(hint) is dict or hint is dict:
        return "mapping"
    return names.get(hint, str(hint))
