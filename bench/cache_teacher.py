"""Benchmark `srkd cache-teacher`: its wall time versus the bare teacher forward, and its throughput
with 1 and 2 dask workers.

    python bench/cache_teacher.py                              # real scans when present, else synthetic
    python bench/cache_teacher.py --models spunet_small --scenes 4 --views 1
    python bench/cache_teacher.py --data-root DIR --split val --out bench/results/cache_teacher.json

For each teacher (a RANDOMLY INITIALISED registered preset saved as an srkd checkpoint: the
timing of a forward does not depend on the weights' values), on the same first --scenes scenes:

- bare:     load each scene and run exactly the teacher forwards cache-teacher runs
            (`scene_targets`: every view, every test-mode fragment, per-point averaging), no
            encoding, no writing; in this process.
- cache:    `build_cache(..., workers=0)` into a fresh cache, in this process; timed from the
            moment the teacher is loaded and the root written (`on_start`) to the last commit.
            ratio = cache / bare (target <= 1.10: the write-behind thread overlaps encoding and
            writing with the next scene's forward). bare and cache alternate --repeats times;
            the best of each is reported. CPU ratio = the same for this process's CPU seconds
            (all threads; cache includes its teacher load): the extra work, robust to the
            machine's background load, which the wall-time ratio is not on a shared machine.
- dask K:   `build_cache(..., workers=K)` for K = 1, 2: wall time including the local cluster's
            start and each worker's teacher load, and scenes per second over that wall time
            (in-process: scenes / cache time, teacher already loaded).

Every run uses one torch thread per teacher process, so the dask rows measure process
parallelism; the CPU count of the machine bounds what 2 workers can gain. Data: the scans under
../shared/data/scannet_real (train split) when present, else synthetic room-like scenes written to
a temporary folder. Prints a table and writes JSON (default bench/results/cache_teacher.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cache_teacher.json"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "scannet_real"


def synthetic_dataset(root: Path, scenes: int, points: int, seed: int = 0) -> Path:
    """Room-like scenes (points on the floor and walls of a 6 x 5 x 3 m box) in the layout."""
    import numpy as np

    from srkd.data.scannet.layout import write_scene

    rng = np.random.default_rng(seed)
    size = np.array([6.0, 5.0, 3.0])
    for i in range(scenes):
        xyz = rng.random((points, 3)) * size
        face = rng.integers(0, 5, points)
        xyz[face == 0, 2] = 0.0
        xyz[face == 1, 0] = 0.0
        xyz[face == 2, 0] = size[0]
        xyz[face == 3, 1] = 0.0
        xyz[face == 4, 1] = size[1]
        normal = np.zeros((points, 3))
        normal[np.arange(points), np.array([2, 0, 0, 1, 1])[face]] = 1.0
        write_scene(root, "train", f"scene{i:04d}_00", {
            "coord": xyz.astype(np.float32),
            "color": rng.integers(0, 256, (points, 3)).astype(np.uint8),
            "normal": normal.astype(np.float32),
            "segment20": rng.integers(-1, 20, points).astype(np.int64),
        })  # fmt: skip
    return root


def bench_model(name: str, data_root: Path, split: str, args: argparse.Namespace, work: Path) -> dict:
    import torch

    from srkd.cache import CodecSpec
    from srkd.cache_teacher.build import build_cache
    from srkd.cache_teacher.config import CacheJob
    from srkd.cache_teacher.targets import scene_targets
    from srkd.cache_teacher.views import ViewSettings
    from srkd.data.scannet import get_dataset_spec, list_scenes, load_scene
    from srkd.data.scannet.classes import SCANNET20_CLASSES
    from srkd.models import create_model, save_checkpoint
    from srkd.models.teacher import TeacherRef, load_teacher

    torch.manual_seed(0)
    ckpt = save_checkpoint(work / f"{name}.pt", create_model(name), class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="pointcept")  # fmt: skip
    dataset = get_dataset_spec("scannet")
    scenes = list_scenes(data_root, split)[: args.scenes]
    views = ViewSettings(views=args.views, seed=0)
    ensemble = args.views > 1
    job = CacheJob("scannet", data_root, split, TeacherRef(ckpt), work / f"{name}_cache", views,
                   CodecSpec.create(args.codec), args.grid_size, ensemble, "cpu", torch_threads=1)  # fmt: skip
    torch.set_num_threads(1)
    model, info = load_teacher(TeacherRef(ckpt), dataset)
    points = 0
    # warm-up (first-call allocations) on the first scene, untimed
    scene_targets(model, load_scene(data_root, split, scenes[0], dataset), views, args.grid_size,
                  dataset.feature_names, "cpu", ensemble, color_norm=info.color_norm)  # fmt: skip

    def bare_run() -> float:
        nonlocal points
        points = 0
        start, cpu0 = time.perf_counter(), time.process_time()
        for scene in scenes:
            pc = load_scene(data_root, split, scene, dataset)
            scene_targets(model, pc, views, args.grid_size, dataset.feature_names, "cpu", ensemble,
                          color_norm=info.color_norm)
            points += pc.num_points
        cpu.append(time.process_time() - cpu0)
        return time.perf_counter() - start

    cpu: list[float] = []
    cache_cpu: list[float] = []

    def timed(workers: int, out: Path) -> tuple[float, float]:
        shutil.rmtree(out, ignore_errors=True)
        marks: dict[str, float] = {}
        t0, cpu0 = time.perf_counter(), time.process_time()
        build_cache(dataclasses.replace(job, out=out), workers=workers, max_scenes=args.scenes,
                    on_start=lambda *_: marks.setdefault("start", time.perf_counter()))  # fmt: skip
        end = time.perf_counter()
        if workers == 0:  # CPU seconds of this process's threads (teacher + write-behind)
            cache_cpu.append(time.process_time() - cpu0)
        return end - marks["start"], end - t0

    # Interleaved repeats, best of each: the machine's background load varies from run to run.
    bares, caches = [], []
    for _ in range(args.repeats):
        bares.append(bare_run())
        caches.append(timed(0, work / f"{name}_cache0"))
    del model
    bare = min(bares)
    cache, cache_total = min(caches)
    row = {
        "teacher": name, "params": sum(p.numel() for p in create_model(name).parameters()),
        "feature_dim": info.feature_dim, "scenes": len(scenes), "points": points, "views": args.views,
        "ensemble": ensemble, "codec": args.codec, "bare_s": bare, "cache_s": cache,
        "cache_total_s": cache_total, "ratio": cache / bare, "repeats": args.repeats,
        "bare_runs_s": bares, "cache_runs_s": [c for c, _ in caches],
        "bare_cpu_s": min(cpu), "cache_cpu_s": min(cache_cpu), "cpu_ratio": min(cache_cpu) / min(cpu),
    }  # fmt: skip
    from srkd.cache.inspect import summarize

    row["bytes_per_point"] = summarize(work / f"{name}_cache0")["bytes_per_point"]
    for k in args.workers:
        _, total_k = timed(k, work / f"{name}_dask{k}")  # includes cluster start + teacher loads
        row[f"dask{k}_s"] = total_k
        row[f"dask{k}_scenes_per_s"] = len(scenes) / total_k
    row["inprocess_scenes_per_s"] = len(scenes) / cache
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["spunet_small", "test_spunet"])
    parser.add_argument("--data-root", type=Path, default=None, help="default: ../shared/data/scannet_real, else synthetic")
    parser.add_argument("--split", default="train")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved bare/cache runs; the best of each is reported")
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--codec", default="int8")
    parser.add_argument("--grid-size", type=float, default=0.02)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--synthetic-points", type=int, default=50000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="srkd-bench-cache-"))
    try:
        if args.data_root is not None:
            data_root, source = args.data_root, str(args.data_root)
        elif REAL.is_dir():
            data_root, source = REAL, "scannet_real (../shared/data)"
        else:
            data_root = synthetic_dataset(work / "data", args.scenes, args.synthetic_points)
            source = f"synthetic rooms, {args.synthetic_points} points"
        rows = [bench_model(name, data_root, args.split, args, work) for name in args.models]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    head = ["teacher", "scenes", "points", "bare s", "cache s", "ratio", "CPU ratio", "B/pt"]
    head += [f"{k} worker(s) s" for k in args.workers] + [f"{k}w scenes/s" for k in args.workers]
    head += ["in-process scenes/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["teacher"], str(r["scenes"]), f"{r['points']:,}", f"{r['bare_s']:.2f}", f"{r['cache_s']:.2f}",
                 f"{r['ratio']:.3f}", f"{r['cpu_ratio']:.3f}", f"{r['bytes_per_point']:.1f}"]  # fmt: skip
        cells += [f"{r[f'dask{k}_s']:.1f}" for k in args.workers]
        cells += [f"{r[f'dask{k}_scenes_per_s']:.3f}" for k in args.workers]
        cells += [f"{r['inprocess_scenes_per_s']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    print(f"data: {source}, split {args.split}; device cpu, 1 torch thread per teacher process; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "data": source, "split": args.split, "device": "cpu", "torch_threads": 1, "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(), "python": sys.version.split()[0], "platform": platform.platform(),
        "teacher_weights": "random initialisation (timing only)",
    }  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
