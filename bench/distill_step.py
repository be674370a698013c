"""Benchmark one distillation training step: CE only, cached SRKD (targets gathered in the data
path, or inside the training step) and online SRKD, same student, same batch,
interleaved in one run.

    python bench/distill_step.py                        # CPU: 2 samples x 8k points, 3 repeats
    python bench/distill_step.py --device cuda --batch 8 --points 40000 --repeats 20
    python bench/distill_step.py --relation-points 1024 --threads 2 --out /tmp/step.json

A step is what `srkd.distill.loop.train` times: teacher targets (no grad), student forward, loss,
backward and the AdamW step (fp16 autocast + GradScaler on CUDA), CUDA-synchronised at both ends.

- ce:      the student alone (CE + Lovasz), no targets.
- cached:  SRKD (CE + Lovasz + 0.3 KL_T + 1e-3 Relation + 0.1 FeatMSE) with targets from a real
           Zarr cache on disk (default int8 codec), built once at start with the teacher, as
           training gets them: each sample gathered its own targets when the dataset made it
           (`CachedTargets.sample` as the dataset's target source; in the DataLoader workers when
           --workers > 0), the batch carries them in host memory (pinned on CUDA), and the step's
           targets part is `srkd.distill.targets.batch_targets`: only their host -> device copy.
- cached_inproc: the same, with the gather in the training process
           (`CachedTargets` on the batch as the step's targets_fn, on its critical path). The
           reader's LRU is OFF (cache_bytes=0): every gather reads and decodes the samples' cache
           entries from disk (OS page cache), as when the training set far exceeds the LRU.
- online:  the same SRKD loss with the teacher (`--teacher`, default ptv3_large, ~125M) run on
           the batch inside every step (`srkd.distill.targets.OnlineTeacher`), as the release does.

Each variant trains its own copy of one initial student (the same weights at the start). After
--warmup steps of each, the variants take turns --repeats times (the order rotates every round)
so machine noise is shared. Reported per variant: mean / median / std of the step's wall time,
its process CPU time (all threads; robust to other processes on a shared machine) and the part
spent getting the targets. P1 = cached / ce (target <= 1.05), P2 = online / cached next to its
limit 1 + t_teacher / t_cached_step (the online step's teacher time over the cached step), and the
targets time on the training process's critical path in both (cached_inproc: the gather;
cached: the copy only).
Timed separately: the in-process gather of the batch alone (cold = LRU off, warm = entries held
in the LRU), and the gather inside the dataset (the target source's calls while the batch's
samples are made, next to the whole sample making), which the DataLoader workers pay.

The batch is real: the first --batch scans of ../shared/data/scannet_real/train when present
(else synthetic rooms), each cut to its ~1.25 x --points raw points nearest its centre, written
to a temporary folder (deleted afterwards; nothing is copied into the repository), cached by the
teacher (1 canonical view), then made into student samples by the training dataset path
(`SceneDataset` + cached-view replay + `student_transforms`: grid sample 2 cm, crop to
--points). Teacher and student weights are random: step time does not depend on their values.
Prints a table and writes JSON (default bench/results/distill_step.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "distill_step.json"
REAL = REPO.parent / "shared" / "data" / "scannet_real"
GRID = 0.02
VARIANTS = ("ce", "cached", "cached_inproc", "online")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--batch", type=int, default=None, help="samples per step (default: 2 on CPU, 8 on CUDA)")
    p.add_argument("--points", type=int, default=None, help="points per sample after grid sampling and crop "
                   "(default: 8000 on CPU, 40000 on CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per variant (default: 3 CPU, 20 CUDA)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    p.add_argument("--student", default="ptv3_half")
    p.add_argument("--teacher", default="ptv3_large")
    p.add_argument("--relation-points", type=int, default=None,
                   help="points per sample of the relation term (default: the recipe's 2048)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--data-root", type=Path, default=None, help="layout dataset (default: the real scans, else synthetic)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def load_sources(root: Path | None, batch: int, points: int, tmp: Path):
    """The first `batch` train scenes (real when available), each cut to ~1.25 x `points` raw
    points around its centre and written as a layout dataset under `tmp`; returns (root, kind)."""
    import numpy as np

    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.data.scannet.layout import write_scene

    ds = get_dataset_spec("scannet")
    kind = "given"
    if root is None:
        if REAL.is_dir():
            root, kind = REAL, "scannet_real"
        else:
            from srkd.data.synthetic.rooms import generate_dataset

            root, kind = tmp / "synthetic", "synthetic"
            generate_dataset(root, scenes=batch + 1, seed=0, val_fraction=0.0,
                             n_points=max(2 * points, 1000))
    source = ScanNetScenes(root, "train", ds)
    if len(source.scene_ids) < batch:
        raise SystemExit(f"{root}/train has {len(source.scene_ids)} scenes, fewer than --batch {batch}")
    out = tmp / "subscenes"
    keep = int(points * 1.25)
    for scene in source.scene_ids[:batch]:
        pc = source.load(scene)
        centre = (pc.coord.min(0) + pc.coord.max(0)) / 2
        order = np.argsort(((pc.coord[:, :2] - centre[:2]) ** 2).sum(1))[:keep]
        idx = np.sort(order)
        color = pc.color[idx]
        write_scene(out, "train", scene, {
            "coord": pc.coord[idx].astype(np.float32),
            "color": np.clip(np.rint(color), 0, 255).astype(np.uint8),
            "normal": pc.normal[idx].astype(np.float32),
            "segment20": pc.segment[idx].astype(np.int64),
        })
    return out, kind


def build_cache(root: Path, cache: Path, teacher, device) -> float:
    """Run the teacher once over every sub-scene (1 canonical view) and write an int8 cache."""
    from srkd.cache import CacheWriter, CodecSpec
    from srkd.cache_teacher.targets import scene_targets
    from srkd.cache_teacher.views import ViewSettings, make_spec
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.models.teacher import TeacherInfo

    ds = get_dataset_spec("scannet")
    info = TeacherInfo(teacher.__class__.__name__, {}, "random-init", int(teacher.feature_dim), "none")
    views = ViewSettings(views=1)
    spec = make_spec(ds, root, "train", info, views, CodecSpec.create("int8"), GRID, False)
    writer = CacheWriter.create(cache, spec)
    source = ScanNetScenes(root, "train", ds)
    start = time.perf_counter()
    for scene in source.scene_ids:
        targets, _ = scene_targets(teacher, source.load(scene), views, GRID, ds.feature_names, device,
                                   color_norm=info.color_norm)
        writer.write_scene(scene, targets)
    return time.perf_counter() - start


def make_dataset(root: Path, reader, points: int, target_source=None):
    """The training data path: cached-view replay + the student chain (+ the targets' gather)."""
    from srkd.data.dataset import SceneDataset
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.data.transforms import student_transforms
    from srkd.distill.targets import CachedViewProvider

    ds = get_dataset_spec("scannet")
    return SceneDataset(ScanNetScenes(root, "train", ds), student_transforms(GRID, points),
                        grid_size=GRID, feature_names=ds.feature_names, seed=0,
                        view_provider=CachedViewProvider(reader), target_source=target_source)


def make_batch(root: Path, reader, points: int, batch: int):
    """The student's batch (host memory) with the teacher targets its samples gathered."""
    from srkd.data.collate import collate
    from srkd.distill.targets import CachedTargets

    dataset = make_dataset(root, reader, points, CachedTargets(reader, "view").sample)
    return collate([dataset[i] for i in range(batch)])


def device_batches(host, device) -> dict:
    """Each variant's batch on `device`. The data-path variant keeps its targets on the host
    (pinned on CUDA), so its step pays their copy as the loop does; the others carry none."""
    from dataclasses import replace

    if device.type == "cuda":
        host = host.pin_memory()
    bare = replace(host, teacher_logits=None, teacher_feature=None).to(device)
    with_targets = replace(bare, teacher_logits=host.teacher_logits, teacher_feature=host.teacher_feature)
    return {name: with_targets if name == "cached" else bare for name in VARIANTS}


class Variant:
    """One training setup: its own student copy, loss, optimizer and targets function."""

    def __init__(self, name, student, loss, targets_fn, device, batch) -> None:
        import torch

        from srkd.distill.config import OptimConfig
        from srkd.distill.loop import build_optimizer

        self.name, self.student, self.loss, self.targets_fn = name, student, loss, targets_fn
        self.device, self.batch = device, batch
        self.opt = build_optimizer([student, loss], OptimConfig())
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.targets: list[float] = []

    def step(self, record: bool) -> None:
        import torch

        batch = self.batch
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.student.train()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            targets = self.targets_fn(batch)
        sync()
        t1 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.student(batch)
            loss, _ = self.loss(out, targets, batch.segment, batch.offset)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        sync()
        t2, c2 = time.perf_counter(), time.process_time()
        if not torch.isfinite(loss):
            raise SystemExit(f"{self.name}: loss is {loss.item()}")
        if record:
            self.wall.append(t2 - t0)
            self.cpu.append(c2 - c0)
            self.targets.append(t1 - t0)

    def summary(self) -> dict:
        return {
            "mean_s": statistics.fmean(self.wall),
            "median_s": statistics.median(self.wall),
            "std_s": statistics.stdev(self.wall) if len(self.wall) > 1 else 0.0,
            "cpu_mean_s": statistics.fmean(self.cpu),
            "targets_mean_s": statistics.fmean(self.targets),
            "wall_s": self.wall,
            "cpu_s": self.cpu,
        }


def time_gather(reader_cold, reader_warm, batch, repeats: int = 10) -> dict:
    """The in-process gather of `batch` alone (cached_inproc's targets_fn), ms."""
    from srkd.distill.targets import CachedTargets

    out = {}
    for name, reader in (("cold", reader_cold), ("warm", reader_warm)):
        fn = CachedTargets(reader, "view")
        fn(batch)  # warm: fills the LRU; cold: page cache
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(batch)
        out[f"gather_{name}_ms"] = (time.perf_counter() - t0) / repeats * 1e3
    return out


def time_dataset_gather(root: Path, reader_cold, reader_warm, points: int, batch: int,
                        repeats: int = 3) -> dict:
    """Per batch, ms: the target source's time while the dataset makes the batch's samples
    (what a DataLoader worker now spends on the gather) and the whole sample making."""
    from srkd.distill.targets import CachedTargets

    out = {}
    for name, reader in (("cold", reader_cold), ("warm", reader_warm)):
        sample, spent = CachedTargets(reader, "view").sample, [0.0]

        def timed(*args, sample=sample, spent=spent):  # the target source, timed
            t0 = time.perf_counter()
            got = sample(*args)
            spent[0] += time.perf_counter() - t0
            return got

        dataset = make_dataset(root, reader, points, timed)
        for round_ in range(repeats + 1):  # round 0 fills the LRU / page cache
            if round_ == 1:
                spent[0], t0 = 0.0, time.perf_counter()
            for i in range(batch):
                dataset[i]
        out[f"dataset_sample_{name}_ms"] = (time.perf_counter() - t0) / repeats * 1e3
        out[f"dataset_gather_{name}_ms"] = spent[0] / repeats * 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from srkd.cache import CacheReader
    from srkd.device import resolve_device
    from srkd.distill.targets import CachedTargets, OnlineTeacher, batch_targets
    from srkd.losses.recipes import recipe
    from srkd.models import count_parameters, create_model

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    batch_n = args.batch or (8 if cuda else 2)
    points = args.points or (40000 if cuda else 8000)
    repeats = args.repeats or (20 if cuda else 3)
    overrides = {} if args.relation_points is None else {"n_relation_points": args.relation_points}
    load_before = os.getloadavg()
    started = time.perf_counter()

    torch.manual_seed(0)
    teacher = create_model(args.teacher, num_classes=20, in_channels=6).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    with tempfile.TemporaryDirectory(prefix="srkd-distill-step-") as tmp_name:
        tmp = Path(tmp_name)
        root, kind = load_sources(args.data_root, batch_n, points, tmp)
        cache_s = build_cache(root, tmp / "cache", teacher, device)
        reader = CacheReader(tmp / "cache", cache_bytes=0)  # LRU off: every gather reads the disk
        host_batch = make_batch(root, reader, points, batch_n)
        batches = device_batches(host_batch, device)
        torch.manual_seed(1)
        student0 = create_model(args.student, num_classes=20, in_channels=6)
        srkd = recipe("srkd", **overrides)
        variants = []
        for name in VARIANTS:
            student = copy.deepcopy(student0).to(device)
            if name == "ce":
                loss, fn = recipe("ce").build(), (lambda b: None)
            else:
                loss = srkd.build(student_dim=student.feature_dim, teacher_dim=teacher.feature_dim)
                fn = {"cached": batch_targets, "cached_inproc": CachedTargets(reader, "view"),
                      "online": OnlineTeacher(teacher, amp=cuda)}[name]
            variants.append(Variant(name, student, loss.to(device), fn, device, batches[name]))
        for v in variants:
            for _ in range(args.warmup):
                v.step(record=False)
        for r in range(repeats):
            for i in range(len(variants)):  # rotate the order so no variant always goes first
                variants[(i + r) % len(variants)].step(record=True)
        batch = batches["ce"]
        gather = time_gather(reader, CacheReader(tmp / "cache"), batch)
        gather.update(time_dataset_gather(root, reader, CacheReader(tmp / "cache"), points, batch_n))
    res = {v.name: v.summary() for v in variants}
    p1 = res["cached"]["mean_s"] / res["ce"]["mean_s"]
    p2 = res["online"]["mean_s"] / res["cached"]["mean_s"]
    report = {
        "benchmark": "distill_step",
        "command": " ".join(["distill_step.py", *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "threads": args.threads, "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "data": kind, "batch": batch_n, "points_per_sample": points,
        "batch_points": len(batch.coord), "repeats": repeats, "warmup": args.warmup,
        "student": args.student, "student_params": count_parameters(student0),
        "teacher": args.teacher, "teacher_params": count_parameters(teacher),
        "n_relation_points": srkd.n_relation_points, "amp": cuda,
        "cache_build_s": cache_s, **gather,
        "results": res,
        "P1_cached_over_ce": p1, "P2_online_over_cached": p2,
        # P2's floor if the online step were the cached step plus the teacher forward alone
        "P2_limit": 1 + res["online"]["targets_mean_s"] / res["cached"]["mean_s"],
        # the targets' time on the training process's critical path: "before" = the gather in the
        # step (cached_inproc), "after" = the host -> device copy only (cached); keys kept as
        # the reported JSON files name them
        "targets_critical_before_ms": res["cached_inproc"]["targets_mean_s"] * 1e3,
        "targets_critical_after_ms": res["cached"]["targets_mean_s"] * 1e3,
        "targets_share_before": res["cached_inproc"]["targets_mean_s"] / res["cached_inproc"]["mean_s"],
        "targets_share_after": res["cached"]["targets_mean_s"] / res["cached"]["mean_s"],
        "target_bytes": int(host_batch.teacher_logits.nbytes + host_batch.teacher_feature.nbytes),
        "P1_cpu": res["cached"]["cpu_mean_s"] / res["ce"]["cpu_mean_s"],
        "P2_cpu": res["online"]["cpu_mean_s"] / res["cached"]["cpu_mean_s"],
        "total_s": time.perf_counter() - started,
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def print_table(rep: dict) -> None:
    print(f"distill step: {rep['device']} ({rep['device_name']}), {rep['threads']} thread(s), "
          f"load {rep['loadavg_before'][0]:.1f} -> {rep['loadavg_after'][0]:.1f}; data {rep['data']}; "
          f"batch {rep['batch']} x <= {rep['points_per_sample']} points = {rep['batch_points']} points; "
          f"student {rep['student']} ({rep['student_params'] / 1e6:.1f}M), teacher {rep['teacher']} "
          f"({rep['teacher_params'] / 1e6:.1f}M); relation points {rep['n_relation_points']}; "
          f"{rep['repeats']} timed steps each")
    print("| variant | step mean (s) | median (s) | std (s) | CPU (s) | targets (s) | vs ce |")
    print("|---|---|---|---|---|---|---|")
    ce = rep["results"]["ce"]["mean_s"]
    for name, r in rep["results"].items():
        print(f"| {name} | {r['mean_s']:.3f} | {r['median_s']:.3f} | {r['std_s']:.3f} | "
              f"{r['cpu_mean_s']:.3f} | {r['targets_mean_s']:.3f} | {r['mean_s'] / ce:.2f}x |")
    print(f"P1 = cached / ce = {rep['P1_cached_over_ce']:.3f} (target <= 1.05; CPU time "
          f"{rep['P1_cpu']:.3f});  P2 = online / cached = {rep['P2_online_over_cached']:.2f} "
          f"(CPU time {rep['P2_cpu']:.2f}; limit 1 + t_teacher / t_step = {rep['P2_limit']:.2f})")
    print(f"targets on the training process's critical path: before (gather in the step, "
          f"cached_inproc) {rep['targets_critical_before_ms']:.2f} ms = "
          f"{rep['targets_share_before'] * 100:.2f}% of its step; after (host -> device copy of "
          f"{rep['target_bytes'] / 2**20:.1f} MiB, cached) {rep['targets_critical_after_ms']:.3f} ms = "
          f"{rep['targets_share_after'] * 100:.4f}% of its step")
    print(f"in-process gather alone: {rep['gather_cold_ms']:.1f} ms from disk, {rep['gather_warm_ms']:.1f} ms "
          f"from the LRU; cache built in {rep['cache_build_s']:.1f} s")
    print(f"gather inside the dataset (DataLoader workers), per batch: {rep['dataset_gather_cold_ms']:.1f} ms "
          f"from disk ({rep['dataset_sample_cold_ms']:.0f} ms to make the samples), "
          f"{rep['dataset_gather_warm_ms']:.1f} ms from the LRU ({rep['dataset_sample_warm_ms']:.0f} ms)")


if __name__ == "__main__":
    raise SystemExit(main())
