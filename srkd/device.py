"""Picking and naming the compute device (one place for every command)."""

from __future__ import annotations

import torch

from srkd.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cpu", "cuda", "cuda:N" as given, checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev


def describe_device(device: torch.device) -> str:
    """The device in words, e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 threads)"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
