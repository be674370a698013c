"""Latency of a model in `srkd evaluate`: median wall time of scoring one scene, batch 1, no TTA."""

from __future__ import annotations

import statistics
import time

import torch

from srkd.device import describe_device
from srkd.errors import ConfigError
from srkd.evaluate.models import EvalModel
from srkd.evaluate.report import Latency
from srkd.inference import infer_scene, precise_views
from srkd.types import PointCloud


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    m: EvalModel,
    pc: PointCloud,
    device: torch.device,
    warmup: int = 2,
    runs: int = 10,
    budget_s: float = 60.0,
    domain: str = "indoor",
    precision: str = "fp32",
) -> Latency:
    """Median wall time (ms) of scoring every point of `pc` once: batch 1, no TTA, all test-mode
    fragments, voxelisation and host/device copies included; `warmup` runs are discarded.

    At most `runs` timed runs; after 3 of them, timing stops once `budget_s` seconds are spent
    (a slow CPU run would otherwise take many minutes). The method string gives the real count.
    `domain`: the dataset's transform domain (DatasetSpec.domain); `precision`: "fp32" or "bf16"
    (`srkd.inference.inference_autocast`), named in the method string when not fp32.
    """
    if runs < 1 or warmup < 0:
        raise ConfigError(f"latency needs runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    views = precise_views(pc, tta=False, domain=domain)
    times: list[float] = []
    began = time.perf_counter()
    for i in range(warmup + runs):
        _sync(device)
        start = time.perf_counter()
        infer_scene(m.model, pc, views, m.grid_size, m.feature_names, device, color_norm=m.color_norm,
                    domain=domain, precision=precision)
        _sync(device)
        if i >= warmup:
            times.append(1000.0 * (time.perf_counter() - start))
            if len(times) >= min(3, runs) and time.perf_counter() - began > budget_s:
                break
    method = (f"median of {len(times)} runs after {warmup} warm-up, batch 1, no TTA, "
              f"scene {pc.scene_id} ({pc.num_points:,} points)"
              + (f", {precision}" if precision != "fp32" else ""))  # fmt: skip
    return Latency(statistics.median(times), describe_device(device), method)
