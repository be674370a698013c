"""A synthetic outdoor dataset on disk: simulated drives (srkd.data.synthetic.lidar) written in
the nuScenes-lidarseg or the SemanticKITTI release format by srkd.data.outdoor.writers, so the
same readers load it as a downloaded release.

Splits: the root's split file (srkd.data.sources.SPLITS_FILE) says which scenes / sequences
form "train" and "val", so `--split train` / `--split val` read them with no options.

nuScenes form (`fmt="nuscenes"`): metadata version "v1.0-synthetic", scenes named synth-0000,
synth-0001, ... (the last `n_val` are the val split). Each scene holds
`keyframes` annotated LIDAR_TOP keyframes 0.5 s apart (nuScenes' 2 Hz) and, with `sweeps` > 0,
that many unlabelled sweeps 0.05 s apart (20 Hz) before each keyframe, for multi-sweep reading.
The lidar sits 0.94 m ahead of and 1.84 m above the ego frame's origin (calibrated_sensor).

SemanticKITTI form (`fmt="semantickitti"`): train scenes go to sequence 00, val scenes to
sequence 08 (the official val sequence), one after the other; keyframes are the frames. Raw nuScenes ids
become raw SemanticKITTI ids (NUSCENES_TO_KITTI_RAW; thin man-made cylinders are poles, vegetation
cylinders trunks), remission = intensity / 255. Poses are continuous only within one scene.

`<out>/synthetic.json` records the generator and its settings; it is written last, so a root
without it was not completed (the writers also mark the root unfinished while they write).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srkd.data.outdoor.formats import write_json
from srkd.data.outdoor.writers import (
    LidarScan,
    NuScenesScene,
    write_nuscenes,
    write_semantickitti,
)
from srkd.data.sources import SPLITS_FILE
from srkd.data.synthetic.config import KEYFRAMES, SWEEPS
from srkd.data.synthetic.lidar import LidarConfig, SimulatedScan, make_scene
from srkd.data.synthetic.lidar_world import (
    BARRIER,
    BUS,
    CAR,
    DRIVEABLE,
    MANMADE,
    NOISE,
    PEDESTRIAN,
    SIDEWALK,
    TERRAIN,
    TRAFFIC_CONE,
    TRUCK,
    VEGETATION,
)
from srkd.errors import ConfigError

GENERATOR = "srkd.data.synthetic_lidar"
GENERATOR_VERSION = 1
"""Bumped whenever the same settings would give different files."""
MANIFEST = "synthetic.json"
FORMATS: tuple[str, ...] = ("nuscenes", "semantickitti")
NUSCENES_VERSION = "v1.0-synthetic"
LIDAR_TO_EGO = np.array(((1.0, 0, 0, 0.94), (0, 1.0, 0, 0), (0, 0, 1.0, 1.84), (0, 0, 0, 1.0)))
"""The simulated LIDAR_TOP's calibrated_sensor transform (lidar -> ego)."""

NUSCENES_TO_KITTI_RAW: dict[int, int] = {
    NOISE: 1, PEDESTRIAN: 30, BARRIER: 51, TRAFFIC_CONE: 99, BUS: 13, CAR: 10, TRUCK: 18,
    DRIVEABLE: 40, SIDEWALK: 48, TERRAIN: 72, MANMADE: 50, VEGETATION: 70,
}  # fmt: skip
"""Raw nuScenes id -> raw SemanticKITTI id (outlier, person, fence, other-object, bus, car, truck,
road, sidewalk, terrain, building, vegetation); poles and trunks by `kitti_raw_labels`."""


def kitti_raw_labels(scan: SimulatedScan) -> np.ndarray:
    """int64 (N,) raw SemanticKITTI ids of a simulated scan (cylinders: pole 80, trunk 71)."""
    table = np.zeros(256, dtype=np.int64)
    for raw, kitti in NUSCENES_TO_KITTI_RAW.items():
        table[raw] = kitti
    out = table[scan.raw_label]
    cyl = scan.part == 2
    out[cyl & (scan.raw_label == MANMADE)] = 80
    out[cyl & (scan.raw_label == VEGETATION)] = 71
    return out


def scene_names(scenes: int) -> list[str]:
    """nuScenes scene names of the synthetic scenes: synth-0000, synth-0001, ..."""
    return [f"synth-{i:04d}" for i in range(scenes)]


def _drive(seed: int, index: int, keyframes: int, sweeps: int, lidar: LidarConfig,
           labels: bool = True) -> list[tuple[SimulatedScan, bool]]:
    """(scan, is keyframe) in time order for one scene."""
    scene = make_scene(seed, index, lidar)
    out = []
    for k in range(keyframes):
        t_key = 0.5 * k + 0.05 * sweeps  # the first keyframe has its sweeps before it
        for j in range(sweeps, 0, -1):
            out.append((scene.scan_at(t_key - 0.05 * j), False))
        out.append((scene.scan_at(t_key), True))
    return out


def _check(scenes: int, keyframes: int, sweeps: int, fmt: str, n_train: int) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown outdoor format {fmt!r}; known: {', '.join(FORMATS)}")
    if scenes < 1 or keyframes < 1 or sweeps < 0:
        raise ConfigError(f"need scenes >= 1, keyframes >= 1, sweeps >= 0; got {scenes}, "
                          f"{keyframes}, {sweeps}")  # fmt: skip
    if n_train < 1:
        raise ConfigError(f"need at least one train scene, got {scenes} scenes with {scenes - n_train} for val")


def generate_outdoor_dataset(
    out: Path, scenes: int, seed: int, n_val: int, *, fmt: str = "nuscenes",
    keyframes: int = KEYFRAMES, sweeps: int = SWEEPS, lidar: LidarConfig | None = None,
) -> dict[str, int]:
    """Simulate `scenes` drives (the last `n_val` for val) and write them under `out`.

    Returns {"train": keyframes written, "val": ..., "points": total keyframe points}.
    Raises ConfigError for bad settings or a non-empty `out` that holds no synthetic dataset.
    """
    out = Path(out)
    lidar = lidar or LidarConfig()
    n_train = scenes - n_val
    _check(scenes, keyframes, sweeps, fmt, n_train)
    _check_out(out)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / SPLITS_FILE).unlink(missing_ok=True)
    drives = [_drive(seed, i, keyframes, sweeps if fmt == "nuscenes" else 0, lidar)
              for i in range(scenes)]  # fmt: skip
    points = sum(len(s.points) for d in drives for s, key in d if key)
    if fmt == "nuscenes":
        _write_nuscenes(out, drives)
        names = scene_names(scenes)
        splits = {"train": {"version": NUSCENES_VERSION, "scenes": names[:n_train]},
                  "val": {"version": NUSCENES_VERSION, "scenes": names[n_train:]}}  # fmt: skip
    else:
        _write_kitti(out, drives, n_train)
        splits = {"train": {"sequences": ["00"]}, "val": {"sequences": ["08"]}}
    if not n_val:
        del splits["val"]
    write_json(out / SPLITS_FILE, splits)
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "format": fmt, "seed": seed,
                "scenes": scenes, "val_scenes": n_val, "keyframes": keyframes, "sweeps": sweeps,
                "lidar": {k: getattr(lidar, k) for k in lidar.__dataclass_fields__}}  # fmt: skip
    write_json(out / MANIFEST, json.loads(json.dumps(manifest)))
    return {"train": n_train * keyframes, "val": n_val * keyframes, "points": int(points)}


def _check_out(out: Path) -> None:
    """ConfigError unless `out` is new, empty, or an earlier synthetic outdoor dataset."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    fix = "choose a new or empty folder (writing there would mix two datasets)"
    try:
        generator = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("generator")
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"--out {out} is a non-empty folder without a readable {MANIFEST}; {fix}") from None
    if generator != GENERATOR:
        raise ConfigError(f"--out {out} holds a dataset of another generator ({generator!r}); {fix}")


def _write_nuscenes(out: Path, drives: list) -> None:  # type: ignore[type-arg]
    names = scene_names(len(drives))
    ego_of = np.linalg.inv(LIDAR_TO_EGO)
    scenes = [
        NuScenesScene(name, [
            LidarScan(s.points, s.intensity, s.raw_label if key else None, pose=s.pose @ ego_of,
                      timestamp=1_500_000_000_000_000 + 10**9 * i + s.timestamp, is_key_frame=key)
            for s, key in drive
        ], lidar_to_ego=LIDAR_TO_EGO)
        for i, (name, drive) in enumerate(zip(names, drives))
    ]
    write_nuscenes(out, scenes, version=NUSCENES_VERSION)


def _write_kitti(out: Path, drives: list, n_train: int) -> None:  # type: ignore[type-arg]
    sequences: dict[str, list] = {}  # type: ignore[type-arg]
    for i, drive in enumerate(drives):
        seq = "00" if i < n_train else "08"
        first = drive[0][0].pose
        sequences.setdefault(seq, []).extend(
            LidarScan(s.points, s.intensity / 255.0, kitti_raw_labels(s),
                      pose=np.linalg.inv(first) @ s.pose)
            for s, _ in drive
        )  # fmt: skip
    write_semantickitti(out, sequences)
