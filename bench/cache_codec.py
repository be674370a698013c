"""Bytes per point and added error of each teacher-cache codec setting, plus gather speed.

    python bench/cache_codec.py                          # synthetic teacher-like outputs
    python bench/cache_codec.py --outputs teacher.npz    # real outputs: arrays `logits` (N, K), `feature` (N, D)
                                                         # (+ optional `sizes` (S,): one entry per scene)
    python bench/cache_codec.py --teacher srkd/assets/demo_teacher.pt --data-root DIR --split train \
        --scenes 4 --save-outputs teacher.npz            # a teacher's view-0 outputs of the first scenes

With `sizes`, every scene is encoded as its own entry (as the cache stores it) and the table gives
the point-weighted means (KL max: the largest). Encode/decode speeds run with one BLAS thread
(set before numpy loads), so they do not depend on the machine's other load as much.

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

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: multi-threaded BLAS on a busy
os.environ.setdefault("OMP_NUM_THREADS", "1")  # machine makes small matmuls 100x slower

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
    ("compact (default)", CodecSpec.create("compact")),
    ("compact, clevel 9", CodecSpec.create("compact", clevel=9)),
    ("compact, logit_step 0.2", CodecSpec.create("compact", logit_step=0.2)),
    ("compact, logit_step 0.5", CodecSpec.create("compact", logit_step=0.5)),
    ("compact, rank 24, step 1/48", CodecSpec.create("compact", feature_rank=24, feature_step=1 / 48)),
    ("compact, rank 24, 1/48, clevel 9", CodecSpec.create("compact", feature_rank=24, feature_step=1 / 48, clevel=9)),
    ("compact, rank 16", CodecSpec.create("compact", feature_rank=16)),
    ("compact, channels (rank 0)", CodecSpec.create("compact", feature_rank=0)),
    ("compact, channels, step 1/32", CodecSpec.create("compact", feature_rank=0, feature_step=1 / 32)),
    ("compact, top-5 + floor", CodecSpec.create("compact", top_k=5, logit_step=0.1)),
    ("compact, top-8 + floor", CodecSpec.create("compact", top_k=8, logit_step=0.1)),
    ("int8 (step 1/40)", CodecSpec.create("int8")),
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


def teacher_outputs(teacher: Path, data_root: Path, split: str, scenes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """View-0 cached targets of the first `scenes` scenes (ScanNet layout): (logits (N, K),
    feature (N, D), sizes (S,)), as `srkd cache-teacher` computes them."""
    from srkd.cache_teacher.targets import scene_targets
    from srkd.cache_teacher.views import ViewSettings
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.models.teacher import TeacherRef, load_teacher

    ds = get_dataset_spec("scannet")
    model, info = load_teacher(TeacherRef(teacher), ds, "cpu")
    source = ScanNetScenes(data_root, split, ds)
    logits, feature = [], []
    for scene in source.scene_ids[:scenes]:
        views, _ = scene_targets(model, source.load(scene), ViewSettings(views=1), ds.grid_size, ds.feature_names,
                                 "cpu", False, color_norm=info.color_norm)  # fmt: skip
        logits.append(views[0].logits)
        feature.append(views[0].feature)
        print(f"teacher outputs: {scene} ({len(views[0].logits)} points)", flush=True)
    return np.concatenate(logits), np.concatenate(feature), np.array([len(x) for x in logits])


def measure_scenes(codec: CodecSpec, logits: np.ndarray, feature: np.ndarray, sizes: np.ndarray, seed: int) -> dict:
    """`measure_codec` of every scene as its own entry: point-weighted means, the largest KL, and
    encode/decode speeds in points per second over all scenes."""
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    parts = [measure_codec(codec, logits[a:b], feature[a:b], T=2.0, n_affinity=4096, rng=np.random.default_rng(seed))
             for a, b in zip(bounds[:-1], bounds[1:])]  # fmt: skip
    weight = np.asarray(sizes, dtype=np.float64) / float(np.sum(sizes))
    out = {key: float(sum(w * p[key] for w, p in zip(weight, parts))) for key in parts[0] if key not in ("encode_s", "decode_s")}
    out["kl_max"] = max(p["kl_max"] for p in parts)
    out["encode_points_per_s"] = float(np.sum(sizes)) / sum(p["encode_s"] for p in parts)
    out["decode_points_per_s"] = float(np.sum(sizes)) / sum(p["decode_s"] for p in parts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=Path, help=".npz with arrays `logits` (N, K), `feature` (N, D) [, `sizes` (S,)]")
    parser.add_argument("--teacher", type=Path, help="compute the outputs with this teacher checkpoint (with --data-root)")
    parser.add_argument("--data-root", type=Path, help="ScanNet-layout data root for --teacher")
    parser.add_argument("--split", default="train")
    parser.add_argument("--scenes", type=int, default=4, help="scenes of --split run through --teacher")
    parser.add_argument("--save-outputs", type=Path, help="write --teacher's outputs here (.npz) for later --outputs runs")
    parser.add_argument("--points", type=int, default=150_000, help="synthetic points (a ScanNet scene has ~150k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gather-subset", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cache_codec.json")
    args = parser.parse_args()

    agreement = None
    if args.teacher:
        logits, feature, sizes = teacher_outputs(args.teacher, args.data_root, args.split, args.scenes)
        source = f"{args.teacher.name} over {len(sizes)} scenes of {args.data_root}/{args.split}"
        if args.save_outputs:
            np.savez(args.save_outputs, logits=logits, feature=feature, sizes=sizes)
    elif args.outputs:
        with np.load(args.outputs) as data:
            logits, feature = data["logits"].astype(np.float32), data["feature"].astype(np.float32)
            sizes = data["sizes"] if "sizes" in data else np.array([len(logits)])
        source = f"teacher outputs from {args.outputs} ({len(sizes)} scene(s))"
    else:
        logits, feature, labels = synthetic_outputs(args.points, seed=args.seed)
        sizes = np.array([len(logits)])
        source = f"SYNTHETIC teacher-like outputs ({args.points} points, seed {args.seed}; not a trained teacher)"
        agreement = float((logits.argmax(1) == labels).mean())
    n, k = logits.shape
    d = feature.shape[1]
    rows = [{"setting": label, "codec": str(codec), **measure_scenes(codec, logits, feature, sizes, args.seed)}
            for label, codec in SETTINGS]  # fmt: skip
    timing = gather_timing(logits[: sizes[0]], feature[: sizes[0]], args.gather_subset)

    print(f"cache codecs on {source}: N={n}, K={k}, D={d}")
    if agreement is not None:
        print(f"(synthetic teacher accuracy vs its labels: {100 * agreement:.1f}%)")
    header = (f"{'setting':30s} {'B/point':>8s} {'KL T=2':>9s} {'KL max':>9s} {'aff. MAE':>9s} {'argmax':>7s} "
              f"{'enc Mpt/s':>9s} {'dec Mpt/s':>9s}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['setting']:30s} {r['bytes_per_point']:8.1f} {r['kl_mean']:9.2e} {r['kl_max']:9.2e} "
              f"{r['affinity_mae']:9.2e} {100 * r['argmax_agreement']:6.2f}% {r['encode_points_per_s'] / 1e6:9.2f} "
              f"{r['decode_points_per_s'] / 1e6:9.2f}")  # fmt: skip
    print(f"gather (default codec, LocalStore): {timing['subset']} of {timing['points']} points: "
          f"first {1e3 * timing['first_gather_s']:.0f} ms (loads the entry), warm "
          f"{1e3 * timing['warm_gather_s']:.1f} ms; scene write {timing['write_s']:.2f} s")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(
        {"source": source, "synthetic": agreement is not None, "points": n, "scenes": len(sizes), "classes": k,
         "feature_dim": d, "temperature": 2.0, "affinity_points": 4096, "settings": rows, "gather": timing},
        indent=2,
    ))  # fmt: skip
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
