"""bf16 against fp32 inference: argmax agreement, probability difference and seconds per scene.

For each model and scene, `srkd.inference.infer_scene` (the path of `srkd evaluate` and
`srkd predict`: test-mode fragments, one view, batch 1) runs once in fp32 and once under the
bf16 autocast of `--precision bf16`, after one untimed warm-up of each. Models: the shipped
trained demo teacher and the student presets with random weights (BatchNorm statistics drawn as
in bench/deploy.py, so the layers are not near-identity). Scenes: one synthetic room, and the
first scenes of ../shared/data/scannet_real/val when that folder is present. `--checkpoint PATH`
(repeatable) adds trained checkpoints of your own, named by their folder.

    PYTHONPATH=$PWD python bench/precision.py --threads 1 --out bench/reported/precision_bf16.json

Prints a table and writes JSON. The speed depends on the CPU: bf16 matrix products are fast only
where the CPU has bf16 instructions (AVX512-BF16, AMX) or on CUDA.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from deploy import GRID, save_random_checkpoint  # bench/ is on sys.path when this runs as a script

REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "data" / "scannet_real"
MODELS = ("demo_teacher_mini", "demo_student", "ptv3_half", "spunet_small")


def _checkpoint(name: str, folder: Path) -> Path:
    """The shipped demo teacher, or a random-weight checkpoint of preset `name` (bench/deploy.py's)."""
    if name == "demo_teacher_mini":
        return REPO / "srkd" / "assets" / "demo_teacher.pt"
    return save_random_checkpoint(name, folder / f"{name}.pt")


def _scenes(folder: Path, points: int, real: int) -> list[tuple[str, object]]:
    """(label, PointCloud) of one synthetic room and the first `real` real val scans."""
    from srkd.data.scannet import ScanNetScenes
    from srkd.data.scannet.layout import write_scene
    from srkd.data.synthetic.rooms import generate_scene

    write_scene(folder / "rooms", "val", "scene0000_00", generate_scene(0, 0, points))
    out = [("synthetic room", ScanNetScenes(folder / "rooms", "val", "scannet").load("scene0000_00"))]
    if real and (REAL / "val").is_dir():
        scans = ScanNetScenes(REAL, "val", "scannet")
        out += [(s, scans.load(s)) for s in list(scans.scene_ids)[:real]]
    return out


def _run(m, pc, precision: str) -> tuple[np.ndarray, float]:  # noqa: ANN001 - EvalModel, PointCloud
    from srkd.inference import infer_scene, precise_views

    views = precise_views(pc, tta=False)
    began = time.perf_counter()
    res = infer_scene(m.model, pc, views, m.grid_size, m.feature_names, color_norm=m.color_norm,
                      precision=precision)  # fmt: skip
    return res.probs, time.perf_counter() - began


def measure(name: str, path: Path, scenes: list[tuple[str, object]]) -> list[dict]:
    from srkd.evaluate.models import load_eval_model

    m = load_eval_model(path)
    m.grid_size = m.grid_size or GRID
    m.model.eval()
    rows = []
    for label, pc in scenes:
        _run(m, pc, "fp32"), _run(m, pc, "bf16")  # warm-up
        p32, t32 = _run(m, pc, "fp32")
        p16, t16 = _run(m, pc, "bf16")
        rows.append({
            "model": name, "scene": label, "points": int(pc.num_points),
            "argmax_agreement": float((p32.argmax(1) == p16.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(p32 - p16).max()),
            "fp32_s": t32, "bf16_s": t16, "bf16_speedup": t32 / t16,
        })  # fmt: skip
        r = rows[-1]
        print(f"{name:13s} {label:15s} {r['points']:>8,d} {100 * r['argmax_agreement']:8.2f} "
              f"{r['max_abs_prob_diff']:8.4f} {t32:8.2f} {t16:8.2f} {t32 / t16:6.2f}x", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--checkpoint", type=Path, action="append", default=[], help="a trained srkd checkpoint to add")
    ap.add_argument("--points", type=int, default=20_000, help="points of the synthetic room")
    ap.add_argument("--real-scenes", type=int, default=2, help="real val scans (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/reported/precision_bf16.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO, check=False).stdout.strip()  # fmt: skip
    print(f"{'model':13s} {'scene':15s} {'points':>8s} {'agree %':>8s} {'max dp':>8s} "
          f"{'fp32 s':>8s} {'bf16 s':>8s} {'ratio':>7s}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        scenes = _scenes(Path(tmp), a.points, a.real_scenes)
        for name in filter(None, a.models.split(",")):
            rows += measure(name, _checkpoint(name, Path(tmp)), scenes)
        for path in a.checkpoint:
            rows += measure(f"{path.parent.name}/{path.name}", path, scenes)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    flags = Path("/proc/cpuinfo").read_text()
    env = {"commit": commit, "threads": a.threads, "cpu": cpu, "torch": torch.__version__,
           "cpu_bf16_instructions": any(f in flags for f in ("avx512_bf16", "amx_bf16"))}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
