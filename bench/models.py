"""Benchmark model presets: forward and forward+backward points/s, GFLOP/s against the
machine's fp32 matmul roofline, peak memory; optionally side by side with an older commit.

    python bench/models.py                         # all presets, CPU (+ CUDA when present)
    python bench/models.py --presets ptv3_half demo_student --points 100000 --threads 2
    python bench/models.py --presets demo_student --points 100000 --against main --rounds 2
    python bench/models.py --presets ptv3_half --points 100000 --profile 20   # torch.profiler

Each (tree, preset, device) runs in its own subprocess so peak memory is that model's alone:
- CPU: peak resident set size during the forward passes (VmHWM, reset just before them through
  /proc/self/clear_refs) minus the resident size before them (model and input already built),
  i.e. the activation memory of inference. tracemalloc cannot see torch's allocations.
- CUDA: torch.cuda.max_memory_allocated() over the forward passes (model weights included).
The input is one synthetic indoor-like scene (points on the floor and walls of a 6 x 5 x 3 m room,
2 cm voxels, one point per voxel, 6 input channels), batch size 1.
- forward: eval mode under torch.inference_mode.
- forward+backward: train mode (drop-path, order shuffling on, seeded per pass), loss =
  mean(logits^2) + mean(feature^2), backward; no optimizer step.
Times are the median of --repeats after one warm-up pass; points/s = points / median time.
The process CPU time of the same passes is recorded too (and its old/new ratio): at one thread it
is robust to other processes on a shared machine, where wall time with 2 threads is not.
FLOPs of one pass are counted once with torch.utils.flop_counter (matmuls, convolutions,
attention; spconv's CPU path runs through aten mm and is counted, elementwise ops are not), so
GFLOP/s = counted FLOPs / median time. The roofline is the fp32 matmul GFLOP/s of a
--matmul-size square matmul measured in the same worker with the same threads.
--against REV: `git archive REV` is unpacked into a temporary folder and every worker for it runs
with that tree first on PYTHONPATH; the workers of both trees alternate (rounds x presets) so they
share the machine's noise, and the table reports old / new time ratios (the speed-up).
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
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
RESULTS = HERE.parent / "results" / "models.json"


def synthetic_room(points: int, seed: int = 0):
    """A PointBatch of `points` unique 2 cm voxels on the floor and walls of a box room."""
    from srkd.data.collate import collate

    return collate([synthetic_sample(points, seed)])


def synthetic_sample(points: int, seed: int = 0):
    """The VoxelSample of `synthetic_room`."""
    import numpy as np

    from srkd.data.collate import VoxelSample

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
        scene_id=f"bench_room{seed}",
    )
    return sample


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


def matmul_gflops(size: int, device: str, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a (size x size) @ (size x size) matmul: the best of `repeats`."""
    import torch

    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _train_pass(model, batch, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    out = model(batch)
    loss = out.logits.float().square().mean() + out.feature.float().square().mean()
    loss.backward()


def _timed(fn, repeats: int, device: str) -> tuple[list[float], list[float]]:
    """(wall s, process CPU s) of `repeats` calls after a warm-up call (CPU: robust to load)."""
    fn()  # warm-up: spconv builds its kernels / caches on the first call
    times, cpu = [], []
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _profile(fn, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def measure(preset: str, device: str, args: argparse.Namespace) -> dict:
    """Run in a fresh process: build `preset`, time forward and forward+backward on `device`."""
    import torch

    from srkd.models import count_parameters, create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(preset).to(device)
    batch = synthetic_room(args.points).to(device)
    cuda = device.startswith("cuda")
    roofline = matmul_gflops(args.matmul_size, device)

    def forward():
        with torch.inference_mode():
            return model.eval()(batch)

    def train():
        model.train()
        model.zero_grad(set_to_none=True)
        _train_pass(model, batch, seed=1)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    exact_peak = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    fwd_times, fwd_cpu = _timed(forward, args.repeats, device)
    peak = torch.cuda.max_memory_allocated() if cuda else max(_rss_kib("VmHWM") - base, 0) * 1024
    out = forward()
    train_times, train_cpu = _timed(train, args.repeats, device) if args.backward else ([], [])
    fwd_flops, train_flops = _flops(forward), (_flops(train) if args.backward else 0)
    n = len(batch.feat)
    fwd_s = statistics.median(fwd_times)
    row = {
        "preset": preset, "device": device, "tree": args.tree_label,
        "device_name": torch.cuda.get_device_name(0) if cuda else _cpu_name(),
        "threads": args.threads, "params": count_parameters(model), "points": n,
        "repeats": args.repeats, "forward_s": fwd_s, "forward_times_s": fwd_times,
        "forward_cpu_s": statistics.median(fwd_cpu),
        "forward_s_per_10k": fwd_s * 10_000 / n, "forward_points_per_s": n / fwd_s,
        "forward_gflop": fwd_flops / 1e9, "forward_gflops_per_s": fwd_flops / fwd_s / 1e9,
        "matmul_gflops_per_s": roofline,
        "peak_mem_bytes": int(peak),
        "peak_mem_kind": "cuda max_memory_allocated"
        if cuda
        else ("cpu peak RSS - RSS before forward" if exact_peak else "cpu ru_maxrss - RSS (upper bound)"),
        "feature_dim": int(out.feature.shape[1]), "num_classes": int(out.logits.shape[1]),
    }  # fmt: skip
    if train_times:
        train_s = statistics.median(train_times)
        row.update(train_s=train_s, train_times_s=train_times, train_cpu_s=statistics.median(train_cpu),
                   train_points_per_s=n / train_s,
                   train_gflop=train_flops / 1e9, train_gflops_per_s=train_flops / train_s / 1e9)
    if args.profile:
        row["profile_forward"] = _profile(forward, args.profile)
        if args.backward:
            row["profile_train"] = _profile(train, args.profile)
    return row


def export_tree(rev: str, dest: Path) -> Path:
    """Unpack `git archive rev` of this repository into dest/tree; returns that folder."""
    tree = dest / "tree"
    tree.mkdir(parents=True)
    tar = dest / "tree.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(tree, filter="data")
    return tree


def _run_worker(preset: str, device: str, tree: Path, label: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, str(HERE), "--_worker", preset, "--devices", device, "--tree-label", label,
        "--points", str(args.points), "--repeats", str(args.repeats), "--threads", str(args.threads),
        "--matmul-size", str(args.matmul_size), "--profile", str(args.profile),
    ] + ([] if args.backward else ["--no-backward"])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=tree, check=False)
    except subprocess.TimeoutExpired:
        return {"preset": preset, "device": device, "tree": label, "error": f"timeout {args.timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"preset": preset, "device": device, "tree": label, "error": tail}
    return json.loads(lines[-1])


def _fmt_row(r: dict) -> str:
    name = f"{r['preset']} [{r['tree']}]"
    if "error" in r:
        return f"{name:<30} {r['device']:<6} ERROR: {r['error']}"
    train = (f"{r['train_points_per_s']:>10.0f} {r['train_gflops_per_s']:>8.1f}"
             if "train_s" in r else f"{'-':>10} {'-':>8}")
    return (
        f"{name:<30} {r['device']:<6} {r['params'] / 1e6:>7.2f}M {r['points']:>7d} "
        f"{r['forward_s_per_10k'] * 1000:>9.1f} {r['forward_points_per_s']:>10.0f} "
        f"{r['forward_gflops_per_s']:>8.1f} {train} {r['matmul_gflops_per_s']:>8.1f} "
        f"{r['peak_mem_bytes'] / 2**20:>9.1f}"
    )


def _ratios(rows: list[dict]) -> list[dict]:
    """Per (preset, device): median over rounds of each tree, and old / new time ratios."""
    out = []
    keys = sorted({(r["preset"], r["device"]) for r in rows if "error" not in r})
    for preset, device in keys:
        entry: dict = {"preset": preset, "device": device}
        for tree in ("new", "old"):
            mine = [r for r in rows if (r["preset"], r["device"], r.get("tree")) == (preset, device, tree)
                    and "error" not in r]
            for key in ("forward_s", "train_s", "forward_cpu_s", "train_cpu_s"):
                vals = [r[key] for r in mine if key in r]
                if vals:
                    entry[f"{tree}_{key}"] = statistics.median(vals)
        for key in ("forward_s", "train_s", "forward_cpu_s", "train_cpu_s"):
            if f"old_{key}" in entry and f"new_{key}" in entry:
                entry[f"speedup_{key}"] = entry[f"old_{key}"] / entry[f"new_{key}"]
        out.append(entry)
    return out


def _write(args: argparse.Namespace, rows: list[dict], complete: bool, ratios: list | None = None) -> None:
    """Write the JSON report atomically; `complete` is False while workers are still running."""
    import torch

    payload = {
        "benchmark": "models", "complete": complete,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "against": args.against,
        "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(), "results": rows, "ratios": ratios or [],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2))
    tmp_out.replace(args.out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", help="default: every registered preset")
    p.add_argument("--devices", nargs="*", help="default: cpu, plus cuda when available")
    p.add_argument("--points", type=int, default=10_000, help="points in the synthetic scene")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each kind (median)")
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="torch CPU threads")
    p.add_argument("--no-backward", dest="backward", action="store_false", help="forward only")
    p.add_argument("--against", metavar="REV", help="also time the tree of git revision REV")
    p.add_argument("--rounds", type=int, default=1, help="worker runs per (tree, preset), alternating")
    p.add_argument("--matmul-size", type=int, default=1024, help="side of the roofline matmul")
    p.add_argument("--profile", type=int, default=0, help="rows of a torch.profiler table (0: off)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    p.add_argument("--_worker", help=argparse.SUPPRESS)  # internal: one worker subprocess
    p.add_argument("--tree-label", default="new", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        import srkd

        row = measure(args._worker, args.devices[0], args)
        row["srkd_path"] = str(Path(srkd.__file__).parent)
        print(json.dumps(row))
        return 0

    import torch

    from srkd.models import list_models

    presets = args.presets or list_models()
    unknown = sorted(set(presets) - set(list_models()))
    if unknown:
        p.error(f"unknown preset(s) {unknown}; known: {', '.join(list_models())}")
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    with tempfile.TemporaryDirectory(prefix="srkd-bench-models-") as tmp:
        trees = [("new", REPO)]
        if args.against:
            trees.append(("old", export_tree(args.against, Path(tmp))))
        header = (f"{'preset [tree]':<30} {'device':<6} {'params':>8} {'points':>7} {'ms/10k':>9} "
                  f"{'fwd pt/s':>10} {'fwd GF/s':>8} {'trn pt/s':>10} {'trn GF/s':>8} "
                  f"{'mm GF/s':>8} {'peak MiB':>9}")
        print(header)
        print("-" * len(header))
        rows = []
        for r in range(args.rounds):
            for device in devices:
                for preset in presets:
                    order = trees if r % 2 == 0 else trees[::-1]  # alternate who goes first
                    for label, tree in order:
                        row = _run_worker(preset, device, tree, label, args)
                        rows.append(row)
                        print(_fmt_row(row), flush=True)
                        _write(args, rows, complete=False)  # a killed run keeps its rows
                        for kind in ("profile_forward", "profile_train"):
                            if kind in row:
                                print(f"{kind} {preset} [{label}]\n{row[kind]}")
    ratios = _ratios(rows) if args.against else []
    for e in ratios:
        nan = float("nan")  # a ratio is missing when a worker failed
        train = "" if not args.backward else (
            f", forward+backward {e.get('speedup_train_s', nan):.2f}x ({e.get('speedup_train_cpu_s', nan):.2f}x)")
        print(f"{e['preset']} {e['device']}: old/new wall (CPU) time: forward "
              f"{e.get('speedup_forward_s', nan):.2f}x ({e.get('speedup_forward_cpu_s', nan):.2f}x){train}")
    _write(args, rows, complete=True, ratios=ratios)
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
