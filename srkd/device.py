"""Picking and naming the compute device (one place for every command)."""

from __future__ import annotations

import torch

from srkd.errors import ConfigError
from srkd.settings import DEFAULT_DEVICE, THREADS_ENV, default_cpu_threads


def resolve_device(device: str | torch.device = DEFAULT_DEVICE) -> torch.device:
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


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads: `threads`, else $SRKD_THREADS, else half the cores.

    Why not all cores: on a shared or busy machine torch's OpenMP threads spin while they wait
    for each other, and a sparse-conv training step measured 10x slower with 2 threads on
    2 busy cores than with 1. Half the cores leaves room for data loading and other work.
    """
    import os

    if threads is None:
        env = os.environ.get(THREADS_ENV)
        threads = int(env) if env else default_cpu_threads()
    if threads < 1:
        raise ConfigError(f"CPU threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads
