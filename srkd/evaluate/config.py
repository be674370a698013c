"""The settings of `srkd evaluate`: `EvalConfig`, one field per option (field = option name),
the only home of the command's defaults. Light imports only (the CLI imports it before torch).

Where a default is None the value is found later, as each field's note says: the dataset, data
root and grid size a checkpoint (or cache) records, the distill stage's student, and so on
(srkd.evaluate.run).
"""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.data.registry import per_dataset
from srkd.settings import DEFAULT_DEVICE, setting

LATENCY_RUNS = 10
"""Timed batch-1 forward passes per model for the latency column (0 = no latency)."""


@dataclass(frozen=True)
class EvalConfig:
    """`srkd evaluate`'s settings (stages.yaml params.evaluate)."""

    checkpoint: list[Path] = setting([], key="checkpoints",
                                     note="stages.yaml evaluate.checkpoints, else <distill.out>/model.pt")
    cache: Path | None = setting(None, note="none (stages.yaml evaluate.cache when no model or split is given)")
    data_root: Path | None = setting(None, note="recorded in the checkpoint (or cache)")
    split: str | None = setting(None, note="val (the cache's split when only --cache is given)")
    dataset: str | None = setting(None, note="recorded in the checkpoint (or cache), else scannet")
    tta: bool = setting(True)
    grid_size: float | None = setting(None, note="each checkpoint's recorded grid size, else " + per_dataset("grid_size"))
    out: Path = setting(Path("reports/eval"))
    device: str = setting(DEFAULT_DEVICE)
    max_scenes: int | None = setting(None, note="all")
    render_scene: str | None = setting(None, note="the first scene")
    latency_runs: int = setting(LATENCY_RUNS, cli_only=True)
