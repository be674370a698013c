"""Writers of the nuScenes-lidarseg and SemanticKITTI release formats from numpy arrays.

They write the real binary scans, label files and (nuScenes) JSON tables, so that a synthetic or
converted dataset is read by the same readers as a downloaded release. Every file is written
atomically, and the root carries srkd.data.scannet.layout.UNFINISHED until the writer returns, so a
crash never leaves a root that reads as complete. Tokens are deterministic (hashes of the scene
names and positions): writing the same arrays twice gives the same files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srkd.data.outdoor.classes import (
    NUSCENES_RAW_CATEGORIES,
    SEMANTICKITTI_LEARNING_MAP,
)
from srkd.data.outdoor.formats import (
    unfinished_root,
    write_json,
    write_records,
    write_text,
)
from srkd.data.outdoor.nuscenes_tables import LIDAR_CHANNEL
from srkd.errors import ConfigError


@dataclass(frozen=True)
class LidarScan:
    """One lidar scan to write.

    Attributes:
        coord: float (N, 3) points in the lidar's own frame, metres.
        intensity: float (N,): nuScenes intensity in [0, 255], SemanticKITTI remission in [0, 1].
        labels: raw ids (N,) or None: nuScenes lidarseg ids 0..31 (keyframes only),
            SemanticKITTI semantic ids (keys of SEMANTICKITTI_LEARNING_MAP).
        instance: SemanticKITTI instance ids (N,) 0..65535 or None (= 0).
        pose: float (4, 4) rigid transform; nuScenes: ego -> global (ego_pose); SemanticKITTI:
            lidar -> first scan of the sequence (a line of poses.txt). None = identity.
        timestamp: microseconds (nuScenes sample_data / ego_pose timestamp).
        is_key_frame: nuScenes only: an annotated keyframe (a `sample`) or a sweep.
    """

    coord: np.ndarray
    intensity: np.ndarray
    labels: np.ndarray | None = None
    instance: np.ndarray | None = None
    pose: np.ndarray | None = None
    timestamp: int = 0
    is_key_frame: bool = True


@dataclass(frozen=True)
class NuScenesScene:
    """One nuScenes scene to write: scans in time order and the lidar's mounting on the car.

    `lidar_to_ego` is float (4, 4), the calibrated_sensor record of LIDAR_TOP (None = identity).
    """

    name: str
    scans: Sequence[LidarScan]
    lidar_to_ego: np.ndarray | None = None


def token(*parts: object) -> str:
    """A deterministic 32-hex-digit token (the width of nuScenes tokens) for a name path."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def matrix_quaternion(matrix: np.ndarray) -> list[float]:
    """Unit quaternion [w, x, y, z] (w >= 0) of the rotation part of a (4, 4) or (3, 3) matrix.

    Shepperd's method (J. Guidance and Control 1(3), 1978): divide by the largest of
    4w^2, 4x^2, 4y^2, 4z^2 (read off the trace and the diagonal) for numerical stability.
    """
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    t = np.trace(r)
    cands = np.array([t, r[0, 0], r[1, 1], r[2, 2]])
    k = int(np.argmax(cands))
    if k == 0:
        w = np.sqrt(1 + t) / 2
        q = [
            w,
            (r[2, 1] - r[1, 2]) / (4 * w),
            (r[0, 2] - r[2, 0]) / (4 * w),
            (r[1, 0] - r[0, 1]) / (4 * w),
        ]
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        v = np.zeros(3)
        v[i] = np.sqrt(1 + 2 * r[i, i] - t) / 2
        v[j] = (r[j, i] + r[i, j]) / (4 * v[i])
        v[m] = (r[m, i] + r[i, m]) / (4 * v[i])
        q = [(r[m, j] - r[j, m]) / (4 * v[i]), *v]
    q = np.asarray(q)
    return [float(x) for x in (q if q[0] >= 0 else -q)]


def _pose(matrix: np.ndarray | None, what: str) -> np.ndarray:
    m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6):
        raise ConfigError(f"{what}: pose must be a rigid (4, 4) transform, got {m.tolist()}")
    return m


def _check_scan(scan: LidarScan, lo: float, hi: float, what: str) -> None:
    coord, intensity = np.asarray(scan.coord), np.asarray(scan.intensity)
    if (
        coord.ndim != 2
        or coord.shape[1] != 3
        or len(coord) == 0
        or intensity.shape != (len(coord),)
    ):
        raise ConfigError(
            f"{what}: coord must be (N, 3) with N > 0 and intensity (N,), got "
            f"{coord.shape} and {intensity.shape}"
        )
    if not (np.isfinite(coord).all() and (intensity >= lo).all() and (intensity <= hi).all()):
        raise ConfigError(f"{what}: coord must be finite and intensity in [{lo}, {hi}]")
    if scan.labels is not None and np.shape(scan.labels) != (len(coord),):
        raise ConfigError(
            f"{what}: labels must be (N,) = ({len(coord)},), got {np.shape(scan.labels)}"
        )


def _neighbours(tokens: Sequence[str], i: int) -> dict[str, str]:
    """The `prev` / `next` fields of record i of a time-ordered chain ("" at the ends)."""
    return {
        "prev": tokens[i - 1] if i > 0 else "",
        "next": tokens[i + 1] if i + 1 < len(tokens) else "",
    }


def _nuscenes_scan(root: Path, version: str, scene: NuScenesScene, i: int, tables: dict) -> None:
    """Write scan i of a scene (points, labels) and append its sample_data, ego_pose and
    lidarseg records."""
    scan, what = scene.scans[i], f"nuScenes scene {scene.name!r} scan {i}"
    _check_scan(scan, 0.0, 255.0, what)
    sd = token(version, scene.name, "sd", i)
    folder = "samples" if scan.is_key_frame else "sweeps"
    filename = f"{folder}/{LIDAR_CHANNEL}/{scene.name}__{LIDAR_CHANNEL}__{scan.timestamp}.pcd.bin"
    points = np.zeros((len(scan.coord), 5), np.float32)  # ring index (5th column) left 0
    points[:, :3], points[:, 3] = scan.coord, scan.intensity
    write_records(root / filename, points, "<f4")
    if scan.labels is not None:
        raw = np.asarray(scan.labels)
        if not scan.is_key_frame or raw.min() < 0 or raw.max() >= len(NUSCENES_RAW_CATEGORIES):
            raise ConfigError(f"{what}: labels must be raw lidarseg ids 0..31, on keyframes only")
        label_file = f"lidarseg/{version}/{sd}_lidarseg.bin"
        write_records(root / label_file, raw, "<u1")
        tables["lidarseg"].append({"token": sd, "sample_data_token": sd, "filename": label_file})
    pose, stamp = _pose(scan.pose, what), int(scan.timestamp)
    rotation, translation = matrix_quaternion(pose), pose[:3, 3].tolist()
    tables["ego_pose"].append(
        {"token": sd, "timestamp": stamp, "rotation": rotation, "translation": translation}
    )
    keys = [k for k, s in enumerate(scene.scans) if s.is_key_frame]
    owner = min([k for k in keys if k >= i] or keys[-1:])  # a sweep belongs to the next keyframe
    chain = [token(version, scene.name, "sd", k) for k in range(len(scene.scans))]
    tables["sample_data"].append(
        dict(
            token=sd,
            sample_token=token(version, scene.name, "sample", owner),
            ego_pose_token=sd,
            calibrated_sensor_token=token(version, scene.name, "cs"),
            timestamp=stamp,
            fileformat="pcd",
            is_key_frame=bool(scan.is_key_frame),
            height=0,
            width=0,
            filename=filename,
            **_neighbours(chain, i),
        )
    )


def _nuscenes_scene(root: Path, version: str, scene: NuScenesScene, tables: dict) -> None:
    """Write one scene's scans and append its scene, sample, calibrated_sensor and log records."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", scene.name) or not scene.scans:
        raise ConfigError(
            f"nuScenes scene name {scene.name!r} must be a plain name (e.g. "
            "scene-0061) and the scene needs at least one scan"
        )
    keys = [i for i, s in enumerate(scene.scans) if s.is_key_frame]
    if not keys:
        raise ConfigError(f"nuScenes scene {scene.name!r} has no keyframe (is_key_frame=True)")
    for i in range(len(scene.scans)):
        _nuscenes_scan(root, version, scene, i, tables)
    scene_token, log_token = token(version, scene.name), token(version, scene.name, "log")
    samples = [token(version, scene.name, "sample", i) for i in keys]
    for n, i in enumerate(keys):
        stamp = int(scene.scans[i].timestamp)
        tables["sample"].append(
            dict(
                token=samples[n],
                timestamp=stamp,
                scene_token=scene_token,
                **_neighbours(samples, n),
            )
        )
    cs = _pose(scene.lidar_to_ego, f"nuScenes scene {scene.name!r} lidar_to_ego")
    tables["calibrated_sensor"].append(
        {
            "token": token(version, scene.name, "cs"),
            "sensor_token": token(version, LIDAR_CHANNEL),
            "translation": cs[:3, 3].tolist(),
            "rotation": matrix_quaternion(cs),
            "camera_intrinsic": [],
        }
    )
    tables["log"].append(
        {
            "token": log_token,
            "logfile": scene.name,
            "vehicle": "srkd",
            "date_captured": "",
            "location": "",
        }
    )
    tables["scene"].append(
        {
            "token": scene_token,
            "log_token": log_token,
            "nbr_samples": len(keys),
            "first_sample_token": samples[0],
            "last_sample_token": samples[-1],
            "name": scene.name,
            "description": "written by srkd.data.outdoor.writers",
        }
    )


def write_nuscenes(root: Path, scenes: Sequence[NuScenesScene], version: str = "v1.0-mini") -> Path:
    """Write scenes as a nuScenes-lidarseg release: scans, label files, JSON tables.

    Args:
        root: release root to create or extend (`<root>/<version>/` tables are replaced).
        scenes: scenes with their scans in time order; keyframes with `labels` get lidarseg
            files (a version without any labels gets no lidarseg.json, like v1.0-test).
        version: metadata folder name.
    Returns:
        The root.
    """
    if not re.fullmatch(r"v[0-9A-Za-z.]+-[A-Za-z0-9_]+", version):
        raise ConfigError(f"nuScenes version {version!r} must look like v1.0-mini")
    names: list[str] = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise ConfigError(f"nuScenes scene names must be unique, got {names}")
    tables: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor",
                              "lidarseg", "log")
    }  # fmt: skip
    root = Path(root)
    with unfinished_root(root, "srkd.data.outdoor.writers.write_nuscenes"):
        for scene in scenes:
            _nuscenes_scene(root, version, scene, tables)
        tables["sensor"] = [
            {
                "token": token(version, LIDAR_CHANNEL),
                "channel": LIDAR_CHANNEL,
                "modality": "lidar",
            }
        ]
        tables["category"] = [
            {
                "token": token("category", name),
                "name": name,
                "description": "",
                "index": index,
            }
            for index, name in enumerate(NUSCENES_RAW_CATEGORIES)
        ]
        if not tables["lidarseg"]:
            del tables["lidarseg"]
        for name, records in tables.items():
            write_json(root / version / f"{name}.json", records)
    return root


def write_semantickitti(root: Path, sequences: Mapping[str, Sequence[LidarScan]]) -> Path:
    """Write sequences in the SemanticKITTI layout.

    Args:
        root: dataset root; writes `<root>/sequences/NN/velodyne/FFFFFF.bin` (float32 x, y, z,
            remission), `labels/FFFFFF.label` (uint32 semantic | instance << 16) for scans with
            labels, and `poses.txt` (row-major 3 x 4 of each scan's pose, one line per scan).
        sequences: two-digit sequence name -> scans in frame order.
    Returns:
        The root.
    """
    known = np.array(sorted(SEMANTICKITTI_LEARNING_MAP))
    root = Path(root)
    with unfinished_root(root, "srkd.data.outdoor.writers.write_semantickitti"):
        for seq, scans in sequences.items():
            if not re.fullmatch(r"\d{2}", seq):
                raise ConfigError(f"SemanticKITTI sequence name {seq!r} must be two digits")
            poses = []
            for frame, scan in enumerate(scans):
                what = f"SemanticKITTI sequence {seq} scan {frame}"
                _check_scan(scan, 0.0, 1.0, what)
                base = root / "sequences" / seq
                points = np.concatenate([scan.coord, np.asarray(scan.intensity)[:, None]], axis=1)
                write_records(base / "velodyne" / f"{frame:06d}.bin", points, "<f4")
                if scan.labels is not None:
                    sem = np.asarray(scan.labels, dtype=np.int64)
                    inst = (
                        np.zeros_like(sem) if scan.instance is None else np.asarray(scan.instance)
                    )
                    if not np.isin(sem, known).all() or inst.min() < 0 or inst.max() > 0xFFFF:
                        raise ConfigError(
                            f"{what}: labels must be raw SemanticKITTI ids and instances 0..65535"
                        )
                    write_records(
                        base / "labels" / f"{frame:06d}.label",
                        sem.astype(np.uint32) | (inst.astype(np.uint32) << 16),
                        "<u4",
                    )
                poses.append(" ".join(f"{v:.9e}" for v in _pose(scan.pose, what)[:3].ravel()))
            write_text(root / "sequences" / seq / "poses.txt", "\n".join(poses) + "\n")
    return root
