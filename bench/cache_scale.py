"""The teacher cache at nuScenes scale (about 28k training samples of about 35k points, 300k with
10 sweeps): what a sample costs and what 30k samples cost the store.

    python bench/cache_scale.py                                   # 30,000 samples (a few minutes)
    python bench/cache_scale.py --samples 3000 --out /tmp/cache_scale_small.json

(a) Bytes per point and writer throughput: `--build-samples` outdoor-sized samples (`--points`,
    16 classes, 64-d features) through the real `CacheWriter` and int8 codec. The outputs are
    synthetic but shaped like a lidar teacher's: points in scan order (ring by ring), labels in
    runs along each ring with a skewed class frequency (ground classes on low rings, long runs;
    objects short), features a leaky-ReLU of a class embedding plus a smooth field along the
    scan plus noise, logits a linear head of the feature plus a class margin.
(b) `--samples` tiny samples (`--tiny-points` points, one view) in three layouts:
    - `current`: one group per sample (the cache as srkd writes it today);
    - `current+consolidated`: the same store after `zarr.consolidate_metadata` (all metadata in
      the root zarr.json);
    - `packed`: samples of one sequence (`--per-sequence`, nuScenes has ~40 keyframes per scene)
      concatenated in one group per sequence, rows found through a `sample_offsets` array.
    For each: files, metadata bytes, disk use, and the time to open the root (the fingerprint
    check), list the committed samples, open and decode one sample, and run the resume
    completeness check (`scene_damage`, on `--damage-samples` and scaled linearly).
    The current store is built by writing `--write-probe` samples through `CacheWriter` (timed:
    the writer's per-sample overhead) and giving the other names hard links to one sample's
    files (the same paths, sizes and metadata; only the build is faster).

Times are wall seconds on a warm page cache (files just written), best of `--repeats`.
Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
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
from srkd.cache.codecs import make_codec
from srkd.cache.schema import COMMITTED, committed_scene_ids, scene_damage, write_entry

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


def make_spec(k: int, d: int, root: str) -> CacheSpec:
    return CacheSpec(
        dataset="nuscenes-like", data_root=root, split="train", class_names=tuple(f"c{i}" for i in range(k)),
        teacher_name="bench", teacher_args={}, teacher_sha256="0" * 64, feature_dim=d,
        codec=CodecSpec.create("int8"), views=1, ensemble=False,
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
    """(a): write `build_samples` outdoor-sized samples through CacheWriter; time and size them."""
    rng = np.random.default_rng(0)
    spec = make_spec(args.classes, args.feature_dim, "/bench")
    writer = CacheWriter.create(work / "outdoor", spec)
    codec = make_codec(spec.codec)
    write_s = encode_s = 0.0
    for i in range(args.build_samples):
        logits, feature = lidar_like(args.points, args.classes, args.feature_dim, rng)
        start = time.perf_counter()
        codec.encode(logits, feature)
        encode_s += time.perf_counter() - start
        start = time.perf_counter()
        writer.write_scene(f"sample_{i:06d}", [ViewTargets(logits, feature, {"view": 0})])
        write_s += time.perf_counter() - start
    stats = tree_stats(work / "outdoor")
    points = args.points * args.build_samples
    return {
        "samples": args.build_samples, "points_per_sample": args.points, "classes": args.classes,
        "feature_dim": args.feature_dim, "bytes_per_point": (stats["data_bytes"] + stats["metadata_bytes"]) / points,
        "chunk_bytes_per_point": stats["data_bytes"] / points, "write_s_per_sample": write_s / args.build_samples,
        "encode_s_per_sample": encode_s / args.build_samples, "write_points_per_s": points / write_s,
        "files_per_sample": stats["files"] / args.build_samples,
    }  # fmt: skip


def build_current(args: argparse.Namespace, path: Path, spec: CacheSpec) -> dict[str, float]:
    """The current layout: `write_probe` samples through the writer, the rest copied."""
    rng = np.random.default_rng(1)
    writer = CacheWriter.create(path, spec)
    start = time.perf_counter()
    probe = min(args.write_probe, args.samples)
    for i in range(probe):
        logits, feature = lidar_like(args.tiny_points, args.classes, args.feature_dim, rng)
        writer.write_scene(f"sample_{i:06d}", [ViewTargets(logits, feature, {"view": 0})])
    per_sample = (time.perf_counter() - start) / max(probe, 1)
    start = time.perf_counter()
    clone(path / "sample_000000", [path / f"sample_{i:06d}" for i in range(probe, args.samples)])
    return {"writer_s_per_tiny_sample": per_sample, "copy_s": time.perf_counter() - start}


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


def build_packed(args: argparse.Namespace, path: Path, spec: CacheSpec) -> None:
    """The packed alternative: one group per sequence, samples' rows concatenated (each encoded
    by the real codec, whose int8 encoding is per row), plus `sample_offsets` (S + 1,) int64."""
    codec = make_codec(spec.codec)
    rng = np.random.default_rng(1)
    logits, feature = lidar_like(args.tiny_points, args.classes, args.feature_dim, rng)
    one = codec.encode(logits, feature)
    root = zarr.open_group(path, mode="w")
    root.update_attributes(dict(zarr.open_group(path.parent / "current", mode="r").attrs))
    for seq_start in range(0, args.samples, args.per_sequence):
        ids = [f"sample_{i:06d}" for i in range(seq_start, min(seq_start + args.per_sequence, args.samples))]
        rows = np.arange(len(ids) + 1, dtype=np.int64) * args.tiny_points
        group = root.create_group(f"seq_{seq_start // args.per_sequence:05d}", attributes={
            "samples": ids, "num_points": int(rows[-1]), COMMITTED: False})  # fmt: skip
        stacked = type(one)({k: np.concatenate([v] * len(ids)) for k, v in one.point.items()}, {})
        write_entry(group, "view_0", codec, stacked)
        group.create_array("sample_offsets", data=rows, dimension_names=("sample_edge",))
        group.update_attributes({COMMITTED: True})


def read_sample(root: zarr.Group, group: str, codec: Any, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Decode rows of `<group>/view_0` (logits (M, K), feature (M, D) float32)."""
    entry = root[f"{group}/view_0"]
    point = {name: arr[rows] for name, arr in entry.arrays()}
    return codec.decode(point, {})


def measure_current(path: Path, spec: CacheSpec, args: argparse.Namespace, consolidated: bool) -> dict[str, Any]:
    """Open (+ fingerprint check), list committed samples, open and decode one sample."""
    codec, sid = make_codec(spec.codec), f"sample_{args.samples // 2:06d}"

    def open_root() -> zarr.Group:
        root = zarr.open_group(path, mode="r", use_consolidated=consolidated)
        assert root.attrs["srkd_cache"]["fingerprint"] == spec.fingerprint()
        return root

    def list_committed() -> int:
        root = open_root()
        if consolidated:  # srkd's loop over root[name].attrs, answered from the consolidated document
            return sum(1 for _, g in root.groups() if g.attrs.get(COMMITTED) is True)
        return len(committed_scene_ids(root))

    out: dict[str, Any] = {"open_s": best_of(open_root, args.repeats)[0]}
    out["list_s"], count = best_of(list_committed, args.repeats)
    assert count == args.samples, (count, args.samples)
    out["one_sample_s"] = best_of(lambda: read_sample(open_root(), sid, codec), args.repeats)[0]
    if not consolidated:
        out["srkd_reader_open_s"] = best_of(lambda: CacheReader(path, expect=spec), args.repeats)[0]
        out["srkd_reader_one_sample_s"] = best_of(lambda: CacheReader(path).read_all(sid, 0), args.repeats)[0]
        probe = [f"sample_{i:06d}" for i in range(min(args.damage_samples, args.samples))]
        root = zarr.open_group(path, mode="r", use_consolidated=False)
        start = time.perf_counter()
        for s in probe:
            assert not scene_damage(root, s, spec, codec)
        out["resume_check_s"] = (time.perf_counter() - start) * args.samples / len(probe)
        out["resume_check_note"] = f"scene_damage on {len(probe)} samples, one thread, scaled to {args.samples}"
    return out


def measure_packed(path: Path, spec: CacheSpec, args: argparse.Namespace) -> dict[str, Any]:
    codec, target = make_codec(spec.codec), args.samples // 2

    def open_root() -> zarr.Group:
        root = zarr.open_group(path, mode="r", use_consolidated=False)
        assert root.attrs["srkd_cache"]["fingerprint"] == spec.fingerprint()
        return root

    def list_committed() -> dict[str, tuple[str, int]]:
        index = {}
        for name, group in open_root().groups():
            if group.attrs.get(COMMITTED) is True:
                index.update({s: (name, j) for j, s in enumerate(group.attrs["samples"])})
        return index

    out: dict[str, Any] = {"open_s": best_of(open_root, args.repeats)[0]}
    out["list_s"], index = best_of(list_committed, args.repeats)
    assert len(index) == args.samples
    seq, j = index[f"sample_{target:06d}"]

    def one() -> tuple[np.ndarray, np.ndarray]:
        root = open_root()
        edges = root[f"{seq}/sample_offsets"][j : j + 2]
        return read_sample(root, seq, codec, slice(int(edges[0]), int(edges[1])))

    out["one_sample_s"] = best_of(one, args.repeats)[0]
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


def store_scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """(b): the three layouts at `args.samples` tiny samples. Consolidated metadata and
    xarray's open_datatree are measured on the first `--subset-samples` (a copy) and scaled
    linearly: consolidating and parsing 30k samples' metadata alone takes longer than the bench."""
    spec = make_spec(args.classes, args.feature_dim, "/bench")
    current, packed, sub = work / "current", work / "packed", work / "subset"
    out: dict[str, Any] = {"build": build_current(args, current, spec)}
    n_sub = out["subset_samples"] = min(args.subset_samples, args.samples)
    scale = args.samples / n_sub
    subset_store(current, sub, n_sub)
    out["current"] = {**tree_stats(current), **measure_current(current, spec, args, consolidated=False)}
    out["current"]["datatree_s"] = datatree_open(sub, False) * scale
    start = time.perf_counter()
    zarr.consolidate_metadata(sub)
    cons = {"consolidate_s": (time.perf_counter() - start) * scale, **tree_stats(current)}
    cons["root_metadata_bytes"] = int((sub / "zarr.json").stat().st_size * scale)
    cons["metadata_bytes"] += cons["root_metadata_bytes"]
    cons["disk_bytes"] += cons["root_metadata_bytes"]
    sub_args = argparse.Namespace(**{**vars(args), "samples": n_sub})
    cons.update({k: v * scale for k, v in measure_current(sub, spec, sub_args, consolidated=True).items()})
    cons["datatree_s"] = datatree_open(sub, True) * scale
    out["current+consolidated"] = cons
    start = time.perf_counter()
    build_packed(args, packed, spec)
    out["packed"] = {"build_s": time.perf_counter() - start, **tree_stats(packed), **measure_packed(packed, spec, args)}
    out["packed"]["datatree_s"] = datatree_open(packed, False)
    return out


def nuscenes_projection(a: dict[str, Any]) -> dict[str, Any]:
    """Size and single-writer time of a nuScenes-train cache (one view) from the measured rates."""
    out = {}
    for sweeps, points in ((1, 35_000), (10, 300_000)):
        total = NUSCENES_TRAIN_SAMPLES * points
        out[f"{sweeps}_sweep"] = {
            "points": total, "bytes": total * a["bytes_per_point"],
            "writer_hours_one_process": total / a["write_points_per_s"] / 3600,
        }  # fmt: skip
    return out


def print_tables(result: dict[str, Any]) -> None:
    a = result["outdoor"]
    print(f"\n(a) outdoor-sized samples: {a['samples']} x {a['points_per_sample']:,} points, K={a['classes']}, "
          f"D={a['feature_dim']}, int8 codec, one view")  # fmt: skip
    print(f"  bytes/point {a['bytes_per_point']:.1f} (chunks {a['chunk_bytes_per_point']:.1f}); "
          f"write {a['write_s_per_sample']:.3f} s/sample (encode {a['encode_s_per_sample']:.3f}); "
          f"{a['write_points_per_s']:,.0f} points/s; {a['files_per_sample']:.0f} files/sample")  # fmt: skip
    for name, p in result["nuscenes_projection"].items():
        print(f"  nuScenes train, {name}: {p['points']:.2e} points, {p['bytes'] / 1e9:,.0f} GB, "
              f"{p['writer_hours_one_process']:.1f} h of writer time in one process")  # fmt: skip
    b = result["store"]
    print(f"\n(b) {result['args']['samples']:,} samples of {result['args']['tiny_points']} points "
          f"(writer: {b['build']['writer_s_per_tiny_sample'] * 1e3:.1f} ms per tiny sample)")  # fmt: skip
    cols = ["files", "metadata_bytes", "disk_bytes", "open_s", "list_s", "one_sample_s", "datatree_s"]
    print("| layout | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for layout in ("current", "current+consolidated", "packed"):
        row = b[layout]
        cells = [f"{row[c]:,}" if isinstance(row.get(c), int) else
                 (f"{row[c]:.4g}" if c in row else "") for c in cols]  # fmt: skip
        print(f"| {layout} | " + " | ".join(cells) + " |")
    cur = b["current"]
    print(f"current: srkd CacheReader open+fingerprint {cur['srkd_reader_open_s']:.4f} s, one sample "
          f"{cur['srkd_reader_one_sample_s']:.4f} s, resume check {cur['resume_check_s']:.1f} s ({cur['resume_check_note']})")
    cons = b["current+consolidated"]
    print(f"consolidated: consolidate {cons['consolidate_s']:.1f} s, root zarr.json {cons['root_metadata_bytes']:,} bytes; "
          f"consolidated times and every datatree_s scaled linearly from {b['subset_samples']} samples")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=30000, help="tiny samples in the store test")
    parser.add_argument("--tiny-points", type=int, default=64)
    parser.add_argument("--per-sequence", type=int, default=40, help="samples per group, packed layout")
    parser.add_argument("--write-probe", type=int, default=200, help="tiny samples written by CacheWriter")
    parser.add_argument("--damage-samples", type=int, default=500)
    parser.add_argument("--subset-samples", type=int, default=1000,
                        help="samples of the copy on which consolidation and open_datatree are timed")
    parser.add_argument("--build-samples", type=int, default=6, help="outdoor-sized samples written")
    parser.add_argument("--points", type=int, default=35000, help="points per outdoor-sized sample")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
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
