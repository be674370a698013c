"""stages.yaml: parameters plus stages (cmd, deps, params, outs, metrics), modelled on dvc.yaml.

Parsed with yaml's safe composer so that every error names the key and the line it stands on.
No templating: a stage's `cmd` is run as written; commands read their defaults from the
`params` section themselves (see `pipeline.params`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from srkd.errors import ConfigError

STAGE_KEYS = {"cmd", "deps", "params", "outs", "metrics", "desc", "manual"}


@dataclass(frozen=True)
class Output:
    """A stage output path. `persist` outputs (e.g. the resumable cache) are not deleted before
    the stage re-runs; others are, so a half-written output never looks complete."""

    path: str
    persist: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage: the command, what it reads (deps, dotted param keys) and what it writes."""

    name: str
    cmd: str
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[Output, ...] = ()
    metrics: tuple[str, ...] = ()
    desc: str = ""
    manual: bool = False  # runs only when named (`srkd run --stage NAME`) or needed by a named stage
    line: int = 0


@dataclass(frozen=True)
class PipelineSpec:
    """The whole file: nested parameter values and the stages in file order."""

    path: Path
    params: dict[str, Any]
    stages: dict[str, Stage] = field(default_factory=dict)
    param_lines: dict[str, int] = field(default_factory=dict)
    """Line (1-based) of every key under `params`, by dotted key ('distill.epochs')."""

    def param(self, key: str) -> Any:
        """Value of a dotted key such as 'distill.epochs'; ConfigError if it is not defined."""
        return lookup(self.params, key, where=str(self.path))

    def upstream(self) -> dict[str, list[str]]:
        """For each stage, the stages it must wait for: those with an output that is one of its
        deps, holds one (a dep `data/x.txt` inside an output `data`) or lies inside one."""
        outs = [(PurePosixPath(o.path), s.name) for s in self.stages.values() for o in s.outs]

        def overlap(a: PurePosixPath, b: PurePosixPath) -> bool:
            return a == b or a in b.parents or b in a.parents

        return {
            s.name: sorted({name for d in s.deps for out, name in outs
                            if name != s.name and overlap(PurePosixPath(d), out)})
            for s in self.stages.values()
        }  # fmt: skip

    def order(self, targets: list[str] | None = None) -> list[Stage]:
        """Stages in dependency order (a stage runs after the stages `upstream` names for it),
        restricted to `targets` and everything they depend on. Without targets: every stage
        that is not `manual`, and what those depend on."""
        upstream = self.upstream()
        for name in targets or []:
            if name not in self.stages:
                raise ConfigError(
                    f"{self.path}: no stage named {name!r}; stages: {', '.join(self.stages)}"
                )
        ordered: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, chain: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                raise ConfigError(f"{self.path}: stages form a cycle: {' -> '.join(chain + [name])}")
            state[name] = "active"
            for dep in upstream[name]:
                visit(dep, chain + [name])
            state[name] = "done"
            ordered.append(name)

        for name in targets or [n for n, s in self.stages.items() if not s.manual]:
            visit(name, [])
        return [self.stages[n] for n in ordered]


def lookup(tree: dict[str, Any], key: str, where: str = "params") -> Any:
    """Follow a dotted key through nested dicts."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}: parameter {key!r} is not defined")
        node = node[part]
    return node


def load_spec(path: Path) -> PipelineSpec:
    """Parse and validate a stages.yaml file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run from the project folder or pass --file")
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: the top level must be a mapping with 'params' and 'stages'")
    top = _mapping(root, path, "top level")
    for key, (node, _) in top.items():
        if key not in ("params", "stages"):
            raise ConfigError(f"{path}:{_line(node)}: unknown top-level key {key!r}")
    params = _to_python(top["params"][1]) if "params" in top else {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}:{_line(top['params'][1])}: 'params' must be a mapping")
    param_lines = _key_lines(top["params"][1], path, "params") if "params" in top else {}
    if "stages" not in top:
        raise ConfigError(f"{path}: no 'stages' section")
    stages: dict[str, Stage] = {}
    for name, (_, node) in _mapping(top["stages"][1], path, "stages").items():
        stages[name] = _stage(name, node, path, params)
    spec = PipelineSpec(path=path, params=params, stages=stages, param_lines=param_lines)
    spec.order(list(stages))  # reject cycles early (manual stages too)
    return spec


def _stage(name: str, node: yaml.Node, path: Path, params: dict[str, Any]) -> Stage:
    where = f"stages.{name}"
    fields_ = _mapping(node, path, where)
    for key, (knode, _) in fields_.items():
        if key not in STAGE_KEYS:
            raise ConfigError(
                f"{path}:{_line(knode)}: {where}: unknown key {key!r} "
                f"(allowed: {', '.join(sorted(STAGE_KEYS))})"
            )
    if "cmd" not in fields_:
        raise ConfigError(f"{path}:{_line(node)}: {where}: missing 'cmd'")
    cmd_node = fields_["cmd"][1]
    cmd = _to_python(cmd_node)
    if not isinstance(cmd, str) or not cmd.strip():
        raise ConfigError(f"{path}:{_line(cmd_node)}: {where}.cmd must be a non-empty string")

    def strings(key: str) -> tuple[str, ...]:
        if key not in fields_:
            return ()
        value = _to_python(fields_[key][1])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"{path}:{_line(fields_[key][1])}: {where}.{key} must be a list of strings"
            )
        return tuple(value)

    for key in strings("params"):
        try:
            lookup(params, key)
        except ConfigError:
            raise ConfigError(
                f"{path}:{_line(fields_['params'][1])}: {where}.params names {key!r}, "
                "which is not defined under 'params'"
            ) from None
    outs = []
    for item in _to_python(fields_["outs"][1]) if "outs" in fields_ else []:
        if isinstance(item, str):
            outs.append(Output(item))
        elif isinstance(item, dict) and len(item) == 1:
            (out_path, opts), = item.items()
            if not isinstance(opts, dict) or set(opts) - {"persist"}:
                raise ConfigError(
                    f"{path}:{_line(fields_['outs'][1])}: {where}.outs: {out_path!r} takes only "
                    "'persist: true|false'"
                )
            outs.append(Output(str(out_path), bool(opts.get("persist", False))))
        else:
            raise ConfigError(
                f"{path}:{_line(fields_['outs'][1])}: {where}.outs entries are paths or "
                "'path: {persist: true}'"
            )
    desc = _to_python(fields_["desc"][1]) if "desc" in fields_ else ""
    manual = _to_python(fields_["manual"][1]) if "manual" in fields_ else False
    if not isinstance(manual, bool):
        raise ConfigError(f"{path}:{_line(fields_['manual'][1])}: {where}.manual must be true or false")
    return Stage(
        name=name, cmd=cmd.strip(), deps=strings("deps"), params=strings("params"),
        outs=tuple(outs), metrics=strings("metrics"), desc=str(desc), manual=manual, line=_line(node),
    )


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, path: Path, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{_line(node)}: {where} must be a mapping")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for knode, vnode in node.value:
        key = knode.value
        if key in out:
            raise ConfigError(f"{path}:{_line(knode)}: {where}: key {key!r} appears twice")
        out[key] = (knode, vnode)
    return out


def _key_lines(node: yaml.Node, path: Path, where: str, prefix: str = "") -> dict[str, int]:
    """Dotted key -> line of every key in a nested mapping; a key given twice is an error
    (plain YAML loading would silently keep the last value)."""
    lines: dict[str, int] = {}
    for key, (knode, vnode) in _mapping(node, path, where).items():
        dotted = prefix + str(key)
        lines[dotted] = _line(knode)
        if isinstance(vnode, yaml.MappingNode):
            lines.update(_key_lines(vnode, path, f"params.{dotted}", dotted + "."))
    return lines


def _to_python(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))
