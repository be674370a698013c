"""The settings of `srkd predict`: `PredictConfig`, one field per option (field = option name),
the only home of the command's defaults. Standard library and numpy only (the CLI imports it before torch).
`srkd predict` reads no stages.yaml section: its values are the options' or these defaults."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.data.normals import DEFAULT_NEIGHBOURS
from srkd.data.registry import per_dataset
from srkd.settings import DEFAULT_DEVICE, setting


@dataclass(frozen=True)
class PredictConfig:
    """`srkd predict`'s settings (the scans to label are its arguments, not settings)."""

    checkpoint: Path | None = setting(None)  # required with runtime "torch"
    runtime: str = setting("torch")
    model: Path | None = setting(None)  # an `srkd export` folder, required with runtime "onnx"
    out: Path = setting(Path("predictions"))
    tta: bool = setting(True)
    device: str = setting(DEFAULT_DEVICE)
    grid_size: float | None = setting(None, note="the checkpoint's recorded grid size, else " + per_dataset("grid_size"))
    neighbours: int | None = setting(None, note=f"{DEFAULT_NEIGHBOURS} (srkd.data.normals.DEFAULT_NEIGHBOURS)")
    keep_going: bool = setting(False)
