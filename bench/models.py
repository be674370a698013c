"""Benchmark every registered model preset: parameters, forward time per 10k points, peak memory.

    python bench/models.py                         # all presets, CPU (+ CUDA when present)
    python bench/models.py --presets spunet_small ptv3_half --points 20000 --repeats 5
    python bench/models.py --devices cpu --out bench/results/models.json

Each (preset, device) runs in its own subprocess so peak memory is that model's alone:
- CPU: peak resident set size during the forward passes (VmHWM, reset just before them through
  /proc/self/clear_refs) minus the resident size before them (model and input already built),
  i.e. the activation memory of inference. tracemalloc cannot see torch's allocations.
- CUDA: torch.cuda.max_memory_allocated() over the forward passes (model weights included).
The input is one synthetic indoor-like scene (points on the floor and walls of a 6 x 5 x 3 m room,
2 cm voxels, one point per voxel, 6 input channels); forward passes run in eval mode under
torch.inference_mode with batch size 1. Times are the median of --repeats after one warm-up pass.
Prints a table and writes JSON (default bench/results/models.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "models.json"


def synthetic_room(points: int, seed: int = 0):
    """A PointBatch of `points` unique 2 cm voxels on the floor and walls of a box room."""
    import numpy as np

    from srkd.data.collate import VoxelSample, collate

    rng = np.random.default_rng(seed)
    size = np.array([6.0, 5.0, 3.0])
    grid = 0.02
    chunks, have = [], 0
    while have < points:
        xyz = rng.random((points * 2, 3)) * size
        face = rng.integers(0, 5, len(xyz))  # 0: floor, 1-4: walls
        xyz[face == 0, 2] = 0.0
        xyz[face == 1, 0] = 0.0
        xyz[face == 2, 0] = size[0]
        xyz[face == 3, 1] = 0.0
        xyz[face == 4, 1] = size[1]
        chunks.append(np.floor(xyz / grid).astype(np.int64))
        vox = np.unique(np.concatenate(chunks), axis=0)
        have = len(vox)
    vox = vox[rng.permutation(len(vox))[:points]]
    vox -= vox.min(axis=0)
    n = len(vox)
    sample = VoxelSample(
        coord=(vox * grid).astype(np.float32),
        grid_coord=vox.astype(np.int32),
        feat=rng.standard_normal((n, 6)).astype(np.float32),
        origin_index=np.arange(n),
        segment=np.zeros(n, dtype=np.int64),
        scene_id="bench_room",
    )
    return collate([sample])


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5" resets the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process in KiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak since start (KiB on Linux)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def measure(preset: str, device: str, points: int, repeats: int, threads: int) -> dict:
    """Run in a fresh process: build `preset`, time `repeats` forward passes on `device`."""
    import torch

    from srkd.models import count_parameters, create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(preset).eval().to(device)
    batch = synthetic_room(points).to(device)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    exact_peak = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    with torch.inference_mode():
        out = model(batch)  # warm-up: spconv builds its kernels / caches on the first call
        sync()
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model(batch)
            sync()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else max(_rss_kib("VmHWM") - base, 0) * 1024
    n = len(batch.feat)
    median = statistics.median(times)
    return {
        "preset": preset,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if cuda else _cpu_name(),
        "threads": threads,
        "params": count_parameters(model),
        "points": n,
        "repeats": repeats,
        "forward_s": median,
        "forward_s_per_10k": median * 10_000 / n,
        "peak_mem_bytes": int(peak),
        "peak_mem_kind": "cuda max_memory_allocated"
        if cuda
        else ("cpu peak RSS - RSS before forward" if exact_peak else "cpu ru_maxrss - RSS (upper bound)"),
        "feature_dim": int(out.feature.shape[1]),
        "num_classes": int(out.logits.shape[1]),
    }


def _run_worker(preset: str, device: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--_worker", preset, "--devices", device,
        "--points", str(args.points), "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"preset": preset, "device": device, "error": tail}
    return json.loads(lines[-1])


def _fmt_row(r: dict) -> str:
    if "error" in r:
        return f"{r['preset']:<22} {r['device']:<6} ERROR: {r['error']}"
    return (
        f"{r['preset']:<22} {r['device']:<6} {r['params'] / 1e6:>9.2f}M {r['points']:>8d} "
        f"{r['forward_s_per_10k'] * 1000:>12.1f} {r['peak_mem_bytes'] / 2**20:>11.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", help="default: every registered preset")
    p.add_argument("--devices", nargs="*", help="default: cpu, plus cuda when available")
    p.add_argument("--points", type=int, default=10_000, help="points in the synthetic scene")
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes (median)")
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="torch CPU threads")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per preset and device")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        print(json.dumps(measure(args._worker, args.devices[0], args.points, args.repeats, args.threads)))
        return 0

    import torch

    from srkd.models import list_models

    presets = args.presets or list_models()
    unknown = sorted(set(presets) - set(list_models()))
    if unknown:
        p.error(f"unknown preset(s) {unknown}; known: {', '.join(list_models())}")
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    header = f"{'preset':<22} {'device':<6} {'params':>10} {'points':>8} {'ms/10k pts':>12} {'peak MiB':>11}"
    print(header)
    print("-" * len(header))
    rows = []
    for device in devices:
        for preset in presets:
            row = _run_worker(preset, device, args)
            rows.append(row)
            print(_fmt_row(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "models",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "results": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
