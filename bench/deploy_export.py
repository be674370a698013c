"""Can an srkd model leave Python? Try the exporters on `PlainSegmenter` and `srkd export`.

For each model (tiny presets by default, random weights, eval mode) and each method
(torch.jit.script, torch.jit.trace, torch.export.export, torch.onnx.export on the whole
`PlainSegmenter`; then `srkd export` to ONNX and to a torch.export program, whose network takes
host-built index arrays, see srkd/export), this script:
  1. exports `PlainSegmenter(model, grid)` (or the model's checkpoint, for the srkd.* methods)
     with example inputs from scene A (N_A points);
  2. saves the artifact, reloads it in a FRESH Python process that imports only torch (and
     onnxruntime for ONNX; a second try also imports srkd.models, which registers spconv; the
     srkd.* methods import srkd.runtime, numpy only, to build the index arrays), and runs it on
     scene B, a scene of a different size (N_B points);
  3. compares the reloaded logits with the eager model's on B: "works" means max |diff| < 1e-4.
It prints a table and writes JSON (--out). The outcome of each attempt is recorded as found: the
exception type and the first line of its message when a step fails.

    PYTHONPATH=. python bench/deploy_export.py --out bench/reported/deploy_export.json
(ONNX runs need onnxruntime and, for dynamo=True, onnxscript; neither is a dependency of srkd.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

METHODS = ("jit.script", "jit.trace", "export.export", "onnx.export", "onnx.dynamo", "srkd.onnx", "srkd.pt2")
TOLERANCE = 1e-4
_in_process: dict = {}  # method -> the exported object, when the exporter returned one
GRID = 0.05


def _scene(n: int, seed: int) -> dict[str, np.ndarray]:
    """A random room-sized cloud: coord float32 (n, 3) in a 3 x 2 x 1.5 m box, feat float32 (n, 6)."""
    rng = np.random.default_rng(seed)
    coord = rng.uniform([0, 0, 0], [3.0, 2.0, 1.5], size=(n, 3)).astype(np.float32)
    feat = rng.uniform(-1, 1, size=(n, 6)).astype(np.float32)
    return {"coord": coord, "feat": feat, "offset": np.array([n], np.int64)}


def _first_line(exc: BaseException) -> str:
    """The exception type, its message's first line and, when longer, its last line."""
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = text[0][:300] if text else ""
    if len(text) > 1:
        msg += f" ... {text[-1].strip()[:300]}"
    return f"{type(exc).__name__}: {msg}"


def _where(exc: BaseException) -> str:
    """The innermost traceback frame in srkd or spconv code: 'file:line in function'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/srkd/" in f.filename or "/spconv/" in f.filename]  # fmt: skip
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.split('site-packages/')[-1].split('/predict/')[-1]}:{f.lineno} in {f.name}"


def _export_srkd(method: str, seg, path: Path) -> None:
    """`srkd export` of the segmenter's model (saved as a checkpoint first) into folder `path`."""
    from srkd.data.scannet import get_dataset_spec
    from srkd.export.export import export_checkpoint
    from srkd.models import save_checkpoint

    ckpt = path.with_suffix(".ckpt.pt")
    save_checkpoint(ckpt, seg.model, class_names=get_dataset_spec("scannet").class_names,
                    feature_names=("color", "normal"), color_norm="pointcept", train_params={"grid_size": GRID})  # fmt: skip
    export_checkpoint(ckpt, path, fmt=method.split(".")[1])


def _run_srkd(method: str, folder: str, data) -> np.ndarray:
    """Reload an `srkd export` folder with torch (pt2) or onnxruntime (onnx) and srkd.runtime."""
    if method == "srkd.onnx":
        from srkd.runtime import load_student

        return load_student(folder).logits(data["coord"], data["feat"], data["offset"])
    import torch

    from srkd.runtime.indices import build_indices
    from srkd.runtime.spec import read_spec

    spec = read_spec(folder)
    idx = build_indices(spec.plan, data["coord"], data["offset"], spec.grid_size)
    args = [torch.from_numpy(data["feat"])] + [torch.from_numpy(idx[n]) for n in list(spec.inputs)[1:]]
    with torch.no_grad():
        return torch.export.load(str(Path(folder) / spec.network)).module()(*args).numpy()


def _export(method: str, seg, example: tuple, path: Path) -> None:
    import torch

    if method.startswith("srkd."):
        _export_srkd(method, seg, path)
    elif method == "jit.script":
        torch.jit.save(torch.jit.script(seg), str(path))
    elif method == "jit.trace":
        traced = torch.jit.trace(seg, example, check_trace=False)
        _in_process["jit.trace"] = traced  # kept to run before saving (saving may fail)
        torch.jit.save(traced, str(path))
    elif method == "export.export":
        n = torch.export.Dim("n", min=2)
        ep = torch.export.export(seg, example, dynamic_shapes=({0: n}, {0: n}, None))
        torch.export.save(ep, str(path))
    elif method == "onnx.export":
        torch.onnx.export(seg, example, str(path), input_names=["coord", "feat", "offset"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"coord": {0: "n"}, "feat": {0: "n"}, "logits": {0: "n"}})  # fmt: skip
    elif method == "onnx.dynamo":
        n = torch.export.Dim("n", min=2)
        torch.onnx.export(seg, example, str(path), input_names=["coord", "feat", "offset"],
                          output_names=["logits"], dynamo=True,
                          dynamic_shapes=({0: n}, {0: n}, None))  # fmt: skip
    else:
        raise ValueError(method)


def _reload_and_run(method: str, artifact: str, scene: str, out: str, with_srkd: bool) -> None:
    """The fresh process: load the artifact, run it on the scene's arrays, save the logits."""
    if with_srkd:
        import srkd.models  # noqa: F401  (registers spconv and the srkd model classes)
    data = np.load(scene)
    if method.startswith("srkd."):
        np.save(out, _run_srkd(method, artifact, data))
        if "spconv" in sys.modules:
            raise RuntimeError("the srkd.* reload imported spconv")
        return
    import torch

    args = [torch.from_numpy(data[k]) for k in ("coord", "feat", "offset")]
    if method in ("jit.script", "jit.trace"):
        logits = torch.jit.load(artifact)(*args)
    elif method == "export.export":
        logits = torch.export.load(artifact).module()(*args)
    else:  # onnx.export, onnx.dynamo
        import onnxruntime

        sess = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
        feeds = {i.name: data[i.name] for i in sess.get_inputs()}
        logits = torch.from_numpy(sess.run(None, feeds)[0])
    np.save(out, logits.detach().numpy() if hasattr(logits, "detach") else np.asarray(logits))


def _fresh_run(method: str, artifact: Path, scene: Path, want: np.ndarray, with_srkd: bool) -> dict:
    out = artifact.with_suffix(".logits.npy")
    cmd = [sys.executable, __file__, "--reload", method, str(artifact), str(scene), str(out)]
    if with_srkd:
        cmd.append("--with-srkd")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"ok": False, "error": lines[-1][:300] if lines else f"exit {proc.returncode}"}
    got = np.load(out)
    if got.shape != want.shape:
        return {"ok": False, "error": f"logits shape {got.shape}, eager {want.shape}"}
    diff = float(np.abs(got - want).max())
    return {"ok": diff < TOLERANCE, "max_abs_diff": diff}


def _run_here(module, scene: dict, want: np.ndarray) -> dict:
    import torch

    try:
        with torch.no_grad():
            got = module(*(torch.from_numpy(scene[k]) for k in ("coord", "feat", "offset"))).numpy()
    except Exception as exc:  # noqa: BLE001  (whatever the exported module raises is the finding)
        return {"ok": False, "error": _first_line(exc)}
    if got.shape != want.shape:
        return {"ok": False, "error": f"logits shape {got.shape}, eager {want.shape}"}
    diff = float(np.abs(got - want).max())
    return {"ok": diff < TOLERANCE, "max_abs_diff": diff}


def try_model(name: str, work: Path, n_a: int, n_b: int) -> list[dict]:
    """Every exporter on preset `name`; one result dict per method."""
    import torch

    from srkd.models import create_model
    from srkd.models.deploy import PlainSegmenter

    torch.manual_seed(0)
    seg = PlainSegmenter(create_model(name, num_classes=20, in_channels=6), GRID, check=False).eval()
    scene_a, scene_b = _scene(n_a, 1), _scene(n_b, 2)
    np.savez(work / "scene_b.npz", **scene_b)
    example = tuple(torch.from_numpy(scene_a[k]) for k in ("coord", "feat", "offset"))
    with torch.no_grad():
        want_b = seg(*(torch.from_numpy(scene_b[k]) for k in ("coord", "feat", "offset"))).numpy()
    rows = []
    for method in METHODS:
        row: dict = {"model": name, "method": method, "n_export": n_a, "n_check": n_b}
        suffix = "dir" if method.startswith("srkd.") else "onnx" if method.startswith("onnx") else (
            "pt2" if method == "export.export" else "pt")
        artifact = work / f"{name}.{method}.{suffix}"
        began = time.perf_counter()
        try:
            with torch.no_grad():
                _export(method, seg, example, artifact)
            row["export"] = "ok"
        except Exception as exc:  # noqa: BLE001  (recording whatever each exporter raises is the point)
            row["export"] = _first_line(exc)
            row["where"] = _where(exc)
        row["export_s"] = round(time.perf_counter() - began, 2)
        if method in _in_process:  # the traced module in this process, on the other scene
            row["in_process_other_scene"] = _run_here(_in_process.pop(method), scene_b, want_b)
        if row["export"] == "ok":
            row["reload_torch_only"] = _fresh_run(method, artifact, work / "scene_b.npz", want_b, False)
            if not row["reload_torch_only"]["ok"]:
                row["reload_with_srkd"] = _fresh_run(method, artifact, work / "scene_b.npz", want_b, True)
        rows.append(row)
    return rows


def _verdict(row: dict) -> str:
    if row["export"] != "ok":
        return "export fails"
    for key in ("reload_torch_only", "reload_with_srkd"):
        r = row.get(key)
        if r and r["ok"]:
            return f"works ({key}, max diff {r['max_abs_diff']:.1e})"
    last = row.get("reload_with_srkd") or row["reload_torch_only"]
    if "max_abs_diff" in last:
        return f"runs, WRONG logits (max diff {last['max_abs_diff']:.3g})"
    return "reload/run fails"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="test_spunet,test_ptv3")
    ap.add_argument("--n-export", type=int, default=3000)
    ap.add_argument("--n-check", type=int, default=4500)
    ap.add_argument("--out", type=Path, default=Path("bench/reported/deploy_export.json"))
    ap.add_argument("--reload", nargs=4, metavar=("METHOD", "ARTIFACT", "SCENE", "OUT"))
    ap.add_argument("--with-srkd", action="store_true")
    a = ap.parse_args()
    if a.reload:
        _reload_and_run(*a.reload, with_srkd=a.with_srkd)
        return
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            rows += try_model(name, Path(tmp), a.n_export, a.n_check)
    print(f"{'model':<12} {'method':<14} {'export_s':>8}  outcome")
    for r in rows:
        print(f"{r['model']:<12} {r['method']:<14} {r['export_s']:>8}  {_verdict(r)}")
        if r["export"] != "ok":
            print(f"{'':<36}{r['export'][:400]}")
            print(f"{'':<36}at {r.get('where') or '(torch internals)'}")
        for key in ("in_process_other_scene", "reload_torch_only", "reload_with_srkd"):
            if key in r and "error" in r[key]:
                print(f"{'':<36}{key}: {r[key]['error']}")
            elif key in r:
                print(f"{'':<36}{key}: max |diff| {r[key]['max_abs_diff']:.3g}")
    meta = {"torch": torch.__version__, "tolerance": TOLERANCE, "grid_size": GRID}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
