"""The settings of `srkd export`: `ExportConfig`, one field per option, the only home of the
command's defaults. Standard library only (the CLI imports it before torch)."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.settings import setting

DEFAULT_OPSET = 23
"""The ONNX opset srkd writes: 23 has the fused Attention op (earlier opsets get matmul + softmax)."""
MIN_OPSET = 18
"""The torch.export-based ONNX exporter's floor."""


@dataclass(frozen=True)
class ExportConfig:
    """`srkd export`'s settings."""

    checkpoint: Path | None = setting(None)  # required by the command
    out: Path = setting(Path("deploy"))
    format: str = setting("onnx")
    opset: int = setting(DEFAULT_OPSET)
    grid_size: float | None = setting(None, note="the checkpoint's recorded grid size")
