"""The rows of an evaluation report: one `ReportRow` per evaluated model (with its `Latency` and the
`SplitInfo` it was scored on), and `check_rows`, the checks a report makes on them.

Shared by srkd.evaluate.report (metrics.json, report.md) and srkd.evaluate.plots (the PNGs), so
neither of those imports the other's module for the type.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from srkd.errors import ConfigError
from srkd.metrics import SegmentationScores, check_class_names, default_class_names


@dataclass(frozen=True)
class Latency:
    """Forward-pass time of one model.

    Fields:
        ms_per_scene: milliseconds per scene (e.g. the median over repeated runs).
        device: the device in words, e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 threads)".
        method: how it was measured, e.g. "median of 20 runs after 5 warm-up, batch 1, no TTA".
    """

    ms_per_scene: float
    device: str
    method: str

    def __post_init__(self) -> None:
        ms = self.ms_per_scene
        if isinstance(ms, bool) or not isinstance(ms, numbers.Real) or not 0 <= ms < math.inf:
            raise ConfigError(f"latency must be a finite number of ms >= 0, got {ms!r}")
        object.__setattr__(self, "ms_per_scene", float(ms))  # numpy scalars -> plain JSON float


@dataclass(frozen=True)
class SplitInfo:
    """What was evaluated.

    Fields:
        dataset: dataset name or root, e.g. "scannet" or "/data/scannet".
        split: split name, e.g. "val".
        num_scenes: scenes scored.
        tta_views: test-time views averaged per scene (1 = no TTA).
        scope: which points were scored, e.g. "every original point".
    """

    dataset: str
    split: str
    num_scenes: int
    tta_views: int = 1
    scope: str = "every original point"


@dataclass(frozen=True)
class ReportRow:
    """One evaluated model.

    Fields:
        name: display name (unique within a report), e.g. "student-srkd".
        kind: what it is, e.g. "student", "teacher", "teacher-cache".
        scores: split-level metrics.
        split: the dataset / split it was scored on.
        params: number of parameters; None when unknown (e.g. a cached teacher).
        latency: forward time; None when not measured (e.g. scored from a cache).
        source: where the predictions came from (checkpoint or cache path).
    """

    name: str
    kind: str
    scores: SegmentationScores
    split: SplitInfo
    params: int | None = None
    latency: Latency | None = None
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a report row needs a non-empty model name, got {self.name!r}")
        if not isinstance(self.scores, SegmentationScores):
            raise ConfigError(
                f"row {self.name!r}: scores must be SegmentationScores, got "
                f"{type(self.scores).__name__}"
            )
        if self.params is not None:
            p = self.params
            if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0:
                raise ConfigError(
                    f"row {self.name!r}: parameter count must be an integer >= 0, got {p!r}"
                )
            object.__setattr__(self, "params", int(p))  # numpy ints -> plain JSON int

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """JSON-ready dict of the row (NaN -> None)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "params": self.params,
            "latency": None if self.latency is None else vars(self.latency).copy(),
            "split": vars(self.split).copy(),
            "scores": self.scores.to_dict(class_names),
            "extra": dict(self.extra),
        }


def check_rows(
    rows: Sequence[ReportRow], class_names: Sequence[str] | None = None
) -> tuple[list[ReportRow], list[str]]:
    """Validate rows for one report; returns the rows and the class names (defaulted if None)."""
    rows = list(rows)
    if not rows:
        raise ConfigError("a report needs at least one evaluated model; none was given")
    for r in rows:
        if not isinstance(r, ReportRow):
            raise ConfigError(f"report rows must be ReportRow objects, got {type(r).__name__}")
    counts = {r.name: r.scores.num_classes for r in rows}
    if len(set(counts.values())) != 1:
        raise ConfigError(
            f"the compared models were scored with different class counts {counts}; "
            "compare models of one dataset only"
        )
    names = [r.name for r in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"model names must be unique in a report; repeated: {dupes}")
    k = rows[0].scores.num_classes
    class_names = default_class_names(k) if class_names is None else class_names
    return rows, check_class_names(class_names, k)
