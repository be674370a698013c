"""What does `srkd predict`'s plain-tensor path cost next to `srkd evaluate`'s inference?

Runs `srkd.inference.infer_scene` (PointBatch path, evaluate) and `srkd.predict.run.predict_cloud`
(PlainSegmenter path, predict) on the same scan, alternately in ABBA order, `--repeats` times
each (one untimed warm-up of each first), prints the median wall times and their ratio, and checks that the
two give the same probabilities. Writes JSON (--out).

    PYTHONPATH=. python bench/predict_overhead.py --checkpoint srkd/assets/demo_teacher.pt \
        --scan ../shared/data/scannet_raw_sample/scans/scene0000_00/scene0000_00_vh_clean_2.ply
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--scan", type=Path, required=True, help="a .ply or a scene folder")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--tta", action="store_true", help="13 views (default: 1)")
    ap.add_argument("--out", type=Path, default=Path("bench/reported/predict_overhead.json"))
    a = ap.parse_args()

    import numpy as np

    from srkd.device import configure_threads, describe_device
    from srkd.inference import infer_scene, precise_views
    from srkd.predict.inputs import read_input
    from srkd.predict.run import load_predictor, predict_cloud

    threads = configure_threads()
    p = load_predictor(a.checkpoint, device="cpu")
    cloud = read_input(a.scan, p.feature_names).cloud
    views = precise_views(cloud, a.tta)

    def evaluate_path() -> np.ndarray:
        return infer_scene(p.segmenter.model, cloud, views, p.segmenter.grid_size, p.feature_names,
                           color_norm=p.color_norm).prob_sum  # fmt: skip

    def predict_path() -> np.ndarray:
        return predict_cloud(p, cloud, a.tta)

    runs = {"evaluate (infer_scene)": evaluate_path, "predict (PlainSegmenter)": predict_path}
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up, and the equality check
    diff = float(np.abs(outputs["evaluate (infer_scene)"] - outputs["predict (PlainSegmenter)"]).max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(a.repeats):  # ABBA order: a busy machine's drift hits both paths alike
        for name, fn in list(runs.items())[:: 1 if i % 2 == 0 else -1]:
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["predict (PlainSegmenter)"] / med["evaluate (infer_scene)"]
    print(f"scan {a.scan.name}: {cloud.num_points:,} points, {len(views)} view(s), "
          f"{describe_device(p.device)}; max |prob_sum diff| {diff:.2e}")  # fmt: skip
    print(f"{'path':<28} {'median s':>9}  runs")
    for name, t in times.items():
        print(f"{name:<28} {med[name]:>9.2f}  {', '.join(f'{x:.2f}' for x in t)}")
    print(f"ratio predict / evaluate: {ratio:.3f}")
    result = {"scan": str(a.scan), "points": cloud.num_points, "views": len(views),
              "checkpoint": str(a.checkpoint), "threads": threads, "max_abs_prob_diff": diff,
              "seconds": times, "median_s": med, "ratio_predict_over_evaluate": ratio}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
