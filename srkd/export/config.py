"""The settings of `srkd export`: `ExportConfig`, one field per option, the only home of the
command's defaults. Standard library only (the CLI imports it before torch)."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.settings import GRID_SIZE, Flag, setting

DEFAULT_OPSET = 23
"""The ONNX opset srkd writes: 23 has the fused Attention op (earlier opsets get matmul + softmax)."""
MIN_OPSET = 18
"""The torch.export-based ONNX exporter's floor."""


@dataclass(frozen=True)
class ExportConfig:
    """`srkd export`'s settings."""

    checkpoint: Path | None = setting(None, Flag(  # required by the command
        "srkd checkpoint of a PTv3 or SpUNet model (a student from `srkd distill`); required.", short="-c"))
    out: Path = setting(Path("deploy"), (
        "Output folder: network.onnx (or network.pt2) and student.json; an earlier export there is "
        "replaced."))
    format: str = setting("onnx", Flag(
        "onnx (run by ONNX Runtime, srkd.runtime) or pt2 (a torch.export program).", choices=("onnx", "pt2")))
    opset: int = setting(DEFAULT_OPSET, Flag("ONNX opset version.", min=MIN_OPSET))
    grid_size: float | None = setting(None, GRID_SIZE, note="the checkpoint's recorded grid size")
