"""GPU run-book check: the CUDA paths srkd relies on, and the throughput and overhead numbers,
in one script (about 8 minutes on one H200; `--smoke` runs the same code on CPU in < 2 minutes).

    python bench/gpu_check.py                      # CUDA: full check on ../shared/data/scannet_real
    python bench/gpu_check.py --smoke              # CPU: tiny models, a few thousand points

Checks (each a row: ok / FAIL / skipped, with its numbers):
- sparse:    a SubMConv3d + SparseConv3d + SparseInverseConv3d stack on a real scene: on CUDA every
             conv must run spconv's own algorithm (implicit GEMM, not Native; see
             srkd/models/sparse.py), and its output and input gradient must match the CPU Native
             path (relative error < 5e-3 in fp32; torch's TF32 off).
- attention: SerializedAttention on the device (flash-attn when importable on CUDA, else SDPA)
             against the CPU path (SDPA), output and gradients.
- amp:       ptv3_half forward + backward under bf16 autocast: finite, logits within 5% of fp32.
- models:    ptv3_large, ptv3_half (smoke: test_ptv3) points/s, forward (eval, no grad) and
             forward+backward (train), fp32 and bf16 AMP, on a batch of real scenes.
- p1p2:      bench/distill_step.py in a subprocess: P1 = cached SRKD step / CE step, P2 = online /
             cached next to its limit 1 + t_teacher / t_step.
- p3:        cache-teacher overhead: build_cache (teacher + encoding + Zarr writes) over the same
             scenes as the bare teacher forwards, P3 = cache / bare.
Prints a table, writes JSON (default bench/results/gpu_check.json); exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
RESULTS = HERE.parent / "results" / "gpu_check.json"
DATA_CANDIDATES = (REPO.parent / "shared" / "data" / "scannet_real", REPO / "shared" / "data" / "scannet_real")
GRID = 0.02
CHECKS = ("sparse", "attention", "amp", "models", "p1p2", "p3")
SPARSE_TOL = 5e-3  # CUDA vs CPU sparse conv, relative to the largest value (TF32 off for torch)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny models and scenes (< 2 min)")
    p.add_argument("--data-root", type=Path, default=None, help="layout dataset (default: scannet_real)")
    p.add_argument("--scenes", type=int, default=None, help="scenes per batch (default 4; smoke 1)")
    p.add_argument("--points", type=int, default=None, help="points per scene (default all; smoke 2000)")
    p.add_argument("--repeats", type=int, default=None, help="timed passes (default 10; smoke 1)")
    p.add_argument("--skip", nargs="*", default=[], choices=CHECKS, help="checks to leave out")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.scenes = args.scenes or (1 if args.smoke else 4)
    args.points = args.points or (2000 if args.smoke else None)
    args.repeats = args.repeats or (1 if args.smoke else 10)
    return args


def load_batch(root: Path | None, scenes: int, points: int | None, device):
    """PointBatch of `scenes` train scans: 2 cm grid (first point per voxel), first `points` voxels,
    feat = colour / 127.5 - 1 and normals. Synthetic rooms (bench/models.py) without a data root."""
    import numpy as np

    from srkd.data.collate import VoxelSample, collate

    if root is None:
        from models import synthetic_sample  # bench/models.py

        samples = [synthetic_sample(points or 50_000, seed=i) for i in range(scenes)]
        return collate(samples).to(device), "synthetic rooms"
    samples = []
    for scene in sorted(p.name for p in (root / "train").iterdir())[:scenes]:
        d = root / "train" / scene
        coord = np.load(d / "coord.npy").astype(np.float32)
        grid = np.floor((coord - coord.min(0)) / GRID).astype(np.int64)
        _, first = np.unique(grid, axis=0, return_index=True)
        keep = np.sort(first)[:points] if points else np.sort(first)
        feat = np.concatenate([np.load(d / "color.npy")[keep] / 127.5 - 1, np.load(d / "normal.npy")[keep]], 1)
        samples.append(VoxelSample(
            coord=coord[keep], grid_coord=grid[keep].astype(np.int32), feat=feat.astype(np.float32),
            origin_index=keep.astype(np.int64), segment=np.load(d / "segment20.npy")[keep], scene_id=scene,
        ))  # fmt: skip
    return collate(samples).to(device), f"{root} ({len(samples)} train scans)"


def _rel(a, b) -> float:  # max |a - b| / max |b|
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def _row(check: str, ok: bool | None, summary: str, **numbers) -> dict:
    return {"check": check, "status": "skipped" if ok is None else ("ok" if ok else "FAIL"), "summary": summary, **numbers}


def check_sparse(device, batch) -> dict:
    """Sparse conv stack on `device` against the CPU Native path, output and input gradient."""
    import torch

    from srkd.models import sparse

    torch.manual_seed(0)
    net = sparse.SparseSequential(
        sparse.SubMConv3d(6, 32, 3, indice_key="s0", bias=True),
        sparse.SparseConv3d(32, 64, 2, stride=2, indice_key="d1"),
        sparse.SubMConv3d(64, 64, 3, indice_key="s1", bias=True),
        sparse.SparseInverseConv3d(64, 32, 2, indice_key="d1"),
    )  # fmt: skip
    cpu = batch.to("cpu")

    def run(dev):
        model = net.to(dev)
        feat = cpu.feat.to(dev).requires_grad_()
        out = model(sparse.batch_to_sparse(cpu.to(dev), feat=feat, pad_to=16)[0]).features
        out.square().mean().backward()
        algos = {type(m).__name__ + f"[{i}]": str(m.algo) for i, m in enumerate(model) if sparse.is_sparse_conv(m)}
        return out.detach().cpu(), feat.grad.cpu(), algos

    ref_out, ref_grad, _ = run("cpu")
    if device.type != "cuda":
        return _row("sparse", None, "no CUDA: CPU Native path only (ran forward + backward)")
    out, grad, algos = run(device)
    native = [k for k, v in algos.items() if v == str(sparse.ConvAlgo.Native)]
    err_out, err_grad = _rel(out, ref_out), _rel(grad, ref_grad)
    ok = not native and err_out < SPARSE_TOL and err_grad < SPARSE_TOL
    return _row("sparse", ok, f"CUDA algos {sorted(set(algos.values()))}; rel. error vs CPU: out "
                f"{err_out:.1e}, grad {err_grad:.1e}", algos=algos, rel_err_out=err_out,
                rel_err_grad=err_grad)  # fmt: skip


def check_attention(device) -> dict:
    """SerializedAttention on `device` (flash-attn / SDPA) against the CPU path."""
    import torch

    from srkd.models.attention import SerializedAttention, flash_available, patch_layout

    torch.manual_seed(0)
    counts = torch.tensor([3000, 1700])  # a partial last patch and a sample shorter than K
    order = torch.cat([torch.randperm(3000), 3000 + torch.randperm(1700)])
    attn, feat = SerializedAttention(64, 4, 1024).eval(), torch.randn(4700, 64)

    def run(dev):
        f = feat.to(dev).requires_grad_()
        o = order.to(dev)
        out = attn.to(dev)(f, o, torch.argsort(o), patch_layout(torch.cumsum(counts, 0).to(dev), 1024))
        out.square().mean().backward()
        return out.detach().float().cpu(), f.grad.float().cpu()

    ref_out, ref_grad = run("cpu")
    if device.type != "cuda":
        return _row("attention", None, "no CUDA: CPU SDPA path only")
    out, grad = run(device)
    path, tol = ("flash-attn (bf16)", 2e-2) if flash_available() else ("SDPA fp32", 1e-3)
    e_out, e_grad = _rel(out, ref_out), _rel(grad, ref_grad)
    return _row("attention", e_out < tol and e_grad < tol, f"{path}; rel. error vs CPU: out "
                f"{e_out:.1e}, grad {e_grad:.1e} (tolerance {tol})", path=path, rel_err_out=e_out,
                rel_err_grad=e_grad)  # fmt: skip


def check_amp(device, batch, preset: str) -> dict:
    """bf16 autocast forward + backward of `preset`: finite, logits near fp32."""
    import torch

    from srkd.models import create_model

    if device.type != "cuda":
        return _row("amp", None, "no CUDA: bf16 autocast not checked")
    torch.manual_seed(0)
    model = create_model(preset).to(device).eval()
    with torch.no_grad():
        ref = model(batch).logits
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(batch)
        loss = out.logits.float().square().mean()
    loss.backward()
    finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        err = _rel(model(batch).logits, ref)
    return _row("amp", bool(finite) and err < 0.05, f"{preset} bf16: grads finite {bool(finite)}, "
                f"eval logits rel. error vs fp32 {err:.1e}", rel_err=err)  # fmt: skip


def _time(fn, repeats: int, device) -> float:
    """Median wall seconds of `repeats` calls after a warm-up (bench/models.py's timer)."""
    import statistics

    from models import _timed

    return statistics.median(_timed(fn, repeats, device.type)[0])


def _throughput(model, batch, amp: bool, repeats: int, device) -> dict:
    """Forward (eval, no grad) and forward+backward (train) points/s of `model` on `batch`."""
    import torch

    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else torch.enable_grad

    def fwd() -> None:
        with torch.no_grad(), ctx():
            model.eval()(batch)

    def train() -> None:
        model.train().zero_grad(set_to_none=True)
        with ctx():
            loss = model(batch).logits.float().square().mean()
        loss.backward()

    n = int(batch.feat.shape[0])
    return {"forward_points_per_s": n / _time(fwd, repeats, device), "train_points_per_s": n / _time(train, repeats, device)}


def check_models(device, batch, presets: list[str], repeats: int) -> dict:
    """Forward and forward+backward points/s of each preset, fp32 and (CUDA) bf16 autocast."""
    import torch

    from srkd.models import create_model

    numbers, parts = {}, []
    for preset in presets:
        torch.manual_seed(0)
        model = create_model(preset).to(device)
        for amp in [False, True] if device.type == "cuda" else [False]:
            tag = f"{preset}{' bf16' if amp else ''}"
            try:
                numbers[tag] = _throughput(model, batch, amp, repeats, device)
            except Exception as e:  # noqa: BLE001 - keep the other rows (e.g. a kernel without bf16)
                numbers[tag] = {"error": f"{type(e).__name__}: {e}"}
                parts.append(f"{tag}: FAILED {numbers[tag]['error'][:200]}")
                continue
            parts.append(f"{tag}: fwd {numbers[tag]['forward_points_per_s'] / 1e3:.1f}k, "
                         f"train {numbers[tag]['train_points_per_s'] / 1e3:.1f}k pts/s")
    return _row("models", all("error" not in v for v in numbers.values()), "; ".join(parts),
                points=int(batch.feat.shape[0]), results=numbers)


def check_p1p2(device, smoke: bool, tmp: Path) -> dict:
    """bench/distill_step.py in a subprocess (its defaults on CUDA; tiny models in smoke)."""
    out = tmp / "distill_step.json"
    cmd = [sys.executable, str(HERE.parent / "distill_step.py"), "--device", device.type, "--out", str(out)]
    if smoke:
        cmd += ["--student", "test_ptv3", "--teacher", "test_spunet", "--points", "1000",
                "--repeats", "1", "--relation-points", "256"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:  # this repository first on the path, as for this script
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240 if smoke else 300, check=False,
                              env=env, cwd=REPO)  # fmt: skip
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        code, tail = 124, "timeout"
    if code != 0 or not out.is_file():
        return _row("p1p2", False, f"distill_step.py exit {code}: {tail.strip().splitlines()[-1:]}")
    rep = json.loads(out.read_text())
    p1, p2, limit = rep["P1_cached_over_ce"], rep["P2_online_over_cached"], rep["P2_limit"]
    return _row("p1p2", True, f"P1 {p1:.3f} (target <= 1.05), P2 {p2:.2f} (limit 1 + t_teacher / "
                f"t_step = {limit:.2f}); {rep['student']} <- {rep['teacher']}, {rep['batch']} x "
                f"{rep['points_per_sample']} points", P1=p1, P2=p2, P2_limit=limit,
                report=rep)  # fmt: skip


def check_p3(device, root: Path | None, scenes: int, tmp: Path, preset: str,
             smoke_points: int | None = None) -> dict:
    """cache-teacher overhead: build_cache over `scenes` scans / the bare teacher forwards
    (synthetic rooms of `smoke_points` points when given or when no scans are found)."""
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

    if root is None or smoke_points:  # small synthetic rooms (bench/cache_teacher.py)
        from cache_teacher import synthetic_dataset

        root = synthetic_dataset(tmp / "p3_data", scenes, smoke_points or 50_000)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / f"{preset}.pt", create_model(preset), class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="pointcept")  # fmt: skip
    ds = get_dataset_spec("scannet")
    ids = list_scenes(root, "train")[:scenes]
    views = ViewSettings(views=1, seed=0)
    model, info = load_teacher(TeacherRef(ckpt), ds)
    model.to(device)
    job = CacheJob("scannet", root, "train", TeacherRef(ckpt), tmp / "p3_cache", views,
                   CodecSpec.create("int8"), GRID, False, device.type)  # fmt: skip

    def bare() -> None:
        for scene in ids:
            scene_targets(model, load_scene(root, "train", scene, ds), views, GRID, ds.feature_names,
                          device, False, color_norm=info.color_norm)  # fmt: skip

    def cached() -> float:
        shutil.rmtree(job.out, ignore_errors=True)
        marks: dict[str, float] = {}
        build_cache(job, workers=0, max_scenes=len(ids),
                    on_start=lambda *_: marks.setdefault("start", time.perf_counter()))
        return time.perf_counter() - marks["start"]

    t_bare = min(_time(bare, 1, device) for _ in range(2))
    t_cache = min(cached() for _ in range(2))
    p3 = t_cache / t_bare
    return _row("p3", True, f"P3 = cache / bare = {p3:.3f} ({preset}, {len(ids)} scans: bare "
                f"{t_bare:.2f} s, cache {t_cache:.2f} s)", P3=p3, bare_s=t_bare, cache_s=t_cache)


def run_checks(args: argparse.Namespace, device, batch, root: Path | None) -> list[dict]:
    """Every check not in --skip, in order; an exception becomes that check's FAIL row."""
    presets = ["test_ptv3"] if args.smoke else ["ptv3_large", "ptv3_half"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="srkd-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        todo = {
            "sparse": lambda: check_sparse(device, batch),
            "attention": lambda: check_attention(device),
            "amp": lambda: check_amp(device, batch, "demo_student" if args.smoke else "ptv3_half"),
            "models": lambda: check_models(device, batch, presets, args.repeats),
            "p1p2": lambda: check_p1p2(device, args.smoke, tmp),
            "p3": lambda: check_p3(device, root, args.scenes, tmp, "test_ptv3" if args.smoke else "ptv3_large",
                                   args.points if args.smoke else None),
        }
        for name, fn in todo.items():
            if name in args.skip:
                continue
            start = time.perf_counter()
            try:
                row = fn()
            except Exception as e:  # noqa: BLE001 - a failed check is a result, not the end of the run
                row = _row(name, False, f"{type(e).__name__}: {e}")
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print(f"[{row['seconds']:6.1f} s] {name}: {row['status']} {row['summary']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    root = args.data_root or next((c for c in DATA_CANDIDATES if (c / "train").is_dir()), None)
    batch, source = load_batch(root, args.scenes, args.points, device)
    env = environment(device)
    rows = run_checks(args, device, batch, root)
    report = {
        "benchmark": "gpu_check", "command": " ".join(["gpu_check.py", *(argv or sys.argv[1:])]),
        "smoke": args.smoke, "data": source, "batch_points": int(batch.feat.shape[0]),
        "environment": env, "checks": rows, "total_s": time.perf_counter() - started,
    }  # fmt: skip
    print(f"gpu_check: {env['device']} {env.get('device_name', '')}; torch {env['torch']} (CUDA "
          f"{env['cuda']}), {env['spconv']}, flash-attn {env['flash_attn']}; data {source}, "
          f"{report['batch_points']} points per batch; {report['total_s']:.0f} s")
    print("| check | status | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r['check']} | {r['status']} | {r['summary']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json.tmp").write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.out.with_suffix(".json.tmp").replace(args.out)
    print(f"wrote {args.out}")
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


def environment(device) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from srkd.models.attention import flash_available

    def installed(*names: str) -> str | None:
        for name in names:
            try:
                return f"{name} {version(name)}"
            except PackageNotFoundError:
                pass
        return None

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": str(device), "cpu_count": os.cpu_count(), "flash_attn": flash_available(),
        "spconv": installed("spconv-cu126", "spconv-cu120", "spconv"),
        "cumm": installed("cumm-cu126", "cumm-cu120", "cumm"),
    }  # fmt: skip
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


if __name__ == "__main__":
    sys.path[:0] = [str(HERE.parent), str(REPO)]  # bench helpers; this tree's srkd, not installed
    sys.exit(main())
