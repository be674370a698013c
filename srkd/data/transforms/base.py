"""Replayable transforms: the `Transform` protocol, the transform registry and `Compose`.

A transform works in two steps so that any augmented view can be reproduced later:

    params = t.sample(pc, rng)   # draw (and compute) everything the output depends on
    out = t.apply(pc, params)    # deterministic given (pc, params)

`params` is a small JSON-serialisable dict (Python floats, ints, bools, lists). Per-point random
draws (jitter noise, dropout subset, elastic noise grid, one-point-per-voxel choice) are not
stored: the transform records an integer seed and regenerates them from
``np.random.default_rng(seed)``. `apply` depends on `params` only, never on the transform's
constructor arguments (those only shape how `sample` draws), so a record can be replayed by
name without the original chain (`replay`).

A *record* is the list ``[{"name": str, "params": dict}, ...]`` of the entries a chain drew, in
order; it is what the teacher cache stores per view and what the student replays.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from srkd.errors import ConfigError
from srkd.registry import Registry
from srkd.types import PointCloud

Record = list[dict[str, Any]]
"""A list of ``{"name": <transform name>, "params": <dict>}`` entries, JSON-serialisable."""

TRANSFORMS: Registry[type[Transform]] = Registry("transform")
"""Transform name -> class; used to replay a record without the chain that drew it."""

KINDS = ("affine", "deform", "subset", "color")
"""affine: point-wise affine map of coord (and normal); deform: point-wise non-affine coordinate
change (jitter, elastic); subset: drops/duplicates/reorders points via PointCloud.select;
color: changes colour only."""


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator: register a Transform subclass under its `name`."""
    TRANSFORMS.register(cls, name=cls.name)
    return cls


def new_seed(rng: np.random.Generator) -> int:
    """Draw a sub-seed (Python int in [0, 2**63)) for per-point noise regenerated on replay."""
    return int(rng.integers(0, 2**63 - 1, dtype=np.int64))


def floats(values: Iterable[Any]) -> list[float]:
    """Plain Python floats (JSON-safe) from any iterable of numbers."""
    return [float(v) for v in values]


class Transform(ABC):
    """Base class. Subclasses set `name` (registry key) and `kind` (one of KINDS)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        """Draw the parameters for `pc` from `rng` (deterministic transforms compute them)."""
        return {}

    @abstractmethod
    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        """Apply with given parameters; a pure function of (pc, params)."""

    def affine(self, params: dict[str, Any]) -> np.ndarray | None:
        """float64 (4, 4) homogeneous matrix M with ``[p'; 1] = M @ [p; 1]`` (affine kind only)."""
        return None

    def __call__(
        self, pc: PointCloud, rng: np.random.Generator
    ) -> tuple[PointCloud, dict[str, Any]]:
        """Sample then apply; returns the output and its record entry."""
        params = self.sample(pc, rng)
        return self.apply(pc, params), {"name": self.name, "params": params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def check_record(record: Any) -> Record:
    """Validate the shape of a record; ConfigError naming the bad entry otherwise."""
    if not isinstance(record, list | tuple):
        raise ConfigError(f"a transform record must be a list of entries, got {type(record)}")
    for i, entry in enumerate(record):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("params"), dict)
        ):
            raise ConfigError(
                f"transform record entry {i} must be a dict with a str 'name' and a dict "
                f"'params', got {entry!r}"
            )
        if entry["name"] not in TRANSFORMS:
            TRANSFORMS.get(entry["name"])  # raises ConfigError listing the known names
    return list(record)


def replay(pc: PointCloud, record: Record) -> PointCloud:
    """Re-apply a record to `pc` by transform name (no chain needed); bit-exact reproduction."""
    for entry in check_record(record):
        pc = TRANSFORMS.get(entry["name"])().apply(pc, entry["params"])
    return pc


def record_to_json(record: Record) -> str:
    """Serialise a record (compact JSON); raises ConfigError if something is not serialisable."""
    try:
        return json.dumps(check_record(record), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"transform record is not JSON-serialisable: {exc}") from None


def record_from_json(text: str) -> Record:
    """Inverse of `record_to_json`."""
    try:
        return check_record(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"transform record is not valid JSON: {exc}") from None


class Compose:
    """An ordered chain of transforms (nested Compose objects are flattened).

    ``out, record = chain(pc, rng)`` draws a new view; ``chain.replay(pc, record)`` reproduces it
    bit for bit; ``a + b`` concatenates chains.
    """

    def __init__(self, transforms: Sequence[Transform | Compose]) -> None:
        flat: list[Transform] = []
        for t in transforms:
            if isinstance(t, Compose):
                flat.extend(t.transforms)
            elif isinstance(t, Transform):
                flat.append(t)
            else:
                raise ConfigError(f"Compose expects Transform objects, got {t!r}")
        self.transforms: tuple[Transform, ...] = tuple(flat)

    @property
    def names(self) -> list[str]:
        """The transform names in order (what a record of this chain lists)."""
        return [t.name for t in self.transforms]

    def __call__(self, pc: PointCloud, rng: np.random.Generator) -> tuple[PointCloud, Record]:
        record: Record = []
        for t in self.transforms:
            pc, entry = t(pc, rng)
            record.append(entry)
        return pc, record

    def replay(self, pc: PointCloud, record: Record) -> PointCloud:
        """Apply this chain with the parameters of `record` (which must list this chain's names)."""
        record = check_record(record)
        got = [e["name"] for e in record]
        if got != self.names:
            raise ConfigError(
                f"record lists transforms {got} but this chain is {self.names}; replay it with "
                "the chain that drew it (or with srkd.data.transforms.replay)"
            )
        for t, entry in zip(self.transforms, record, strict=True):
            pc = t.apply(pc, entry["params"])
        return pc

    def __add__(self, other: Compose) -> Compose:
        return Compose([self, other])

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"
