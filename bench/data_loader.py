"""Points per second through the full ScanNet training transform chain with 0 and 2 workers.

    python bench/data_loader.py                       # ../shared/data/scannet_real, train
    python bench/data_loader.py --workers 0 2 4 --passes 3 --batch-size 2

For each worker count it iterates `make_loader(SceneDataset(scenes, train_transforms()))` over
`--passes` epochs (after one untimed warm-up batch that also starts the workers) and reports
raw input points per second (what the chain consumed), output points per second (after grid
sample / crop) and batches per second. A second table gives the mean time of each transform
of the chain in the main process. Prints tables and writes JSON (default
bench/results/data_loader.json). Exits 0 with a message when the data is absent.
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "scannet_real"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help="Pointcept-layout root")
    p.add_argument("--split", default="train")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--passes", type=int, default=2, help="epochs over the split per setting")
    p.add_argument("--grid-size", type=float, default=0.02)
    p.add_argument("--max-points", type=int, default=102400)
    p.add_argument("--mix3d-prob", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "data_loader.json")
    return p.parse_args(argv)


def time_loader(scenes, args: argparse.Namespace, workers: int) -> dict:
    from srkd.data.dataset import SceneDataset, make_loader
    from srkd.data.transforms import train_transforms

    ds = SceneDataset(scenes, train_transforms(args.grid_size, args.max_points),
                      grid_size=args.grid_size, seed=args.seed, repeats=args.passes)
    raw_sizes = {sid: scenes.load(sid).num_points for sid in scenes.scene_ids}
    loader = make_loader(ds, args.batch_size, workers=workers, shuffle=True, seed=args.seed,
                         mix3d_prob=args.mix3d_prob)
    it = iter(loader)
    warm = next(it)  # starts the workers; not timed
    raw_pts = out_pts = batches = 0
    start = time.perf_counter()
    for batch in it:
        batches += 1
        out_pts += int(batch.offset[-1])
        raw_pts += sum(raw_sizes[s] for s in batch.scene_ids)
    elapsed = time.perf_counter() - start
    del warm
    return {
        "workers": workers,
        "batches": batches,
        "seconds": elapsed,
        "raw_points": raw_pts,
        "output_points": out_pts,
        "raw_points_per_s": raw_pts / elapsed,
        "output_points_per_s": out_pts / elapsed,
        "batches_per_s": batches / elapsed,
    }


def time_stages(scenes, args: argparse.Namespace) -> list[dict]:
    from srkd.data.transforms import train_transforms

    chain = train_transforms(args.grid_size, args.max_points)
    totals = np.zeros(len(chain.transforms))
    rng = np.random.default_rng(args.seed)
    for sid in scenes.scene_ids:
        pc = scenes.load(sid)
        for k, t in enumerate(chain.transforms):
            t0 = time.perf_counter()
            pc, _ = t(pc, rng)
            totals[k] += time.perf_counter() - t0
    n = len(scenes.scene_ids)
    return [{"transform": t.name, "ms_per_scene": 1e3 * totals[k] / n}
            for k, t in enumerate(chain.transforms)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data_root / args.split).is_dir():
        print(f"error: no dataset split at {args.data_root / args.split}: pass --data-root DIR "
              "with a Pointcept-layout ScanNet (the default is ../shared/data/scannet_real), or "
              "generate one with `srkd generate-synthetic --out DIR`", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    from srkd.data.sources import open_scenes

    scenes = open_scenes("scannet", args.data_root, args.split)
    sizes = [scenes.load(s).num_points for s in scenes.scene_ids]
    rows = [time_loader(scenes, args, w) for w in args.workers]
    stages = time_stages(scenes, args)

    print(f"{len(sizes)} scenes, {np.mean(sizes):.0f} points/scene on average, batch "
          f"{args.batch_size}, {args.passes} passes, grid {args.grid_size} m, Mix3D p "
          f"{args.mix3d_prob}")
    print(f"{'workers':>7} {'batches':>7} {'seconds':>8} {'raw pts/s':>11} {'out pts/s':>11} "
          f"{'batches/s':>9}")
    for r in rows:
        print(f"{r['workers']:>7} {r['batches']:>7} {r['seconds']:>8.2f} "
              f"{r['raw_points_per_s']:>11.0f} {r['output_points_per_s']:>11.0f} "
              f"{r['batches_per_s']:>9.2f}")
    print(f"\n{'transform':<24} {'ms/scene':>9}")
    for s in stages:
        print(f"{s['transform']:<24} {s['ms_per_scene']:>9.2f}")
    print(f"{'total':<24} {sum(s['ms_per_scene'] for s in stages):>9.2f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "data_root": str(args.data_root),
        "split": args.split,
        "scenes": len(sizes),
        "mean_points_per_scene": float(np.mean(sizes)),
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_root", "out")},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "torch": torch.__version__},
        "loader": rows,
        "stages": stages,
    }
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
