"""Bytes per point and added error of each teacher-cache codec setting, plus gather speed.

    python bench/cache_codec.py                          # synthetic teacher-like outputs
    python bench/cache_codec.py --outputs teacher.npz    # real outputs: arrays `logits` (N, K), `feature` (N, D)

Errors (see srkd.cache.codecs.measure_codec): mean KL(exact || decoded) of softmax(logits / 2) in
nats, and mean |A - A'| of cosine affinities between 4,096 sampled points. Prints a table and
writes JSON (default bench/results/cache_codec.json).

The synthetic outputs imitate a trained segmentation teacher, not noise: points of a room-like
scene carry class labels in spatially coherent regions; the feature is a leaky-ReLU of a low-rank
class embedding plus a smooth spatial field plus per-point noise; the logits are a linear head of
that feature (as in every segmentation network), scaled so the teacher is confident but wrong
near class boundaries. Compression on real outputs can differ: re-run with --outputs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from srkd.cache import (
    CacheReader,
    CacheSpec,
    CacheWriter,
    CodecSpec,
    ViewTargets,
    measure_codec,
)

SETTINGS: list[tuple[str, CodecSpec]] = [
    ("int8 (default, step 1/40)", CodecSpec.create("int8")),
    ("int8, feature_step 1/64", CodecSpec.create("int8", feature_step=1 / 64)),
    ("int8, 63 logit levels", CodecSpec.create("int8", logit_levels=63)),
    ("int8, rotated (PCA)", CodecSpec.create("int8", rotate=True)),
    ("int8, feature_step 1/32", CodecSpec.create("int8", feature_step=1 / 32)),
    ("int8, step 1/32, rotated", CodecSpec.create("int8", feature_step=1 / 32, rotate=True)),
    ("int8, feature_step 1/96", CodecSpec.create("int8", feature_step=1 / 96)),
    ("int8, 255 logit levels", CodecSpec.create("int8", logit_levels=255)),
    ("int8, full logit range", CodecSpec.create("int8", logit_range=0.0)),
    ("float16", CodecSpec.create("float16")),
    ("lossless (float32)", CodecSpec.create("lossless")),
]


def synthetic_outputs(n: int, k: int = 20, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-like (logits float32 (n, k), feature float32 (n, d), labels int64 (n,)); see module doc."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 1, (n, 3)) * np.array([8.0, 6.0, 3.0])
    # Regions: nearest of 60 random "object" centres, each with a class (walls/floor frequent).
    centres = rng.uniform(0, 1, (60, 3)) * np.array([8.0, 6.0, 3.0])
    centre_class = rng.choice(k, 60, p=np.r_[0.3, 0.2, np.full(k - 2, 0.5 / (k - 2))])
    nearest = np.argmin(((xyz[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    labels = centre_class[nearest]
    rank = 16
    embedding = rng.normal(size=(k, rank))
    field = np.sin(xyz @ rng.normal(scale=0.8, size=(3, rank)) + rng.uniform(0, 6.3, rank))
    latent = embedding[labels] + 0.4 * field + 0.9 * rng.normal(size=(n, rank))
    hidden = latent @ rng.normal(size=(rank, d)) / np.sqrt(rank)
    feature = np.where(hidden > 0, hidden, 0.05 * hidden) * 2.0
    # A linear head fitted to the labels (least squares on one-hot), then sharpened.
    sample = rng.choice(n, min(n, 20000), replace=False)
    design = np.c_[feature[sample], np.ones(len(sample))]
    head = np.linalg.lstsq(design, np.eye(k)[labels[sample]], rcond=None)[0]
    logits = 14.0 * (np.c_[feature, np.ones(n)] @ head)
    return logits.astype(np.float32), feature.astype(np.float32), labels


def gather_timing(logits: np.ndarray, feature: np.ndarray, subset: int, repeats: int = 5) -> dict[str, float]:
    """Write one scene with the default codec to a temporary directory; time its first load and a
    warm gather of `subset` random points (median of `repeats`)."""
    k, d = logits.shape[1], feature.shape[1]
    spec = CacheSpec(
        dataset="bench", data_root="-", split="-", class_names=[f"c{i}" for i in range(k)],
        teacher_name="bench", teacher_args={}, teacher_sha256="-", feature_dim=d,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        CacheWriter.create(tmp, spec).write_scene("scene", [ViewTargets(logits, feature, {})])
        write_s = time.perf_counter() - start
        reader = CacheReader(tmp)
        idx = rng.choice(len(logits), min(subset, len(logits)), replace=False)
        start = time.perf_counter()
        reader.gather("scene", 0, idx)
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            idx = rng.choice(len(logits), min(subset, len(logits)), replace=False)
            start = time.perf_counter()
            reader.gather("scene", 0, idx)
            times.append(time.perf_counter() - start)
    return {"points": len(logits), "subset": len(idx), "write_s": write_s, "first_gather_s": first,
            "warm_gather_s": float(np.median(times))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=Path, help=".npz with arrays `logits` (N, K) and `feature` (N, D)")
    parser.add_argument("--points", type=int, default=150_000, help="synthetic points (a ScanNet scene has ~150k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gather-subset", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cache_codec.json")
    args = parser.parse_args()

    if args.outputs:
        with np.load(args.outputs) as data:
            logits, feature = data["logits"].astype(np.float32), data["feature"].astype(np.float32)
        source = f"teacher outputs from {args.outputs}"
        agreement = None
    else:
        logits, feature, labels = synthetic_outputs(args.points, seed=args.seed)
        source = f"SYNTHETIC teacher-like outputs ({args.points} points, seed {args.seed}; not a trained teacher)"
        agreement = float((logits.argmax(1) == labels).mean())
    n, k = logits.shape
    d = feature.shape[1]
    rows = []
    for label, codec in SETTINGS:
        result = measure_codec(codec, logits, feature, T=2.0, n_affinity=4096, rng=np.random.default_rng(args.seed))
        rows.append({"setting": label, "codec": str(codec), **result})
    timing = gather_timing(logits, feature, args.gather_subset)

    print(f"cache codecs on {source}: N={n}, K={k}, D={d}")
    if agreement is not None:
        print(f"(synthetic teacher accuracy vs its labels: {100 * agreement:.1f}%)")
    header = f"{'setting':26s} {'B/point':>8s} {'raw B/pt':>8s} {'KL T=2 (nats)':>14s} {'affinity MAE':>13s} {'argmax agree':>12s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['setting']:26s} {r['bytes_per_point']:8.1f} {r['raw_bytes_per_point']:8.1f} "
              f"{r['kl_mean']:14.2e} {r['affinity_mae']:13.2e} {100 * r['argmax_agreement']:11.2f}%")  # fmt: skip
    print(f"gather (default codec, LocalStore): {timing['subset']} of {timing['points']} points: "
          f"first {1e3 * timing['first_gather_s']:.0f} ms (loads the entry), warm "
          f"{1e3 * timing['warm_gather_s']:.1f} ms; scene write {timing['write_s']:.2f} s")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(
        {"source": source, "synthetic": args.outputs is None, "points": n, "classes": k, "feature_dim": d,
         "temperature": 2.0, "affinity_points": 4096, "settings": rows, "gather": timing},
        indent=2,
    ))  # fmt: skip
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
