"""`srkd predict --runtime onnx`: an `srkd export` folder run by ONNX Runtime (srkd.runtime) in
place of the checkpoint's torch model, inside the same views, fragments and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from srkd.errors import ConfigError


class OnnxSegmenter:
    """The `PlainSegmenter` call on an exported student: (coord (N, 3), feat (N, C), offset (B,))
    torch tensors -> float32 (N, K) logits, computed by onnxruntime from numpy arrays."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        from srkd.runtime import load_student

        self.student = load_student(folder, threads=threads)
        self.grid_size = self.student.spec.grid_size

    def __call__(self, coord: torch.Tensor, feat: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        logits = self.student.logits(coord.cpu().numpy(), feat.cpu().numpy(), offset.cpu().numpy())
        return torch.from_numpy(np.asarray(logits))


def check_runtime_choice(runtime: str, checkpoint: Path | None, model: Path | None, precision: str = "fp32") -> None:
    """ConfigError unless the runtime has its one input (torch a --checkpoint, onnx a --model)
    and can run in `precision` (an export runs in fp32 only)."""
    if runtime == "torch" and (checkpoint is None or model is not None):
        raise ConfigError("srkd predict needs --checkpoint (or --runtime onnx --model <export folder>)")
    if runtime == "onnx" and (model is None or checkpoint is not None):
        raise ConfigError("--runtime onnx runs an `srkd export` folder: give --model <folder>, not --checkpoint")
    if runtime not in ("torch", "onnx"):
        raise ConfigError(f"unknown runtime {runtime!r}: use torch or onnx")
    if runtime == "onnx" and precision != "fp32":
        raise ConfigError(f"--precision {precision} runs a checkpoint in srkd (--runtime torch); an export "
                          "runs in fp32 (ONNX Runtime's CPU provider has no bfloat16 kernels for the "
                          "exported network's operators)")
