"""The teacher cache at nuScenes scale (about 28k training samples of about 35k points, 300k with
10 sweeps): schema 2 (a group per sample) and schema 3 (samples packed per sequence) side by side.

    python bench/cache_scale.py                                   # 30,000 samples (several minutes)
    python bench/cache_scale.py --samples 3000 --out /tmp/cache_scale_small.json

(a) Bytes per point and writer throughput per process: `--build-samples` outdoor-sized samples
    (`--points`, 16 classes, 64-d features) through the real `CacheWriter` in both schemas, with
    the default codec and int8, encoding included. The outputs are synthetic but shaped like a
    lidar teacher's: points in scan order (ring by ring), labels in runs along each ring with a
    skewed class frequency, features a leaky-ReLU of a class embedding plus a smooth field plus
    noise, logits a linear head of the feature plus a class margin.
(b) `--samples` tiny samples (`--tiny-points` points, one view, default codec) in each schema:
    - schema 2: `--write-probe` samples written by `CacheWriter` (timed: the per-sample write
      overhead), the other names hard links to one sample's files (same paths, sizes and
      metadata; only the build is faster);
    - schema 3: every sample written by `CacheWriter.write_sequence`, `--per-sequence` samples per
      sequence (nuScenes has ~40 keyframes per scene), timed; then its metadata consolidated once.
    For each: files, metadata bytes, disk use, the time to open the root (fingerprint check), list
    the committed samples (schema 3: srkd's `CacheReader` open, which builds the sample index),
    read and decode one sample (reader already open), the resume completeness check
    (`damaged_scenes` / `damaged_sequences`, 16 threads; schema 2 on `--damage-samples`, scaled
    linearly) and xarray's `open_datatree` (schema 2 on `--subset-samples`, scaled linearly;
    schema 3 whole, and on a copy with consolidated metadata).

Times are wall seconds on a warm page cache (files just written), best of `--repeats`. Compare the
two schemas (measured in one run) rather than absolute times when the machine is shared. Prints
a table and writes JSON (`--out`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: small matmuls, busy machines

import argparse
import importlib
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkd.cache import CacheReader, CacheSpec, CacheWriter, CodecSpec, ViewTargets
from srkd.cache.housekeeping import consolidate_metadata
from srkd.cache.schema import SampleTargets, committed_scene_ids

NUSCENES_TRAIN_SAMPLES = 28130  # nuScenes v1.0 trainval: 700 train scenes, 28,130 keyframes


def lidar_like(n: int, k: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-like outputs of one lidar sample in scan order: logits float32 (n, k), feature
    float32 (n, d); see the module docstring for the model."""
    rings = 32
    ring = np.minimum(np.arange(n) * rings // n, rings - 1)
    azimuth = (np.arange(n) % max(1, n // rings)) / max(1, n // rings) * 2 * np.pi
    freq = 1.0 / np.arange(1, k + 1) ** 1.3
    labels = np.empty(n, np.int64)
    start = 0
    while start < n:  # runs along the scan: long on the ground (low rings), short on objects
        low = ring[start] < rings // 3
        cls = rng.choice(4) if low else rng.choice(k, p=freq / freq.sum())
        length = int(rng.geometric(1 / (120 if low else 25)))
        labels[start : start + length] = cls
        start += length
    rank = 16
    field = np.sin(np.c_[ring / 4.0, azimuth * 3] @ rng.normal(size=(2, rank)) + rng.uniform(0, 6.3, rank))
    latent = rng.normal(size=(k, rank))[labels] + 0.4 * field + 0.6 * rng.normal(size=(n, rank))
    hidden = latent @ rng.normal(size=(rank, d)) / np.sqrt(rank)
    feature = np.where(hidden > 0, hidden, 0.05 * hidden) * 2.0
    head = rng.normal(size=(d, k)) / np.sqrt(d)
    margin = rng.gamma(4.0, 1.5, size=(n, 1))  # confident on most points, unsure on some
    logits = feature @ head + margin * np.eye(k)[labels]
    return logits.astype(np.float32), feature.astype(np.float32)


def make_spec(k: int, d: int, root: str, codec: CodecSpec | None = None) -> CacheSpec:
    return CacheSpec(
        dataset="nuscenes-like", data_root=root, split="train", class_names=tuple(f"c{i}" for i in range(k)),
        teacher_name="bench", teacher_args={}, teacher_sha256="0" * 64, feature_dim=d,
        codec=codec or CodecSpec(), views=1, ensemble=False,
    )  # fmt: skip


def tree_stats(path: Path) -> dict[str, int]:
    """files, directories, metadata (zarr.json) bytes, other bytes, disk bytes (allocated blocks)."""
    files = dirs = meta = data = disk = 0
    for top, subdirs, names in os.walk(path):
        dirs += len(subdirs)
        for name in names:
            st = os.stat(os.path.join(top, name))
            files += 1
            disk += st.st_blocks * 512
            if name == "zarr.json":
                meta += st.st_size
            else:
                data += st.st_size
    return {"files": files, "dirs": dirs, "metadata_bytes": meta, "data_bytes": data, "disk_bytes": disk}


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out



def build_throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """(a): `build_samples` outdoor-sized samples through CacheWriter in schema 2 (one `write_scene`
    each) and schema 3 (one `write_sequence`), with the default codec and int8."""
    rng = np.random.default_rng(0)
    outputs = [lidar_like(args.points, args.classes, args.feature_dim, rng) for _ in range(args.build_samples)]
    points = args.points * args.build_samples
    out: dict[str, Any] = {"samples": args.build_samples, "points_per_sample": args.points, "classes": args.classes,
                           "feature_dim": args.feature_dim}  # fmt: skip
    for codec in (CodecSpec(), CodecSpec.create("int8")):
        for schema in (2, 3):
            path = work / f"outdoor_{codec.name}_{schema}"
            spec = make_spec(args.classes, args.feature_dim, "/bench", codec)
            writer = CacheWriter.create(path, spec, schema_version=schema)
            targets = [SampleTargets(f"s_{i:06d}", [ViewTargets(lg, ft, {"view": 0})]) for i, (lg, ft) in enumerate(outputs)]
            start = time.perf_counter()
            if schema == 2:
                for t in targets:
                    writer.write_scene(*t)
            else:
                writer.write_sequence("seq-s_000000", [writer.encode_sample(t) for t in targets])
            write_s = time.perf_counter() - start
            stats = tree_stats(path)
            out[f"{codec.name}_schema{schema}"] = {
                "codec": str(codec), "bytes_per_point": (stats["data_bytes"] + stats["metadata_bytes"]) / points,
                "write_s_per_sample": write_s / args.build_samples, "write_points_per_s": points / write_s,
                "files": stats["files"],
            }  # fmt: skip
    return out


def build_schema2(args: argparse.Namespace, path: Path, spec: CacheSpec) -> dict[str, float]:
    """Schema 2: `write_probe` samples through the writer, the rest hard-linked copies."""
    rng = np.random.default_rng(1)
    writer = CacheWriter.create(path, spec, schema_version=2)
    start = time.perf_counter()
    probe = min(args.write_probe, args.samples)
    for i in range(probe):
        logits, feature = lidar_like(args.tiny_points, args.classes, args.feature_dim, rng)
        writer.write_scene(f"sample_{i:06d}", [ViewTargets(logits, feature, {"view": 0})])
    per_sample = (time.perf_counter() - start) / max(probe, 1)
    start = time.perf_counter()
    clone(path / "sample_000000", [path / f"sample_{i:06d}" for i in range(probe, args.samples)])
    return {"writer_s_per_tiny_sample": per_sample, "copy_s": time.perf_counter() - start}


def build_schema3(args: argparse.Namespace, path: Path, spec: CacheSpec) -> dict[str, float]:
    """Schema 3: `per_sequence` samples per `write_sequence`. The sequences holding the first
    `write_probe` samples encode every sample (timed: per-sample cost as schema 2's probe, encoding
    included); the rest reuse one encoded sample under new ids (write time only, also timed). Then
    the metadata is consolidated once, as `srkd cache-teacher` does after a build."""
    rng = np.random.default_rng(1)
    writer = CacheWriter.create(path, spec, schema_version=3)
    logits, feature = lidar_like(args.tiny_points, args.classes, args.feature_dim, rng)
    shared = writer.encode_sample(SampleTargets("x", [ViewTargets(logits, feature, {"view": 0})]))
    probe = min(args.samples, max(args.per_sequence, args.write_probe))
    timed = {"probe": 0.0, "rest": 0.0}
    for first in range(0, args.samples, args.per_sequence):
        ids = [f"sample_{i:06d}" for i in range(first, min(first + args.per_sequence, args.samples))]
        start = time.perf_counter()
        if first < probe:
            packed = []
            for sample in ids:
                logits, feature = lidar_like(args.tiny_points, args.classes, args.feature_dim, rng)
                packed.append(writer.encode_sample(SampleTargets(sample, [ViewTargets(logits, feature, {"view": 0})])))
        else:
            packed = [dataclasses.replace(shared, sample_id=sample) for sample in ids]
        writer.write_sequence(f"seq-{ids[0]}", packed)
        timed["probe" if first < probe else "rest"] += time.perf_counter() - start
    probed = min(args.samples, -(-probe // args.per_sequence) * args.per_sequence)
    consolidated = path.with_name(path.name + "_consolidated")
    shutil.copytree(path, consolidated)
    start = time.perf_counter()
    consolidate_metadata(consolidated)
    return {"writer_s_per_tiny_sample": timed["probe"] / probed,
            "write_only_s_per_tiny_sample": timed["rest"] / max(1, args.samples - probed),
            "consolidate_s": time.perf_counter() - start}  # fmt: skip


def clone(src: Path, targets: list[Path]) -> None:
    """Give each target folder the files under `src` as hard links: per path the same entries,
    sizes and metadata a written sample has (counted as separate files by `tree_stats`), made
    without writing or, later, discarding 360k files' blocks (this disk discards on delete)."""
    files = [p.relative_to(src) for p in src.rglob("*") if p.is_file()]
    subdirs = sorted({rel.parent for rel in files}, key=lambda r: len(r.parts))

    def one(dst: Path) -> None:
        for rel in subdirs:
            (dst / rel).mkdir(parents=True, exist_ok=True)
        for rel in files:
            os.link(src / rel, dst / rel)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, targets))



def measure(path: Path, spec: CacheSpec, args: argparse.Namespace, schema: int) -> dict[str, Any]:
    """Open (+ fingerprint), list committed, one sample, resume completeness check."""
    sid = f"sample_{args.samples // 2:06d}"

    def open_root() -> zarr.Group:
        root = zarr.open_group(path, mode="r", use_consolidated=False)
        assert root.attrs["srkd_cache"]["fingerprint"] == spec.fingerprint(schema)
        return root

    def list_committed() -> int:
        if schema == 2:
            return len(committed_scene_ids(open_root()))
        return len(CacheReader(path).scene_ids)  # the reader's sample index, built on open

    out: dict[str, Any] = {"open_s": best_of(open_root, args.repeats)[0]}
    out["list_s"], count = best_of(list_committed, args.repeats)
    assert count == args.samples, (count, args.samples)

    def one_sample() -> float:
        reader = CacheReader(path, cache_bytes=0)
        start = time.perf_counter()
        reader.read_all(sid, 0)
        return time.perf_counter() - start

    out["one_sample_s"] = min(one_sample() for _ in range(max(3, args.repeats)))
    writer = CacheWriter.open(path, spec)
    if schema == 2:
        probe = [f"sample_{i:06d}" for i in range(min(args.damage_samples, args.samples))]
        start = time.perf_counter()
        assert not writer.damaged_scenes(probe)
        out["resume_check_s"] = (time.perf_counter() - start) * args.samples / len(probe)
        out["resume_check_note"] = f"damaged_scenes on {len(probe)} samples, scaled to {args.samples}"
    else:
        names = list(writer.committed_sequences())
        start = time.perf_counter()
        assert not writer.damaged_sequences(names)
        out["resume_check_s"] = time.perf_counter() - start
        out["resume_check_note"] = f"damaged_sequences on all {len(names)} sequences"
    return out


def datatree_open(path: Path, consolidated: bool) -> float:
    import xarray as xr

    start = time.perf_counter()
    xr.open_datatree(path, engine="zarr", consolidated=consolidated)
    return time.perf_counter() - start


def subset_store(src: Path, dst: Path, n: int) -> None:
    dst.mkdir()
    shutil.copy2(src / "zarr.json", dst / "zarr.json")
    clone(src / "sample_000000", [dst / f"sample_{i:06d}" for i in range(n)])




def xarray_sequence(path: Path) -> int:
    """One sequence's view as an xarray Dataset with the sample offsets as a coordinate."""
    import xarray as xr

    seq = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))[0]
    ds = xr.open_zarr(path, group=f"{seq}/view_0", consolidated=False)
    offsets = xr.open_zarr(path, group=seq, consolidated=False)["sample_offsets"]
    return int(ds.assign_coords(sample_offsets=offsets).sizes["point"])


def whole_dataset(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """srkd's one-Dataset view of the cache (`srkd.cache.dataset.open_dataset`): the open (xarray
    and dask imported beforehand), and a dask read of every sample's decoded features with 1 and
    2 worker processes (the `processes` scheduler; each worker opens its own reader)."""
    import dask

    from srkd.cache.dataset import open_dataset

    importlib.import_module("xarray")  # imported before the clock starts: its import is not the open's

    seconds, ds = best_of(lambda: open_dataset(path), args.repeats)
    out: dict[str, Any] = {"open_dataset_s": seconds, "read_all_s": {}}
    for workers in args.read_workers:
        start = time.perf_counter()
        total = float(ds.feature.sum().compute(scheduler="processes", num_workers=workers))
        out["read_all_s"][str(workers)] = time.perf_counter() - start
        assert np.isfinite(total)
    with dask.config.set(scheduler="synchronous"):
        first = int(ds.num_points.values[0])
        np.testing.assert_array_equal(ds.logits[:first].values, CacheReader(path).read_all(str(ds.sample.values[0]), 0)[0])
    return out


def store_scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """(b): both schemas at `args.samples` tiny samples."""
    spec = make_spec(args.classes, args.feature_dim, "/bench")
    two, three, sub = work / "schema2", work / "schema3", work / "subset"
    out: dict[str, Any] = {}
    if not args.schema3_only:
        out["schema2"] = {"build": build_schema2(args, two, spec)}
        out["schema2"].update({**tree_stats(two), **measure(two, spec, args, 2)})
        n_sub = out["subset_samples"] = min(args.subset_samples, args.samples)
        subset_store(two, sub, n_sub)
        out["schema2"]["datatree_s"] = datatree_open(sub, False) * args.samples / n_sub
    out["schema3"] = {"build": build_schema3(args, three, spec)}
    out["schema3"].update({**tree_stats(three), **measure(three, spec, args, 3)})
    out["schema3"]["datatree_s"] = datatree_open(three, False)
    out["schema3"]["datatree_consolidated_s"] = datatree_open(three.with_name("schema3_consolidated"), True)
    out["schema3"]["one_sequence_xarray_s"] = best_of(lambda: xarray_sequence(three), args.repeats)[0]
    out["schema3"].update(whole_dataset(three, args))
    return out


def nuscenes_projection(a: dict[str, Any]) -> dict[str, Any]:
    """Size and single-writer time of a nuScenes-train cache (one view, default codec, schema 3)."""
    rates = a[f"{CodecSpec().name}_schema3"]
    out = {}
    for sweeps, points in ((1, 35_000), (10, 300_000)):
        total = NUSCENES_TRAIN_SAMPLES * points
        out[f"{sweeps}_sweep"] = {
            "points": total, "bytes": total * rates["bytes_per_point"],
            "writer_hours_one_process": total / rates["write_points_per_s"] / 3600,
        }  # fmt: skip
    return out


def print_tables(result: dict[str, Any]) -> None:
    a = result["outdoor"]
    print(f"\n(a) outdoor-sized samples: {a['samples']} x {a['points_per_sample']:,} points, K={a['classes']}, "
          f"D={a['feature_dim']}, one view (encoding included)")  # fmt: skip
    print("| codec, schema | bytes/point | write s/sample | points/s per process | files |")
    print("|---|---:|---:|---:|---:|")
    for key, row in a.items():
        if isinstance(row, dict):
            print(f"| {key} | {row['bytes_per_point']:.1f} | {row['write_s_per_sample']:.3f} | "
                  f"{row['write_points_per_s']:,.0f} | {row['files']} |")  # fmt: skip
    for name, p in result["nuscenes_projection"].items():
        print(f"  nuScenes train, {name}: {p['points']:.2e} points, {p['bytes'] / 1e9:,.0f} GB, "
              f"{p['writer_hours_one_process']:.1f} h of writer time in one process")  # fmt: skip
    b = result["store"]
    print(f"\n(b) {result['args']['samples']:,} samples of {result['args']['tiny_points']} points, one view, "
          "default codec")  # fmt: skip
    cols = ["files", "metadata_bytes", "disk_bytes", "open_s", "list_s", "one_sample_s", "resume_check_s", "datatree_s"]
    print("| schema | writer s/sample | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for layout in [name for name in ("schema2", "schema3") if name in b]:
        row = b[layout]
        cells = [f"{row[c]:,}" if isinstance(row.get(c), int) else (f"{row[c]:.4g}" if c in row else "") for c in cols]
        print(f"| {layout} | {row['build']['writer_s_per_tiny_sample']:.4f} | " + " | ".join(cells) + " |")
    s3 = b["schema3"]
    print(f"schema 3: open_datatree with consolidated metadata {s3['datatree_consolidated_s']:.2f} s "
          f"(consolidating once: {s3['build']['consolidate_s']:.2f} s); one sequence as an xarray Dataset "
          f"{s3['one_sequence_xarray_s']:.3f} s; the whole cache as one Dataset (srkd.cache.dataset) "
          f"{s3['open_dataset_s']:.2f} s; a dask read of every sample, by worker processes: "
          f"{', '.join(f'{w}: {t:.1f} s' for w, t in s3['read_all_s'].items())}.")  # fmt: skip
    if "schema2" in b:
        print(f"schema 2: datatree_s scaled from {b['subset_samples']} samples; {b['schema2']['resume_check_note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=30000, help="tiny samples in the store test")
    parser.add_argument("--tiny-points", type=int, default=64)
    parser.add_argument("--per-sequence", type=int, default=40, help="samples per sequence, schema 3")
    parser.add_argument("--write-probe", type=int, default=200, help="tiny samples written by CacheWriter, schema 2")
    parser.add_argument("--damage-samples", type=int, default=500)
    parser.add_argument("--subset-samples", type=int, default=1000,
                        help="samples of the schema-2 copy on which open_datatree is timed")
    parser.add_argument("--build-samples", type=int, default=6, help="outdoor-sized samples written")
    parser.add_argument("--points", type=int, default=35000, help="points per outdoor-sized sample")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--schema3-only", action="store_true",
                        help="(b) for schema 3 alone (no 360,000-file schema-2 tree writing to disk meanwhile)")
    parser.add_argument("--read-workers", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2],
                        help="worker processes of the whole-cache dask read, e.g. 1,2")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir, deleted)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "srkd_bench" / "cache_scale.json")
    args = parser.parse_args()
    if min(args.samples, args.tiny_points, args.per_sequence, args.build_samples, args.points, args.repeats) < 1:
        parser.error("counts must be >= 1")
    work = Path(tempfile.mkdtemp(prefix="cache_scale_", dir=args.workdir))
    try:
        outdoor = build_throughput(args, work)
        result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                  "outdoor": outdoor, "nuscenes_projection": nuscenes_projection(outdoor),
                  "store": store_scale(args, work)}  # fmt: skip
    finally:  # deleting 360k files takes minutes: in the background, after the report
        print(f"deleting {work} in the background", flush=True)
        subprocess.Popen(["rm", "-rf", str(work)], start_new_session=True)
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
