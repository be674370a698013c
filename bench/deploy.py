"""Deployment latency and memory: srkd eager (spconv) vs the pure-torch path vs ONNX Runtime.

For each student (random weights with random BatchNorm statistics: latency does not depend on
the values) the script exports the network to ONNX (`srkd.export.export_checkpoint`), then, per
path and thread count, starts a FRESH process that labels one synthetic room of --points points
(all points fed, duplicate voxels averaged, as `PlainSegmenter` does):
    eager  PlainSegmenter(model): srkd's own inference (spconv, fused CPU attention)
    torch  TensorNetwork(model) on host-built indices (srkd.export), torch ops only
    onnx   srkd.runtime: the exported network in ONNX Runtime (this process never imports torch)
Index building (numpy, srkd.runtime.indices) is timed on its own and not included in the torch /
onnx latencies. Latency = median of --runs runs after one warm-up; peak memory = the process's
peak RSS (VmHWM, everything it loaded included) and its RSS growth during the warm-up run
(sampled every 2 ms). The logits of each path are compared with eager's on the same room (max |diff|
relative to the largest logit, argmax agreement). With --profile, ONNX Runtime's profiler sums
the time per operator type of one 2-thread run of each student.

    PYTHONPATH=. python bench/deploy.py --out bench/reported/deploy.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("ptv3_half", "demo_student", "spunet_small")
PATHS = ("eager", "torch", "onnx")
GRID = 0.02


def _scene(points: int) -> tuple[np.ndarray, np.ndarray]:
    from srkd.data.synthetic.rooms import generate_scene

    sc = generate_scene(0, 0, points)
    feat = np.concatenate([sc["color"] / 255.0, sc["normal"]], axis=1).astype(np.float32)
    return sc["coord"].astype(np.float32), feat


def _peak_mb() -> float:
    """The process's peak RSS (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed(fn, runs: int) -> tuple[list[float], float, object]:
    """(run seconds, peak RSS during the warm-up run minus the RSS before it in MB (sampled every
    2 ms), last result)."""
    import threading

    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = fn()
    done.set()
    sampler.join()
    grown = max(peak[0], _rss_mb()) - before
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return times, grown, out


def _load_scene(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(folder.parent / "scene.npz")
    return data["coord"], data["feat"]


def worker(model: str, path: str, threads: int, folder: Path, points: int, runs: int, logits_out: str) -> dict:
    """One (model, path, threads) measurement in this process (the scene was written by main)."""
    coord, feat = _load_scene(folder)
    offset = np.array([len(coord)])
    row: dict = {"model": model, "path": path, "threads": threads, "points": points}
    if path == "onnx":
        from srkd.runtime import load_student

        student = load_student(folder / "onnx", threads=threads)
        began = time.perf_counter()
        idx = student.indices(coord, offset)
        row["index_s"] = time.perf_counter() - began
        row["voxels"] = int(idx["voxel_count"].shape[0])
        times, grown, logits = _timed(lambda: student.logits(coord, feat, offset, indices=idx), runs)
        row["torch_imported"] = "torch" in sys.modules
    else:
        import torch

        torch.set_num_threads(threads)
        from srkd.models.deploy import load_plain_segmenter

        seg, _ = load_plain_segmenter(folder / "model.pt")
        if path == "eager":
            args = [torch.from_numpy(a) for a in (coord, feat, offset)]
            fn = lambda: seg(*args)  # noqa: E731
        else:
            from srkd.export.network import TensorNetwork, network_inputs

            net = TensorNetwork(seg.model, masks=False).eval()  # one sample, as exported
            began = time.perf_counter()
            args = network_inputs(net.plan, coord, feat, offset, GRID)
            row["index_s"] = time.perf_counter() - began
            fn = lambda: net(*args)  # noqa: E731
        with torch.no_grad():
            times, grown, logits = _timed(fn, runs)
        logits = logits.numpy()
    row.update(latency_s=statistics.median(times), runs_s=times, peak_rss_mb=_peak_mb(), run_peak_growth_mb=grown)
    if logits_out:
        np.save(logits_out, logits)
    return row


def profile_onnx(folder: Path, points: int, threads: int = 2) -> dict:
    """Seconds per ONNX operator type in one run (ONNX Runtime's profiler), largest first."""
    import onnxruntime as ort

    from srkd.runtime import load_student

    student = load_student(folder / "onnx", threads=threads)
    coord, feat = _load_scene(folder)
    feeds = student.indices(coord)
    feeds["feat"] = feat
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = threads, True
    options.profile_file_prefix = str(folder / "ort_profile")
    sess = ort.InferenceSession(str(folder / "onnx" / "network.onnx"), options, providers=["CPUExecutionProvider"])
    sess.run(None, {n: feeds[n] for n in student.input_names})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    nodes = []
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1e6
            nodes.append((e["dur"] / 1e6, f"{op} {e['name'].removesuffix('_kernel_time')}"))
    top = [f"{name}: {sec:.3f} s" for sec, name in sorted(nodes, reverse=True)[:12]]
    return {"per_op_s": dict(sorted(per_op.items(), key=lambda kv: -kv[1])), "slowest_nodes": top}


def _prepare(model: str, folder: Path) -> float:
    """Save a random-weight checkpoint of `model` into folder/model.pt and export it to
    folder/onnx; returns the export seconds."""
    from srkd.export.export import export_checkpoint

    save_random_checkpoint(model, folder / "model.pt")
    began = time.perf_counter()
    export_checkpoint(folder / "model.pt", folder / "onnx")
    return time.perf_counter() - began


def save_random_checkpoint(model: str, path: Path) -> Path:
    """A checkpoint of preset `model` (20 ScanNet classes, colour + normal input, grid GRID) with
    random weights (seed 0) and BatchNorm statistics drawn away from identity (mean N(0, 0.2),
    variance U(0.5, 2)), so that every layer changes its input."""
    import torch

    from srkd.data.scannet import get_dataset_spec
    from srkd.models import create_model, save_checkpoint

    torch.manual_seed(0)
    net = create_model(model, num_classes=20, in_channels=6).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(path, net, class_names=get_dataset_spec("scannet").class_names,
                           feature_names=("color", "normal"), color_norm="pointcept",
                           train_params={"grid_size": GRID})  # fmt: skip


def _spawn(model: str, path: str, threads: int, folder: Path, a: argparse.Namespace) -> dict:
    logits = str(folder / f"{path}-{threads}.npy")
    cmd = [sys.executable, __file__, "--worker", model, path, str(threads), str(folder),
           "--points", str(a.points), "--runs", str(a.runs), "--logits", logits]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
    if done.returncode != 0:
        return {"model": model, "path": path, "threads": threads, "error": done.stderr.strip()[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare(rows: list[dict], folder: Path) -> None:
    for r in rows:
        want, got = folder / f"eager-{r['threads']}.npy", folder / f"{r['path']}-{r['threads']}.npy"
        if r["path"] == "eager" or "error" in r or not want.exists():
            continue
        a, b = np.load(want), np.load(got)
        r["max_rel_diff_vs_eager"] = float(np.abs(a - b).max() / np.abs(a).max())
        r["argmax_agreement_vs_eager"] = float((a.argmax(1) == b.argmax(1)).mean())


def _table(rows: list[dict]) -> None:
    eager = {(r["model"], r["threads"]): r.get("latency_s") for r in rows if r["path"] == "eager"}
    print(f"{'model':<14}{'path':<7}{'thr':>4}{'latency s':>11}{'x eager':>9}{'index s':>9}"
          f"{'peak MB':>9}{'+run MB':>9}{'agree':>9}")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<14}{r['path']:<7}{r['threads']:>4}  error: {r['error'][-200:]}")
            continue
        base = eager.get((r["model"], r["threads"]))
        ratio = f"{base / r['latency_s']:.2f}" if base else "-"
        agree = r.get("argmax_agreement_vs_eager")
        print(f"{r['model']:<14}{r['path']:<7}{r['threads']:>4}{r['latency_s']:>11.2f}{ratio:>9}"
              f"{r.get('index_s', float('nan')):>9.2f}{r['peak_rss_mb']:>9.0f}{r['run_peak_growth_mb']:>9.0f}"
              f"{'' if agree is None else f'{100 * agree:.2f}%':>9}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="ONNX Runtime's time per operator type (2 threads)")
    ap.add_argument("--out", type=Path, default=Path("bench/reported/deploy.json"))
    ap.add_argument("--worker", nargs=4, metavar=("MODEL", "PATH", "THREADS", "FOLDER"))
    ap.add_argument("--logits", default="")
    a = ap.parse_args()
    if a.worker:
        model, path, threads, folder = a.worker
        print(json.dumps(worker(model, path, int(threads), Path(folder), a.points, a.runs, a.logits)))
        return
    rows, exports, profiles = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        coord, feat = _scene(a.points)
        np.savez(Path(tmp) / "scene.npz", coord=coord, feat=feat)
        for model in a.models.split(","):
            folder = Path(tmp) / model
            folder.mkdir()
            exports[model] = _prepare(model, folder)
            model_rows = [_spawn(model, p, int(t), folder, a) for t in a.threads.split(",") for p in a.paths.split(",")]
            _compare(model_rows, folder)
            rows += model_rows
            if a.profile:
                profiles[model] = profile_onnx(folder, a.points)
            _table(rows)
    _table(rows)
    import onnxruntime
    import torch

    meta = {"points": a.points, "runs": a.runs, "grid_size": GRID, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "export_s": exports, "command": " ".join(sys.argv)}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "rows": rows, "onnx_profile_s": profiles}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
