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

from srkd.data.registry import DATASET_FLAG, per_dataset
from srkd.settings import DEFAULT_DEVICE, DEVICE, GRID_SIZE, MAX_SCENES, PRECISION, PRECISIONS, Flag, setting

LATENCY_RUNS = 10
"""Timed batch-1 forward passes per model for the latency column (0 = no latency)."""


@dataclass(frozen=True)
class EvalConfig:
    """`srkd evaluate`'s settings (stages.yaml params.evaluate)."""

    checkpoint: list[Path] = setting([], Flag(
        "srkd checkpoint to score; repeat to compare several models in one table.", short="-c"),
        key="checkpoints", note="stages.yaml evaluate.checkpoints, else <distill.out>/model.pt")
    cache: Path | None = setting(None, (
        "Teacher cache directory: score the cached teacher's predictions without running it."),
        note="none (stages.yaml evaluate.cache when no model or split is given)")
    data_root: Path | None = setting(None, "Dataset root with <split>/<scene>/ folders.",
                                     note="recorded in the checkpoint (or cache)")
    split: str | None = setting(None, "Split folder to score.",
                                note="val (the cache's split when only --cache is given)")
    dataset: str | None = setting(None, DATASET_FLAG, note="recorded in the checkpoint (or cache), else scannet")
    tta: bool = setting(True, (
        "The release's test-time views (ScanNet: 13 = 4 rotations x 3 scales + flip; nuScenes / "
        "SemanticKITTI: 10 = 5 scales x flip) or one view."))
    grid_size: float | None = setting(None, GRID_SIZE,
                                      note="each checkpoint's recorded grid size, else " + per_dataset("grid_size"))
    out: Path = setting(Path("reports/eval"), "Output folder for metrics.json, report.md and PNGs.")
    device: str = setting(DEFAULT_DEVICE, DEVICE)
    precision: str = setting(PRECISIONS[0], PRECISION)
    max_scenes: int | None = setting(None, MAX_SCENES, note="all")
    render_scene: str | None = setting(None, "Scene drawn top-down and used for latency.", note="the first scene")
    latency_runs: int = setting(LATENCY_RUNS, Flag(
        "Timed runs per model (after 2 warm-up runs); 0 skips latency.", min=0), cli_only=True)
