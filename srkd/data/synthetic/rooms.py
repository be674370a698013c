"""A synthetic ScanNet-format dataset: procedural furnished rooms as labelled point clouds.

`generate_scene(seed, index, n_points)` builds scene `index` of dataset `seed`: a room with
floor, walls, doors, windows, curtains, pictures and furniture groups (room.py,
groups.py, furniture.py, fixtures.py; labels and colour palettes in
materials.py), sampled as points on analytic surfaces (geometry.py), then
passed through a simulated scanner:

- hidden surfaces removed (under and behind furniture, behind curtains);
- density falls off with distance from 1-2 scan positions, and a few holes are cut out;
- per-scene lighting: gain, white balance, a shading term on the normal, a point light;
- sensor noise: position jitter (2-8 mm), colour noise, slight normal noise;
- a few stray points (label -1) floating in the room.

Scene i draws from `np.random.default_rng([seed, i])` only, so scenes can be generated in any
order or in parallel with identical results. `generate_dataset` writes the scenes in the
Pointcept ScanNet layout (see srkd.data.scannet.layout) with a train/val split; a run that fails part-way
leaves its folder marked unfinished, never a `synthetic.json` claiming scenes that are missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from srkd.data.scannet.layout import UNFINISHED, write_scene
from srkd.data.synthetic.config import INDOOR_SCENES, ROOM_POINTS, VAL_FRACTION
from srkd.data.synthetic.geometry import (
    SampledPoints,
    Surfaces,
    hidden_mask,
    sample_surfaces,
    shade,
)
from srkd.data.synthetic.materials import Ctx
from srkd.data.synthetic.room import build_room
from srkd.errors import ConfigError, DataError
from srkd.io import atomic_write_json
from srkd.types import IGNORE_INDEX

GENERATOR_VERSION = 1
"""Bumped whenever the same (seed, index, n_points) would give different arrays."""
MANIFEST = "synthetic.json"
"""File at the dataset root recording how it was generated."""
MIN_POINTS = 1000
STRAY_FRACTION = 0.002


def scene_id(index: int) -> str:
    """Scene folder name of scene `index`: 'synthetic_0000', 'synthetic_0001', ..."""
    return f"synthetic_{index:04d}"


def generate_scene(seed: int, index: int, n_points: int = ROOM_POINTS) -> dict[str, np.ndarray]:
    """Build scene `index` of the dataset with seed `seed`.

    Args:
        seed: dataset seed, >= 0.
        index: scene index, >= 0.
        n_points: exact number of points N (>= 1000).
    Returns:
        Layout arrays: coord float32 (N, 3) metres, floor at z = 0; color uint8 (N, 3);
        normal float32 (N, 3) unit; segment20 int64 (N,) in [0, 20) or -1; instance int64 (N,)
        (-1 for stray points).
    """
    _check_int("seed", seed, 0)
    _check_int("index", index, 0)
    _check_int("points", n_points, MIN_POINTS)
    rng = np.random.default_rng([seed, index])
    ctx = Ctx(rng)
    room = build_room(ctx, theme=index)
    surf = room.surf
    dims = np.array([room.width, room.length, room.height])
    n_stray = int(round(n_points * STRAY_FRACTION))
    n_main = n_points - n_stray

    pts = _scan(surf, dims, n_main, rng, scene_id(index))
    coord, normal, prim = pts.coord, pts.normal, pts.prim
    colour = _lit_colours(shade(surf, pts), pts, dims, rng)

    coord = coord + rng.normal(0, rng.uniform(0.002, 0.008), coord.shape)
    normal = normal + rng.normal(0, rng.uniform(0.0, 0.08), normal.shape)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    label = np.asarray(surf.label, dtype=np.int64)[prim]
    instance = np.asarray(surf.instance, dtype=np.int64)[prim]

    # stray points: floating noise with no label and no instance
    stray_n = rng.normal(0, 1, (n_stray, 3))
    coord = np.concatenate([coord, rng.uniform(0, 1, (n_stray, 3)) * dims])
    colour = np.concatenate(
        [colour, rng.uniform(40, 220, (n_stray, 1)) + rng.normal(0, 15, (n_stray, 3))]
    )
    normal = np.concatenate([normal, stray_n / np.linalg.norm(stray_n, axis=1, keepdims=True)])
    label = np.concatenate([label, np.full(n_stray, IGNORE_INDEX, np.int64)])
    instance = np.concatenate([instance, np.full(n_stray, -1, np.int64)])

    order = rng.permutation(n_points)  # no spatial or per-object order in the files
    return {
        "coord": coord[order].astype(np.float32),
        "color": np.clip(np.rint(colour[order]), 0, 255).astype(np.uint8),
        "normal": normal[order].astype(np.float32),
        "segment20": label[order],
        "instance": instance[order],
    }


def _scan(
    surf: Surfaces, dims: np.ndarray, n: int, rng: np.random.Generator, name: str
) -> SampledPoints:
    """Exactly `n` points a scanner would see: hidden surfaces removed, density falling off with
    distance from 1-2 scan positions at head height, and 0-3 ball-shaped holes (scanning gaps)."""
    sensors = np.column_stack(
        [rng.uniform(0.25, 0.75, (2, 2)) * dims[:2], rng.uniform(1.2, 1.7, 2)]
    )
    sensors = sensors[: int(rng.integers(1, 3))]
    reach = rng.uniform(2.5, 4.5)
    holes = None
    parts: list[SampledPoints] = []
    have = 0
    for _ in range(20):  # each round keeps about half of what it draws: usually one is enough
        pts = sample_surfaces(surf, int(n * 2.2) + 1000, rng)
        if holes is None:
            centres = pts.coord[rng.integers(len(pts.coord), size=int(rng.integers(0, 4)))]
            holes = (centres, rng.uniform(0.15, 0.45, len(centres)))
        dist = np.min(np.linalg.norm(pts.coord[:, None] - sensors[None], axis=2), axis=1)
        keep = rng.random(len(dist)) < 0.35 + 0.65 * np.exp(-((dist / reach) ** 2))
        for c, r in zip(*holes):
            keep &= np.linalg.norm(pts.coord - c, axis=1) > r
        pts = _subset(pts, np.flatnonzero(keep))
        pts = _subset(pts, np.flatnonzero(~hidden_mask(surf, pts)))
        parts.append(pts)
        have += len(pts.prim)
        if have >= n:
            break
    else:  # pragma: no cover - the room would have to be almost entirely hidden
        raise DataError(f"scene {name}: could not sample {n} visible points")
    merged = SampledPoints(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))
    return _subset(merged, rng.choice(have, n, replace=False))


_FIELDS = ("coord", "normal", "prim", "st")


def _subset(pts: SampledPoints, idx: np.ndarray) -> SampledPoints:
    return SampledPoints(*(getattr(pts, f)[idx] for f in _FIELDS))


def _lit_colours(
    base: np.ndarray, pts: SampledPoints, dims: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """float64 (N, 3): material colours under the scene's light (gain and white balance, a
    directional term on the normal, a ceiling lamp) plus sensor colour noise; not yet clipped."""
    light_dir = rng.normal(0, 1, 3)
    light_dir[2] = abs(light_dir[2]) + 0.5
    light_dir /= np.linalg.norm(light_dir)
    ambient = rng.uniform(0.55, 0.85)
    lamp = np.append(rng.uniform(0.2, 0.8, 2) * dims[:2], dims[2] - 0.1)
    lamp_d = np.linalg.norm(pts.coord - lamp, axis=1)
    light = ambient + (1 - ambient) * np.clip(pts.normal @ light_dir, 0, 1)
    light *= 0.8 + 0.35 / (1 + (lamp_d / rng.uniform(1.5, 3.0)) ** 2)
    gain = rng.uniform(0.7, 1.15) * (1 + rng.normal(0, 0.05, 3))
    return base * light[:, None] * gain + rng.normal(0, rng.uniform(3, 10), base.shape)


def split_sizes(scenes: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) scene counts: val = round(scenes * val_fraction), at least 1 when the fraction
    is positive, and at least one training scene. Scenes 0..train-1 go to train, the rest to val."""
    _check_int("scenes", scenes, 1)
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= val_fraction < 1.0):
        raise ConfigError(f"val fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(round(scenes * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if scenes - n_val < 1:
        raise ConfigError(
            f"{scenes} scene(s) with val fraction {val_fraction} leave no training scene; "
            "generate more scenes or lower the val fraction"
        )
    return scenes - n_val, n_val


def _write_one(out: Path, split: str, seed: int, index: int, n_points: int) -> Path:
    return write_scene(out, split, scene_id(index), generate_scene(seed, index, n_points))


def generate_dataset(
    out: Path,
    scenes: int = INDOOR_SCENES,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    n_points: int = ROOM_POINTS,
    workers: int = 1,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write `scenes` synthetic scenes under `out` in the Pointcept ScanNet layout.

    Scenes 0..train-1 go to `out/train/`, the rest to `out/val/` (see `split_sizes`). A manifest
    `out/synthetic.json` records the parameters; regenerating into the same folder with the same
    parameters rewrites identical files, while a folder holding anything else is refused.

    A failed run never leaves a folder that looks complete. While scenes are written, the manifest
    sits in the root as `layout.UNFINISHED` (unfinished.json), which every reader refuses
    (`srkd.data.scannet.list_scenes`); each scene folder appears whole or not at all
    (`layout.write_scene`); only when every scene is written does one atomic rename turn the
    marker into `synthetic.json`. Re-running with the same parameters finishes (rewrites) an
    unfinished folder. This in-place scheme was chosen over generating into a temporary sibling
    folder and renaming it onto `out`: `out` may already exist (an empty folder made by the user,
    or this very dataset being regenerated), which a folder rename cannot replace atomically.

    Args:
        out: dataset root (created if missing).
        scenes, seed, val_fraction, n_points: see `split_sizes` and `generate_scene`.
        workers: processes to generate with (1 = in this process); the files do not depend on it.
        progress: called with each written scene folder, in completion order.
    Returns:
        The scene folders, in scene-index order.
    Raises:
        ConfigError for bad parameters (before anything is written); DataError for an `out` that
        holds something else. Any error while writing leaves `out` marked unfinished.
    """
    n_train, _ = split_sizes(scenes, val_fraction)
    _check_int("seed", seed, 0)
    _check_int("points", n_points, MIN_POINTS)
    _check_int("workers", workers, 1)
    out = Path(out)
    manifest = {
        "generator": "srkd.data.synthetic",
        "version": GENERATOR_VERSION,
        "scenes": scenes,
        "seed": seed,
        "val_fraction": float(val_fraction),
        "points": n_points,
    }
    _claim(out, manifest)
    jobs = [("train" if i < n_train else "val", i) for i in range(scenes)]
    if workers == 1:
        paths = _write_serial(out, jobs, seed, n_points, progress)
    else:
        paths = _write_parallel(out, jobs, seed, n_points, workers, progress)
    os.replace(out / UNFINISHED, out / MANIFEST)  # the dataset is complete from here on
    return paths


Jobs = list[tuple[str, int]]
"""(split, scene index) of every scene to write."""


def _write_serial(
    out: Path, jobs: Jobs, seed: int, n_points: int, progress: Callable[[Path], None] | None
) -> list[Path]:
    """Write the scenes one after the other in this process; their folders in job order."""
    paths = []
    for split, i in jobs:
        paths.append(_write_one(out, split, seed, i, n_points))
        if progress:
            progress(paths[-1])
    return paths


def _write_parallel(
    out: Path,
    jobs: Jobs,
    seed: int,
    n_points: int,
    workers: int,
    progress: Callable[[Path], None] | None,
) -> list[Path]:
    """Write the scenes in `workers` processes; their folders in job order. The first failure
    cancels the scenes not yet started and is re-raised."""
    paths: list[Path | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(_write_one, out, split, seed, i, n_points): k
            for k, (split, i) in enumerate(jobs)
        }
        try:
            for fut in as_completed(futures):
                paths[futures[fut]] = fut.result()
                if progress:
                    progress(paths[futures[fut]])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [p for p in paths if p is not None]


def _claim(out: Path, manifest: dict) -> None:
    """Refuse an `out` folder that holds something other than this very dataset (finished or
    not); else mark it unfinished: the manifest goes to `out/UNFINISHED` and a previous
    `out/synthetic.json` is removed (in that order, so the root is always recognisable)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"output path {out} exists and is not a folder; choose another --out")
    found = [out / name for name in (MANIFEST, UNFINISHED) if (out / name).is_file()]
    for path in found:
        _check_same(path, manifest, out)
    if not found and out.is_dir() and any(out.iterdir()):
        raise DataError(
            f"{out} is not empty and is not a synthetic dataset (no {MANIFEST}); "
            "choose an empty or new folder for --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / UNFINISHED, manifest)
    (out / MANIFEST).unlink(missing_ok=True)


def _check_same(path: Path, manifest: dict, out: Path) -> None:
    """DataError unless the manifest stored at `path` equals `manifest`."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        msg = f"{path} is unreadable ({exc}); delete {out} or choose another --out"
        raise DataError(msg) from None
    if old != manifest:
        what = "an unfinished" if path.name == UNFINISHED else "a"
        diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
        raise DataError(
            f"{out} holds {what} synthetic dataset generated with other parameters "
            f"(old, new: {diff}); delete it or choose another --out"
        )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
