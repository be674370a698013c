"""Benchmark distillation quality on real ScanNet scans: teacher, student alone, cached SRKD, online SRKD.

    python bench/distill_quality.py                                  # CPU-sized defaults
    python bench/distill_quality.py --teacher-epochs 40 --student-epochs 30 --threads 1
    python bench/distill_quality.py --data-root ../shared/data/scannet_real --out /tmp/dq.json

Pipeline (all through the library, in this process):
  1. teacher:  `--teacher-model` trained alone (method "ce" = CE + Lovasz, what `srkd train-teacher`
               runs) on <data-root>/train for --teacher-epochs.
  2. caches:   the frozen teacher run over train (--views views, int8, ensemble entry), which the
               cached student reads, and over val (1 view = the scene as stored), which scores the
               teacher from its cache as `srkd evaluate` does.
  3. students: the same `--student-model`, seed, batch and number of steps, trained three ways:
               ce      alone (CE + Lovasz), no teacher;
               cached  SRKD (CE + Lovasz + KL_T + Relation + FeatMSE) against the train cache,
                       targets "view" (each sample replays one cached teacher view);
               online  the same SRKD loss with the teacher run on every batch.
  4. scoring:  every original point of every val scene, one identity view (NO test-time
               augmentation, to save time), split-level confusion -> mIoU, mAcc, allAcc.
               Students are scored from their final weights (validation only at the last epoch,
               so "best" == last); the teacher both from its checkpoint and from its val cache.

Working files (checkpoints, caches) go to a temporary folder (deleted afterwards unless
--keep-work). Prints a table and writes JSON (default bench/results/distill_quality.json).
When the data root is absent the benchmark prints why and exits 0 without doing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "distill_quality.json"
REAL = REPO.parent / "shared" / "data" / "scannet_real"
STUDENTS = ("ce", "cached", "online")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=REAL, help="Pointcept-layout root with train/ and val/")
    p.add_argument("--teacher-model", default="demo_teacher", help="registered model trained as the teacher")
    p.add_argument("--student-model", default="demo_student", help="registered model trained as every student")
    p.add_argument("--teacher-epochs", type=int, default=40)
    p.add_argument("--student-epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=2, help="samples per step (teacher and students)")
    p.add_argument("--grid-size", type=float, default=0.05, help="voxel edge in metres (all models)")
    p.add_argument("--max-points", type=int, default=50000, help="crop per training sample")
    p.add_argument("--relation-points", type=int, default=512, help="points per sample in the relation term")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--block-lr-scale", type=float, default=1.0)
    p.add_argument("--mix3d-prob", type=float, default=0.8)
    p.add_argument("--views", type=int, default=2, help="teacher views per train scene in the cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a busy 2-core box)")
    p.add_argument("--variants", default=",".join(STUDENTS), help="comma-separated subset of ce,cached,online")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    p.add_argument("--keep-work", action="store_true", help="keep checkpoints and caches")
    args = p.parse_args(argv)
    bad = [v for v in args.variants.split(",") if v not in STUDENTS]
    if bad:
        p.error(f"--variants: unknown {bad}; choose from {','.join(STUDENTS)}")
    for name in ("teacher_epochs", "student_epochs", "batch", "views", "threads", "relation_points"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _train(cfg: Any) -> tuple[float, int, dict[str, Any]]:
    """Run one training job; (wall seconds, optimiser steps, mean step seconds)."""
    from srkd.experiment import run

    step_times: list[float] = []

    def on_step(rec: dict[str, Any]) -> None:
        if "step_s" in rec:
            step_times.append(float(rec["step_s"]))

    t0 = time.perf_counter()
    result = run(cfg, on_step=on_step)
    wall = time.perf_counter() - t0
    info = {"mean_step_s": sum(step_times) / len(step_times) if step_times else None,
            "train_val_metrics": {k: v for k, v in result.last_metrics.items()
                                  if isinstance(v, int | float)}}
    return wall, result.step, info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.data_root.expanduser().resolve()
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        print(f"distill_quality: skipped: no dataset at {root} (needs train/ and val/ scene folders)")
        return 0

    import torch

    from srkd.cache import CodecSpec
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.device import configure_threads
    from srkd.evaluate import evaluate_models, load_eval_model
    from srkd.experiment import RunConfig
    from srkd.cache import CacheReader
    from srkd.teacher_cache import TeacherRef, ViewSettings
    from srkd.teacher_cache_run import CacheJob, build_cache
    from srkd.train import OptimConfig

    threads = configure_threads(args.threads)
    variants = [v for v in STUDENTS if v in args.variants.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="srkd-distill-quality-"))
    work = work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    optim = OptimConfig(lr=args.lr, block_lr_scale=args.block_lr_scale)

    def config(model: str, out: Path, epochs: int, **kw: Any) -> RunConfig:
        # validation only at the last epoch: the saved "best" model is the final one, and no
        # variant gets to pick its best epoch on the val split it is scored on
        return RunConfig(model=model, out=out, dataset="scannet", data_root=root, grid_size=args.grid_size,
                         epochs=epochs, batch_size=args.batch, optim=optim, eval_every=epochs,
                         checkpoint_every=10**9, max_points=args.max_points, mix3d_prob=args.mix3d_prob,
                         workers=0, seed=args.seed, device="cpu", **kw)  # fmt: skip

    timings: dict[str, Any] = {}
    try:
        print(f"[1/4] teacher {args.teacher_model}: {args.teacher_epochs} epochs", flush=True)
        teacher_cfg = config(args.teacher_model, work / "teacher", args.teacher_epochs, method="ce")
        wall, steps, info = _train(teacher_cfg)
        teacher_ckpt = work / "teacher" / "model.pt"
        timings["teacher"] = {"wall_s": wall, "steps": steps, **info}
        print(f"      {steps} steps in {wall:.0f} s", flush=True)

        print(f"[2/4] teacher caches: train ({args.views} views), val (1 view)", flush=True)
        caches = {}
        for split, views in (("train", args.views), ("val", 1)):
            job = CacheJob(dataset="scannet", data_root=root, split=split, teacher=TeacherRef(teacher_ckpt),
                           out=work / f"cache_{split}", views=ViewSettings(views=views, seed=args.seed),
                           codec=CodecSpec.create("int8"), grid_size=args.grid_size,
                           ensemble=views > 1, device="cpu")  # fmt: skip
            t0 = time.perf_counter()
            report = build_cache(job, workers=0)
            caches[split] = report.out
            timings[f"cache_{split}"] = {"wall_s": time.perf_counter() - t0, "scenes": report.total}
        print(f"      {timings['cache_train']['wall_s']:.0f} s + {timings['cache_val']['wall_s']:.0f} s", flush=True)

        overrides = {"n_relation_points": args.relation_points}
        student_cfgs = {
            "ce": dict(method="ce"),
            "cached": dict(method="srkd", cache=caches["train"], targets="view", loss_overrides=overrides),
            "online": dict(method="srkd", online_teacher=teacher_ckpt, loss_overrides=overrides),
        }
        ckpts: dict[str, Path] = {}
        for i, v in enumerate(variants):
            print(f"[3/4] student {args.student_model} ({v}): {args.student_epochs} epochs "
                  f"[{i + 1}/{len(variants)}]", flush=True)  # fmt: skip
            cfg = config(args.student_model, work / f"student_{v}", args.student_epochs, **student_cfgs[v])
            wall, steps, info = _train(cfg)
            ckpts[v] = work / f"student_{v}" / "model.pt"
            timings[f"student_{v}"] = {"wall_s": wall, "steps": steps, **info}
            print(f"      {steps} steps in {wall:.0f} s", flush=True)

        print("[4/4] scoring on val (every point, no TTA)", flush=True)
        spec = get_dataset_spec("scannet")
        scenes = ScanNetScenes(root, "val", spec)
        models = [load_eval_model(teacher_ckpt, name="teacher")]
        models += [load_eval_model(ckpts[v], name=f"student-{v}") for v in variants]
        t0 = time.perf_counter()
        evaluation = evaluate_models(scenes, models, cache=CacheReader(caches["val"]),
                                     cache_name="teacher (val cache)", tta=False, device="cpu",
                                     latency_runs=0)  # fmt: skip
        timings["evaluate"] = {"wall_s": time.perf_counter() - t0}
    finally:
        if not args.keep_work and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    train_keys = {"teacher": "teacher", **{f"student-{v}": f"student_{v}" for v in variants}}
    rows = []
    for row in evaluation.rows:
        t = timings.get(train_keys.get(row.name, ""), {})
        rows.append({
            "variant": row.name, "kind": row.kind, "params": row.params,
            "steps": t.get("steps"), "train_wall_s": t.get("wall_s"), "mean_step_s": t.get("mean_step_s"),
            "mIoU": row.scores.miou, "mAcc": row.scores.macc, "allAcc": row.scores.allacc,
            "class_iou": {n: (None if x != x else float(x)) for n, x in zip(spec.class_names, row.scores.iou)},
        })  # fmt: skip
    total = time.perf_counter() - t_start

    header = f"{'variant':<22}{'params':>10}{'steps':>7}{'train s':>9}{'s/step':>8}{'mIoU':>8}{'mAcc':>8}{'allAcc':>8}"
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        steps = str(r["steps"]) if r["steps"] is not None else "-"
        wall = f"{r['train_wall_s']:.0f}" if r["train_wall_s"] is not None else "-"
        sps = f"{r['mean_step_s']:.2f}" if r["mean_step_s"] is not None else "-"
        print(f"{r['variant']:<22}{params:>10}{steps:>7}{wall:>9}{sps:>8}"
              f"{100 * r['mIoU']:>8.1f}{100 * r['mAcc']:>8.1f}{100 * r['allAcc']:>8.1f}")  # fmt: skip
    n_train = len(ScanNetScenes(root, "train", spec).scene_ids)
    print(f"\ndata {root} (train {n_train} scenes -> val {len(scenes.scene_ids)} scenes), grid "
          f"{args.grid_size} m, batch {args.batch}, seed {args.seed}, {threads} thread(s); "
          f"no TTA; total {total / 60:.1f} min")  # fmt: skip

    out = {
        "benchmark": "distill_quality",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "python": platform.python_version(), "device": "cpu",
        "threads": threads, "cpu_count": os.cpu_count(),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "data_root": str(root), "train_scenes": n_train, "val_scenes": len(scenes.scene_ids),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "tta": False, "timings": timings, "total_s": total, "rows": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
