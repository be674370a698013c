"""How much a CDSegNet teacher's labels move between test-time noise draws, on real scenes.

    PYTHONPATH=$PWD python bench/teacher_noise.py --checkpoint model_best.pth \\
        --data-root ../shared/data/scannet_real --split val --scenes 1 --seeds 0 1 2

CDSegNet's output depends on the Gaussian noise fed to its conditional branch (srkd draws it from
`noise_seed`), so a cache holds one draw. For each scene, the canonical view (precise-test
fragments, no augmentation) runs once per noise seed; reported per seed pair: the share of
original points whose argmax differs from seed 0's, and the mean total-variation distance between
their class distributions. Without `--checkpoint` a random-weight CDSegNet (torch.manual_seed(0)
initialisation) is used: that measures the mechanism only, not a trained network.
Prints a markdown table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    from srkd.data.scannet import get_dataset_spec
    from srkd.data.sources import open_scenes
    from srkd.data.transforms import replay
    from srkd.inference import infer_view, precise_views
    from srkd.models import create_model, save_checkpoint  # noqa: F401
    from srkd.models.teacher import TeacherRef, load_teacher

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="a CDSegNet .pth (default: random weights)")
    p.add_argument("--model", default="cdsegnet", help="preset of the random-weight teacher")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data/scannet_real"))
    p.add_argument("--split", default="val")
    p.add_argument("--scenes", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/reported/teacher_noise.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = get_dataset_spec("scannet")
    ckpt = args.checkpoint
    if ckpt is None:
        torch.manual_seed(0)
        model = create_model(args.model)
        ckpt = Path("/tmp") / f"srkd_random_{args.model}.pth"
        torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    model, info = load_teacher(TeacherRef(ckpt), dataset)
    if info.family != "CDSegNet":
        raise SystemExit(f"{ckpt} holds a {info.family} network; the noise draw is CDSegNet's")
    source = open_scenes(dataset, args.data_root, args.split, require_labels=False)
    rows = []
    for scene_id in list(source.scene_ids)[: args.scenes]:
        pc = source.load(scene_id)
        view = replay(pc, precise_views(pc, tta=False)[0])
        probs, seconds = [], []
        for seed in args.seeds:
            model.noise_seed = seed
            start = time.perf_counter()
            result = infer_view(model, view, dataset.grid_size, info.feature_names, "cpu",
                                num_points=pc.num_points, color_norm=info.color_norm)
            seconds.append(time.perf_counter() - start)
            probs.append(result.probs)
        for i, seed in enumerate(args.seeds[1:], start=1):
            moved = float((probs[i].argmax(1) != probs[0].argmax(1)).mean())
            tv = float(0.5 * np.abs(probs[i] - probs[0]).sum(1).mean())
            rows.append({"scene": scene_id, "points": int(pc.num_points), "seeds": [args.seeds[0], seed],
                         "argmax_moved": moved, "mean_tv": tv, "seconds_per_draw": float(np.mean(seconds))})
    print(f"teacher {info.name} ({'random weights' if args.checkpoint is None else ckpt}), "
          f"{torch.get_num_threads()} threads")
    print("| scene | points | seeds | argmax moved | mean TV | s / draw |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {r['points']} | {r['seeds']} | {r['argmax_moved']:.2%} | "
              f"{r['mean_tv']:.4f} | {r['seconds_per_draw']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(sys.argv), "teacher": info.name, "teacher_args": info.cache_args(),
        "weights": "random (torch.manual_seed(0) init)" if args.checkpoint is None else str(ckpt),
        "machine": platform.platform(), "threads": torch.get_num_threads(), "rows": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
