"""Distillation quality: the same student trained alone and with each distillation variant, over seeds.

    # the synthetic bench (the main proxy): the shipped demo teacher, 24 + 16 generated rooms
    python bench/distill_quality.py --jobs 2 --out bench/results/distill_quality_synthetic.json
    # the relation-weight sweep, on a TUNING set of rooms (another data seed, never reported)
    python bench/distill_quality.py --data-seed 12 --variants srkd-release,srkd+relation=1,... \\
        --seeds 0 --extra-variants '' --curve-epochs '' --out bench/results/relation_sweep.json
    # real scans: a teacher is trained here first (no pretrained ScanNet teacher runs on CPU)
    python bench/distill_quality.py --data-root ../shared/data/scannet_real --teacher-epochs 120 ...

What runs (all through the library; one process per training job, `--jobs` at a time):
  1. data:     `--data-root DIR` (Pointcept layout with train/ and val/), or synthetic rooms
               generated into the work folder (`--rooms`, `--val-rooms`, `--data-seed`).
  2. teacher:  `--teacher CKPT` (default: the shipped demo teacher, trained on other rooms), or,
               with `--teacher-epochs E`, `--teacher-model` trained alone on the train split.
  3. cache:    the teacher over the train split, `--views` views (int8) plus the ensemble entry.
  4. students: every variant of `--variants` for every seed of `--seeds` ("core"); every variant
               of `--extra-variants` for the first seed ("extra"); alone and srkd for every epoch
               count of `--curve-epochs`, first seed ("curve": the gain against student steps).
               Every job trains the same student with the same batch, lr, epochs and, for a given
               seed, the same model init and data order; only the loss and target source differ.
  5. scoring:  after the last epoch only (no model selection on the scored split): every original
               point of every val scene, one identity view (no TTA), split-level mIoU/mAcc/allAcc.

Variants: alone (CE + Lovasz), kd, mse, cwd, relation (CE + Lovasz + relation), srkd (calibrated
relation weight), srkd-release (the release's weights), online (srkd with the teacher run in every
step), srkd-canonical / srkd-ensemble (cached targets from view 0 / the view mean instead of the
replayed view). `NAME+key=value[+key=value]` overrides a loss setting, e.g. `srkd+relation=10`.

Finished jobs are appended to <work>/results.jsonl as they end; re-running with the same `--work`
skips them (so a killed bench resumes). Prints a markdown table (mean +- sample std over seeds) and
the per-seed gain over alone, and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO_TEACHER = REPO / "srkd" / "assets" / "demo_teacher.pt"
RESULTS = REPO / "bench" / "results" / "distill_quality.json"
METRICS = ("mIoU", "mAcc", "allAcc")

# variant -> RunConfig keywords (besides the shared ones); "teacher" says where targets come from
VARIANTS: dict[str, dict[str, Any]] = {
    "alone": dict(method="ce"),
    # controls: the student alone on exactly the cached views (replay on, teacher terms off), the
    # class-balanced CE that CWD's per-class normalisation implies, CWD with one-hot ground truth
    # in the teacher's place, and the student alone on DENSE labels (ignores --labelled-*)
    "alone-views": dict(method="ce", teacher="cache", targets="labels"),
    "alone-balanced": dict(method="ce", overrides={"balanced_ce": True}),
    "cwd-labels": dict(method="cwd", teacher="cache", targets="labels"),
    "alone-dense": dict(method="ce", dense=True),
    "cwd-online": dict(method="cwd", teacher="online"),
    "kd": dict(method="kd", teacher="cache"),
    "mse": dict(method="mse", teacher="cache"),
    "cwd": dict(method="cwd", teacher="cache"),
    "relation": dict(method="relation", teacher="cache"),
    "srkd": dict(method="srkd", teacher="cache"),
    "srkd-release": dict(method="srkd-release", teacher="cache"),
    "online": dict(method="srkd", teacher="online"),
    "srkd-canonical": dict(method="srkd", teacher="cache", targets="canonical"),
    "srkd-ensemble": dict(method="srkd", teacher="cache", targets="ensemble"),
}
CORE = "alone,kd,srkd-release,srkd,online"
EXTRA = "mse,cwd,relation,srkd-canonical,srkd-ensemble"


@dataclass(frozen=True)
class Job:
    """One student training run; `key` identifies it in results.jsonl."""

    group: str  # core | extra | curve
    variant: str
    seed: int
    epochs: int

    @property
    def key(self) -> str:
        return f"{self.variant}|seed={self.seed}|epochs={self.epochs}"


def _value(key: str, text: str) -> Any:
    """A loss setting's value from its text: true/false, an int for n_relation_points, a float,
    else the text (e.g. kl_points=labelled)."""
    if text in ("true", "false"):
        return text == "true"
    if key == "n_relation_points":
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_variant(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """'srkd+relation=10' -> (VARIANTS['srkd'], {'relation': 10.0}); SystemExit on a bad name.
    The variant's own overrides (e.g. alone-balanced's balanced_ce) come first."""
    name, *pairs = spec.split("+")
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r} in {spec!r}; known: {', '.join(VARIANTS)}")
    overrides: dict[str, Any] = dict(VARIANTS[name].get("overrides", {}))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"variant {spec!r}: expected NAME+key=value, got {pair!r}")
        overrides[key] = _value(key, value)
    return VARIANTS[name], overrides


def _csv(text: str, kind: type = str) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=None,
                   help="Pointcept-layout root (train/, val/); default: generate synthetic rooms")
    p.add_argument("--rooms", type=int, default=24, help="synthetic train rooms")
    p.add_argument("--val-rooms", type=int, default=16, help="synthetic val rooms")
    p.add_argument("--points", type=int, default=12000, help="points per synthetic room")
    p.add_argument("--data-seed", type=int, default=11, help="seed of the synthetic rooms")
    p.add_argument("--teacher", type=Path, default=DEMO_TEACHER, help="teacher checkpoint (srkd format)")
    p.add_argument("--teacher-epochs", type=int, default=0,
                   help="> 0: train --teacher-model on the train split instead of loading --teacher")
    p.add_argument("--teacher-model", default="demo_teacher")
    p.add_argument("--student", default="demo_student", help="student preset (every variant)")
    p.add_argument("--epochs", type=int, default=20, help="student epochs of core and extra jobs")
    p.add_argument("--variants", default=CORE, help="core variants, run for every seed")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the core variants")
    p.add_argument("--extra-variants", default=EXTRA, help="variants run for the first seed only")
    p.add_argument("--curve-epochs", default="5,10,40",
                   help="epoch counts of the gain-vs-steps curve (alone and srkd, first seed)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--block-lr-scale", type=float, default=1.0)
    p.add_argument("--grid-size", type=float, default=0.05)
    p.add_argument("--max-points", type=int, default=50000)
    p.add_argument("--mix3d-prob", type=float, default=0.8)
    p.add_argument("--relation-points", type=int, default=512, help="points per sample in the relation term")
    p.add_argument("--views", type=int, default=2, help="cached teacher views per train scene")
    p.add_argument("--view-p-rotate", type=float, default=None,
                   help="probability of the z-rotation in cached views 1..V-1 (default: the cache's)")
    p.add_argument("--labelled-points", type=int, default=None,
                   help="limited annotations: labelled points per train room (every student but alone-dense)")
    p.add_argument("--labelled-scenes", type=float, default=None, help="limited scenes: labelled fraction")
    p.add_argument("--label-seed", type=int, default=0)
    p.add_argument("--unlabelled-rooms", type=int, default=0,
                   help="extra synthetic train rooms WITHOUT label files (cached; teacher targets only)")
    p.add_argument("--jobs", type=int, default=1, help="training jobs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--work", type=Path, default=None,
                   help="working folder; finished jobs there are not run again (default: bench/results/work-<name>)")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: summarise the planned jobs already in <work>/results.jsonl")
    args = p.parse_args(argv)
    for name in ("rooms", "val_rooms", "epochs", "batch", "views", "jobs", "threads", "relation_points"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.seed_list = _csv(args.seeds, int)
    if not args.seed_list:
        p.error("--seeds needs at least one seed")
    args.core, args.extra = _csv(args.variants), _csv(args.extra_variants)
    args.curve = _csv(args.curve_epochs, int)
    for spec in args.core + args.extra:
        parse_variant(spec)
    if args.work is None:
        args.work = args.out.with_name(f"work-{args.out.stem}")
    return args


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """Core (variants x seeds), extra (first seed), curve (alone + srkd x epochs, first seed)."""
    first = args.seed_list[0]
    jobs = [Job("core", v, s, args.epochs) for s in args.seed_list for v in args.core]
    jobs += [Job("extra", v, first, args.epochs) for v in args.extra]
    jobs += [Job("curve", v, first, e) for e in args.curve for v in ("alone", "srkd")]
    unique: dict[str, Job] = {}
    for job in jobs:  # a curve point at --epochs is the core job itself
        unique.setdefault(job.key, job)
    return list(unique.values())


# ---------------------------------------------------------------------------------------------
# stages that run in this process


def prepare_data(args: argparse.Namespace) -> Path:
    """The data root: --data-root, or synthetic rooms generated once into the work folder."""
    if args.data_root is not None:
        root = args.data_root.expanduser().resolve()
        if not ((root / "train").is_dir() and (root / "val").is_dir()):
            raise SystemExit(f"distill_quality: no dataset at {root} (needs train/ and val/ scene folders)")
        return root
    from srkd.data.synthetic.rooms import generate_dataset

    n = args.rooms + args.val_rooms
    root = args.work / f"rooms-seed{args.data_seed}-{args.rooms}+{args.val_rooms}x{args.points}"
    if not (root / "val").is_dir():
        generate_dataset(root, n, args.data_seed, args.val_rooms / n, args.points, workers=1)
    if args.unlabelled_rooms:
        root = add_unlabelled_rooms(args, root)
    return root


def add_unlabelled_rooms(args: argparse.Namespace, labelled: Path) -> Path:
    """A copy of the data root (links to its scenes) whose train split also holds
    --unlabelled-rooms rooms of another seed with their label files removed."""
    import shutil

    from srkd.data.synthetic.rooms import generate_dataset

    root = labelled.with_name(f"{labelled.name}+{args.unlabelled_rooms}unlabelled")
    if (root / "val").is_dir():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    extra = tmp / "extra"
    generate_dataset(extra, args.unlabelled_rooms, args.data_seed + 1000, 0.0, args.points, workers=1)
    for split in ("train", "val"):
        (tmp / split).mkdir(parents=True, exist_ok=True)
        for scene in sorted((labelled / split).iterdir()):
            if scene.is_dir():
                shutil.copytree(scene, tmp / split / scene.name)
    for scene in sorted((extra / "train").iterdir()):
        if scene.is_dir():
            dest = tmp / "train" / f"unlabelled-{scene.name}"
            shutil.copytree(scene, dest)
            for stem in ("segment20", "segment200", "instance"):
                (dest / f"{stem}.npy").unlink(missing_ok=True)
    shutil.rmtree(extra)
    tmp.rename(root)
    return root


def prepare_teacher(args: argparse.Namespace, root: Path) -> tuple[Path, dict[str, Any]]:
    """(teacher checkpoint, its training info): trained here with --teacher-epochs, else --teacher."""
    if args.teacher_epochs <= 0:
        if not args.teacher.is_file():
            raise SystemExit(f"distill_quality: teacher checkpoint {args.teacher} not found")
        return args.teacher.resolve(), {"checkpoint": str(args.teacher)}
    out = args.work / f"teacher-{args.teacher_model}-{args.teacher_epochs}ep"
    ckpt = out / "model_last.pt"
    if not ckpt.is_file():
        cfg = _run_config(args, root, args.teacher_model, out, args.teacher_epochs, seed=0, method="ce")
        t0 = time.perf_counter()
        from srkd.distill.run import run  # threads were configured by main

        run(cfg)
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return ckpt, {"checkpoint": str(ckpt), "epochs": args.teacher_epochs, "model": args.teacher_model,
                  "train_wall_s": float((out / "wall_s.txt").read_text())}  # fmt: skip


def prepare_cache(args: argparse.Namespace, root: Path, teacher: Path) -> tuple[Path, float]:
    """The teacher cache of the train split (resumes / no-ops when already complete)."""
    from srkd.cache import CodecSpec
    from srkd.cache_teacher.build import build_cache
    from srkd.cache_teacher.config import CacheJob
    from srkd.cache_teacher.views import ViewSettings
    from srkd.models.teacher import TeacherRef

    rotate = {} if args.view_p_rotate is None else {"p_rotate": args.view_p_rotate}
    tag = "" if args.view_p_rotate is None else f"-rot{args.view_p_rotate:g}"
    tag += f"-{args.unlabelled_rooms}unlabelled" if args.unlabelled_rooms else ""
    out = args.work / f"cache-{teacher.stem}-{args.views}views{tag}"
    job = CacheJob(dataset="scannet", data_root=root, split="train", teacher=TeacherRef(teacher), out=out,
                   views=ViewSettings(views=args.views, seed=0, **rotate), codec=CodecSpec.create("int8"),
                   grid_size=args.grid_size, ensemble=args.views > 1, device="cpu")  # fmt: skip
    t0 = time.perf_counter()
    build_cache(job, workers=0)
    return out, time.perf_counter() - t0


def score_teacher(root: Path, teacher: Path, grid_size: float) -> dict[str, float]:
    """The teacher scored exactly like the students (every val point, no TTA)."""
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.models import load_checkpoint
    from srkd.scoring import score_model

    spec = get_dataset_spec("scannet")
    model, meta = load_checkpoint(teacher, expect_classes=spec.num_classes)
    source = ScanNetScenes(root, "val", spec)
    scores = score_model(model, [source.load(s) for s in source.scene_ids], spec.num_classes,
                         grid_size, spec.feature_names, color_norm=meta.color_norm)  # fmt: skip
    return {"mIoU": scores.miou, "mAcc": scores.macc, "allAcc": scores.allacc,
            "params": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------------------------------------
# one training job (runs in a worker process)


def _configure(threads: int) -> None:
    from srkd.device import configure_threads

    configure_threads(threads)


def _run_config(args: argparse.Namespace, root: Path, model: str, out: Path, epochs: int, seed: int,
                **kw: Any):
    from srkd.distill.config import OptimConfig, RunConfig

    # validation only after the last epoch: model.pt is the final model, no variant picks its
    # best epoch on the split it is scored on
    return RunConfig(model=model, out=out, dataset="scannet", data_root=root, grid_size=args.grid_size,
                     epochs=epochs, batch_size=args.batch, eval_every=epochs, checkpoint_every=10**9,
                     optim=OptimConfig(lr=args.lr, block_lr_scale=args.block_lr_scale),
                     max_points=args.max_points, mix3d_prob=args.mix3d_prob, workers=0, seed=seed,
                     device="cpu", **kw)  # fmt: skip


def run_job(args: argparse.Namespace, root: Path, teacher: Path, cache: Path, job: Job) -> dict[str, Any]:
    """Train one student and return its final val scores, wall time and first-step loss shares."""
    _configure(args.threads)
    from srkd.distill.run import run

    base, overrides = parse_variant(job.variant)
    kw = {k: v for k, v in base.items() if k not in ("teacher", "overrides", "dense")}
    if not base.get("dense"):
        kw.update(labelled_points=args.labelled_points, labelled_scenes=args.labelled_scenes,
                  label_seed=args.label_seed)
    elif args.unlabelled_rooms:  # every label of every labelled room (a budget that keeps all
        kw.update(labelled_scenes=1.0)  # labels admits the rooms without label files)
    if base.get("teacher") == "cache":
        kw["cache"] = cache
    elif base.get("teacher") == "online":
        kw["online_teacher"] = teacher
    kw["loss_overrides"] = {"n_relation_points": args.relation_points, **overrides}
    out = args.work / "students" / job.key.replace("|", "_").replace("=", "")
    cfg = _run_config(args, root, args.student, out, job.epochs, job.seed, **kw)
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    result = run(cfg, on_step=records.append)
    wall = time.perf_counter() - t0
    scores = {k: float(result.last_metrics[k]) for k in METRICS}
    terms = loss_terms(records[0])
    tail = records[-max(1, len(records) // 10):]  # the last tenth of training
    return {**asdict(job), "key": job.key, "steps": result.step, "wall_s": wall,
            "mean_step_s": statistics.fmean(r["step_s"] for r in records),
            "first_step_terms": {k: records[0][k] for k in terms},
            "last_tenth_terms": {k: statistics.fmean(r[k] for r in tail) for k in terms
                                 if all(k in r for r in tail)},
            "relation_targets": {k: v for k, v in records[0].items() if k.startswith("relation_") and
                                 k[len("relation_"):] in ("target_entropy", "same_class_mass", "same_class_chance")},
            **scores}  # fmt: skip


def loss_terms(row: dict[str, Any]) -> list[str]:
    """The loss-term keys of a training log row: numbers other than its time, place and speed
    (srkd.distill.run_log.META_KEYS, lr, points/s, step time)."""
    from srkd.distill.run_log import META_KEYS

    skip = {*META_KEYS, "lr", "points_per_s", "step_s"}
    return [k for k, v in row.items() if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)]


# ---------------------------------------------------------------------------------------------
# reporting


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Per variant (core and extra): mean/std of each metric over seeds and the per-seed gain over
    alone (same seed and epochs); the curve: alone and srkd per epoch count."""
    by_key = {r["key"]: r for r in rows}
    table = []
    for variant in dict.fromkeys(args.core + args.extra):
        runs = [r for r in rows if r["variant"] == variant and r["epochs"] == args.epochs]
        if not runs:
            continue
        entry: dict[str, Any] = {"variant": variant, "seeds": [r["seed"] for r in runs],
                                 "steps": runs[0]["steps"], "wall_s": _mean_std([r["wall_s"] for r in runs])}
        for m in METRICS:
            entry[m] = _mean_std([100 * r[m] for r in runs])
        gains = []
        for r in runs:
            alone = by_key.get(Job("core", "alone", r["seed"], r["epochs"]).key)
            if alone is not None:
                gains.append(100 * (r["mIoU"] - alone["mIoU"]))
        entry["gain_mIoU_per_seed"] = gains
        entry["first_step_shares"] = {k[: -len("_share")]: v for k, v in runs[0]["first_step_terms"].items()
                                      if k.endswith("_share")}  # fmt: skip
        if "relation" in runs[0]["first_step_terms"]:  # the unweighted term: does training lower it?
            entry["relation_first_last"] = [statistics.fmean(r[k]["relation"] for r in runs)
                                            for k in ("first_step_terms", "last_tenth_terms")]
            entry["relation_share_last"] = statistics.fmean(r["last_tenth_terms"]["relation_share"] for r in runs)
        table.append(entry)
    curve = []
    for epochs in sorted({r["epochs"] for r in rows}):
        pair = {v: by_key.get(Job("curve", v, args.seed_list[0], epochs).key) for v in ("alone", "srkd")}
        if all(pair.values()):
            curve.append({"epochs": epochs, "steps": pair["alone"]["steps"],
                          "alone": 100 * pair["alone"]["mIoU"], "srkd": 100 * pair["srkd"]["mIoU"],
                          "gain": 100 * (pair["srkd"]["mIoU"] - pair["alone"]["mIoU"])})  # fmt: skip
    return {"table": table, "curve": curve}


def label_text(args: argparse.Namespace) -> str:
    """The label budget of the students (alone-dense excepted), for the header."""
    from srkd.data.labels import LabelBudget

    text = LabelBudget(points_per_scene=args.labelled_points, scene_fraction=args.labelled_scenes,
                       seed=args.label_seed).describe()
    return text + (f", + {args.unlabelled_rooms} unlabelled rooms" if args.unlabelled_rooms else "")


def print_report(summary: dict[str, Any], teacher: dict[str, Any], header: str) -> None:
    print(f"\n{header}\n")
    print("| variant | seeds | steps | mIoU | mAcc | allAcc | gain mIoU vs alone (per seed) | train s |")
    print("|:---|---:|---:|---:|---:|---:|:---|---:|")
    print(f"| teacher | - | - | {teacher['mIoU'] * 100:.1f} | {teacher['mAcc'] * 100:.1f} | "
          f"{teacher['allAcc'] * 100:.1f} | - | - |")
    for e in summary["table"]:
        cells = " | ".join(f"{e[m][0]:.1f} ± {e[m][1]:.1f}" for m in METRICS)
        gains = ", ".join(f"{g:+.1f}" for g in e["gain_mIoU_per_seed"]) or "-"
        print(f"| {e['variant']} | {len(e['seeds'])} | {e['steps']} | {cells} | {gains} | {e['wall_s'][0]:.0f} |")
    if summary["curve"]:
        print("\n| student steps | alone mIoU | srkd mIoU | gain |\n|---:|---:|---:|---:|")
        for c in summary["curve"]:
            print(f"| {c['steps']} | {c['alone']:.1f} | {c['srkd']:.1f} | {c['gain']:+.1f} |")
    print()
    for e in summary["table"]:
        if e["first_step_shares"] and e["variant"] != "alone":
            shares = ", ".join(f"{k} {100 * v:.2f}%" for k, v in e["first_step_shares"].items())
            print(f"{e['variant']}: loss shares at step 1: {shares}")
        if "relation_first_last" in e:
            first, last = e["relation_first_last"]
            print(f"{e['variant']}: relation term (unweighted) {first:.4g} at step 1 -> {last:.4g} in the "
                  f"last tenth of training (share {100 * e['relation_share_last']:.2f}%)")


# ---------------------------------------------------------------------------------------------


def finished_rows(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The jobs recorded in <work>/results.jsonl, by key."""
    log = args.work / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    return {row["key"]: row for row in rows}


def run_jobs(args, root: Path, teacher: Path, cache: Path, jobs: list[Job]) -> list[dict[str, Any]]:
    """Run the jobs not yet in results.jsonl, `--jobs` at a time; every finished job is appended.
    Returns the rows of the planned jobs that have finished (all of them unless --report-only)."""
    log = args.work / "results.jsonl"
    done = finished_rows(args)
    todo = [j for j in jobs if j.key not in done]
    print(f"[students] {len(jobs)} jobs, {len(jobs) - len(todo)} already done, {args.jobs} at a time", flush=True)
    if args.report_only:
        if todo:
            print(f"[students] --report-only: not run: {', '.join(j.key for j in todo)}", flush=True)
        return [done[j.key] for j in jobs if j.key in done]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(run_job, args, root, teacher, cache, j): j for j in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                row = fut.result()
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                done[job.key] = row
                print(f"  {job.key}: mIoU {100 * row['mIoU']:.1f} ({row['wall_s']:.0f} s)", flush=True)
    return [done[j.key] for j in jobs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work = args.work.expanduser().resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    _configure(args.threads)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    root = prepare_data(args)
    teacher, teacher_info = prepare_teacher(args, root)
    cache, cache_s = prepare_cache(args, root, teacher)
    print(f"[teacher] {teacher} on {root}; cache {cache} ({cache_s:.0f} s)", flush=True)
    teacher_scores = score_teacher(root, teacher, args.grid_size)
    print(f"[teacher] val mIoU {100 * teacher_scores['mIoU']:.1f}", flush=True)
    jobs = plan_jobs(args)
    rows = run_jobs(args, root, teacher, cache, jobs)
    not_run = sorted({j.key for j in jobs} - {r["key"] for r in rows})
    summary = summarise(rows, args)

    import torch

    n_train = len([p for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith(".")])
    n_val = len([p for p in (root / "val").iterdir() if p.is_dir() and not p.name.startswith(".")])
    header = (f"data {root.name} (train {n_train} -> val {n_val} scenes), student {args.student}, "
              f"{args.epochs} epochs x batch {args.batch}, grid {args.grid_size} m, {args.views} cached views"
              f"{'' if args.view_p_rotate is None else f' (rotation p {args.view_p_rotate:g})'}, "
              f"labels: {label_text(args)}, "
              f"seeds {args.seeds}, {args.threads} thread(s) x {args.jobs} job(s), no TTA, "
              + ("report only (train s: each job's own wall time)" if args.report_only
                 else f"wall {(time.perf_counter() - t_start) / 60:.1f} min"))  # fmt: skip
    print_report(summary, teacher_scores, header)
    out = {
        "benchmark": "distill_quality",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "data_root": str(root), "train_scenes": n_train, "val_scenes": n_val, "header": header,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "teacher": {**teacher_info, **teacher_scores}, "cache_s": cache_s,
        "summary": summary, "rows": rows, "not_run": not_run, "total_s": time.perf_counter() - t_start,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
