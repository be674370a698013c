"""Reader of the nuScenes-lidarseg release: one scene per annotated LIDAR_TOP keyframe.

    <root>/<version>/*.json                          metadata tables (nuscenes_tables)
    <root>/samples/LIDAR_TOP/*.pcd.bin               keyframe scans, float32 (N, 5):
                                                     x, y, z (metres, lidar frame), intensity
                                                     0..255, ring index
    <root>/sweeps/LIDAR_TOP/*.pcd.bin                the scans between keyframes (same format)
    <root>/lidarseg/<version>/<token>_lidarseg.bin   uint8 (N,) raw category id of each keyframe
                                                     point (0..31, category.json `index`)
Pointcept's nuScenes data root (the release under `raw/`, plus `info/*.pkl` files it builds) is
accepted as the root too: only the release under `raw/` is read. The info pickles are not read:
they hold nothing the JSON tables lack (paths and the same pose products), and unpickling a
file executes code.

Scene ids are `<scene name>_<keyframe number>`, e.g. `scene-0061_007` (the 8th keyframe of scene
0061 in time order): readable, sortable, and single folder names (the cache and the reports key
by them). `sample_token(scene_id)` gives the nuScenes sample token.

Splits are the official scene lists (nuscenes_splits): "train", "val" and "test" read the
`v1.0-trainval` / `v1.0-test` tables, "mini_train" and "mini_val" the `v1.0-mini` ones (the
option `version` overrides). The option `scenes=("scene-0061", ...)` reads a user-chosen set of
scenes instead of the official list (a custom split).

Features: strength = intensity / 255 in [0, 1] (Pointcept's convention). With `sweeps=k` the
k - 1 previous LIDAR_TOP scans (fewer at a scene's start; nothing is duplicated) are moved into
the keyframe's lidar frame (sweep lidar -> ego -> global -> keyframe ego -> keyframe lidar, by
calibrated_sensor and ego_pose, the devkit's `from_file_multisweep` chain), less their points
within SWEEP_MIN_DISTANCE of their sensor, and appended after the keyframe's points; they carry
label -1 (nuScenes labels only keyframes). origin_index = arange(N) with the keyframe first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srkd.data.outdoor.classes import (
    NUSCENES16_CLASSES,
    NUSCENES_RAW_TO_16,
    lookup_table,
)
from srkd.data.outdoor.formats import (
    check_finished,
    check_label_count,
    map_raw_labels,
    read_records,
)
from srkd.data.outdoor.nuscenes_splits import (
    NUSCENES_SPLIT_SIZES,
    nuscenes_split_scenes,
)
from srkd.data.outdoor.nuscenes_tables import (
    LIDAR_CHANNEL,
    LidarIndex,
    blob_path,
    build_index,
    lidarseg_files,
    release_root,
)
from srkd.data.scannet.layout import check_scene_id
from srkd.errors import ConfigError, DataError
from srkd.types import IGNORE_INDEX, PointCloud

if TYPE_CHECKING:
    from srkd.data.registry import DatasetSpec

SPLIT_VERSIONS: dict[str, str] = {
    "train": "v1.0-trainval", "val": "v1.0-trainval", "test": "v1.0-test",
    "mini_train": "v1.0-mini", "mini_val": "v1.0-mini",
}  # fmt: skip
"""The metadata folder that holds each official split's scenes."""

MAX_SWEEPS = 30
"""Most scans one scene may stack (the keyframe included); 10 is the common choice (20 Hz lidar,
0.5 s), more only blurs moving objects."""

SWEEP_MIN_DISTANCE = 1.0
"""Sweep points with |x| and |y| both under this many metres in their own lidar frame are
dropped: returns from the ego vehicle itself, which would smear along the path once moved into
the keyframe's frame (the devkit's `from_file_multisweep` rule, min_distance=1.0). Keyframe points
are all kept: each carries a label and is scored."""

_LABEL_TABLE = lookup_table(NUSCENES_RAW_TO_16, 256)
_FIX = "download this part of the nuScenes release again"


def _check_options(
    split: str, spec: Any, sweeps: int, scenes: Sequence[str] | None, version: str | None
) -> None:
    if getattr(spec, "num_classes", None) != len(NUSCENES16_CLASSES):
        raise ConfigError(
            f"dataset {getattr(spec, 'name', spec)!r} has {getattr(spec, 'num_classes', '?')} "
            f"classes; the nuScenes reader maps labels to {len(NUSCENES16_CLASSES)} "
            "(use dataset 'nuscenes')"
        )
    if scenes is None and split not in SPLIT_VERSIONS:
        raise ConfigError(
            f"nuScenes split {split!r} is not one of {', '.join(SPLIT_VERSIONS)}; or pass "
            "scenes=('scene-0061', ...) to read chosen scenes"
        )
    if version is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(version)):
        raise ConfigError(
            f"nuScenes version {version!r} is not a metadata folder name (e.g. v1.0-trainval)"
        )
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or not 1 <= sweeps <= MAX_SWEEPS:
        raise ConfigError(
            f"sweeps={sweeps!r}: give the number of lidar scans per scene, 1 (the keyframe "
            f"alone) to {MAX_SWEEPS} (e.g. 10: the keyframe and the 9 scans before it)"
        )


def _split_scene_names(index: LidarIndex, split: str, scenes: Sequence[str] | None) -> list[str]:
    """The scene names to read: all of the official split (or of `scenes`), each in the tables."""
    wanted = list(scenes) if scenes is not None else list(nuscenes_split_scenes(split))
    missing = [name for name in wanted if name not in index.keyframes]
    empty = [name for name in wanted if not index.keyframes.get(name, True)]
    if empty:
        raise DataError(
            f"scene(s) {', '.join(empty[:3])} of {index.release / index.version} have no "
            f"{LIDAR_CHANNEL} keyframe in sample_data.json; {_FIX}"
        )
    if missing:
        what = f"split {split!r}" if scenes is None else "the scenes asked for"
        total = len(wanted) if scenes is not None else NUSCENES_SPLIT_SIZES[split]
        raise DataError(
            f"{what} has {len(missing)} of its {total} scenes (e.g. {', '.join(missing[:3])}) "
            f"missing from {index.release / index.version / 'scene.json'}; read the version "
            "that holds them (version=...), or list the scenes you have with scenes=(...)"
        )
    return wanted


def read_lidar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """coord float32 (N, 3) and strength float32 (N,) = intensity / 255 of a .pcd.bin scan."""
    points = read_records(path, "<f4", 5, "nuScenes lidar scan", _FIX)
    intensity = points[:, 3]
    bad = ~((intensity >= 0.0) & (intensity <= 255.0))
    if bad.any():
        raise DataError(
            f"nuScenes lidar scan {path}: intensity (4th of 5 columns) must be in [0, 255], "
            f"point {int(np.argmax(bad))} has {float(intensity[bad][0])}; {_FIX}"
        )
    return points[:, :3].copy(), intensity / np.float32(255.0)


def read_lidarseg(path: Path, scan: Path, points: int) -> np.ndarray:
    """int64 (N,) nuScenes-16 labels (0..15, -1) of a `_lidarseg.bin` file."""
    raw = read_records(path, "<u1", 1, "nuScenes-lidarseg label file", _FIX)
    check_label_count(raw, points, path, scan, _FIX)
    return map_raw_labels(raw, _LABEL_TABLE, path, "ids 0..31 of category.json")


class NuScenesScenes:
    """The annotated lidar keyframes of one nuScenes split, loadable by scene id.

    Args:
        root: the release root (holds `<version>/`, samples/, sweeps/, lidarseg/), or
            Pointcept's nuScenes data root (the release under raw/).
        split: "train", "val", "test", "mini_train" or "mini_val".
        spec: a DatasetSpec with 16 classes (the registered "nuscenes").
        require_labels: if False, keyframes without lidarseg labels get `segment=None`
            (the test split has none).
        sweeps: scans per scene, the keyframe included (1 = the keyframe alone).
        version: metadata folder to read, default SPLIT_VERSIONS[split].
        scenes: scene names to read instead of the official split's list.
    Raises:
        ConfigError for an unknown split, a bad `sweeps` or a spec with another class count;
        DataError for a missing root, version folder or table, a split whose scenes the tables
        lack, or a root marked unfinished by its writer.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        spec: DatasetSpec,
        *,
        require_labels: bool = True,
        sweeps: int = 1,
        version: str | None = None,
        scenes: Sequence[str] | None = None,
    ) -> None:
        _check_options(split, spec, sweeps, scenes, version)
        self.root, self.split, self.spec = Path(root), split, spec
        self.require_labels, self.sweeps = require_labels, sweeps
        self.version = version or SPLIT_VERSIONS.get(split, "v1.0-trainval")
        check_finished(self.root)
        self.release = release_root(self.root, self.version)
        self._index = build_index(self.release, self.version)
        self._labels: dict[str, str] | None = None
        if require_labels or (self.release / self.version / "lidarseg.json").is_file():
            self._labels = lidarseg_files(self.release, self.version)
        self._keyframes: dict[str, dict[str, Any]] = {}
        for name in _split_scene_names(self._index, split, scenes):
            for number, record in enumerate(self._index.keyframes[name]):
                self._keyframes[check_scene_id(f"{name}_{number:03d}")] = record
        self.scene_ids: list[str] = sorted(self._keyframes)
        if not self.scene_ids:
            raise DataError(f"the scenes of split {split!r} in {self.release} have no keyframes")

    def __len__(self) -> int:
        return len(self.scene_ids)

    def __repr__(self) -> str:
        return (
            f"NuScenesScenes(root={str(self.root)!r}, split={self.split!r}, "
            f"version={self.version!r}, sweeps={self.sweeps}, scenes={len(self)})"
        )

    def _keyframe(self, scene_id: str) -> dict[str, Any]:
        if scene_id not in self._keyframes:
            raise DataError(
                f"scene {scene_id!r} is not in split {self.split!r} of {self.root} "
                f"({len(self)} keyframes, e.g. {', '.join(self.scene_ids[:3])})"
            )
        return self._keyframes[scene_id]

    def sample_token(self, scene_id: str) -> str:
        """The nuScenes sample token of a scene id."""
        return str(self._keyframe(scene_id)["sample_token"])

    def lidar_path(self, record: dict[str, Any]) -> Path:
        """The scan file of a sample_data record; DataError naming it when it is absent."""
        path = blob_path(self.release, record.get("filename"), "sample_data", self.version)
        if not path.is_file():
            raise DataError(
                f"nuScenes lidar scan {path} (sample_data {record.get('token')!r} of "
                f"{self.version}) is missing; {_FIX} (the samples/ and sweeps/ blobs)"
            )
        return path

    def _labels_of(self, record: dict[str, Any], scan: Path, points: int) -> np.ndarray | None:
        relative = None if self._labels is None else self._labels.get(record["token"])
        if relative is None:
            if self.require_labels:
                raise DataError(
                    f"keyframe {record['token']!r} ({scan}) has no record in "
                    f"{self.release / self.version / 'lidarseg.json'}; install the "
                    "nuScenes-lidarseg expansion, or pass require_labels=False"
                )
            return None
        path = blob_path(self.release, relative, "lidarseg", self.version)
        if not path.is_file():
            raise DataError(f"nuScenes-lidarseg label file {path} is missing; {_FIX}")
        return read_lidarseg(path, scan, points)

    def _previous_scans(self, key: dict[str, Any]) -> list[dict[str, Any]]:
        """Up to sweeps - 1 LIDAR_TOP records before `key`, newest first (the prev chain)."""
        chain, record = [], key
        while len(chain) < self.sweeps - 1 and record.get("prev"):
            if record["prev"] not in self._index.lidar:
                raise DataError(
                    f"{self.release / self.version / 'sample_data.json'}: scan "
                    f"{record['token']!r} names a previous scan {record['prev']!r} that the "
                    f"table lacks; {_FIX}"
                )
            record = self._index.lidar[record["prev"]]
            chain.append(record)
        return chain

    def load(self, scene_id: str) -> PointCloud:
        """One keyframe (plus `sweeps - 1` earlier scans) as a PointCloud: coord float32 (N, 3)
        in the keyframe's lidar frame, strength float32 (N, 1) in [0, 1], segment int64 (N,)
        in 0..15 / -1 (None without labels when they are optional), origin_index arange(N)."""
        key = self._keyframe(scene_id)
        key_path = self.lidar_path(key)
        coord, strength = read_lidar(key_path)
        segment = self._labels_of(key, key_path, len(coord))
        coords, strengths = [coord], [strength]
        if self.sweeps > 1:
            global_to_key = np.linalg.inv(self._index.sensor_to_global(key))
            for record in self._previous_scans(key):
                xyz, s = read_lidar(self.lidar_path(record))
                far = (np.abs(xyz[:, :2]) >= SWEEP_MIN_DISTANCE).any(axis=1)
                xyz, s = xyz[far], s[far]
                m = global_to_key @ self._index.sensor_to_global(record)
                coords.append((xyz.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32))
                strengths.append(s)
        n_key, n = len(coord), sum(len(c) for c in coords)
        if segment is not None and n > n_key:
            segment = np.concatenate([segment, np.full(n - n_key, IGNORE_INDEX, np.int64)])
        try:
            return PointCloud(
                coord=np.concatenate(coords),
                origin_index=np.arange(n, dtype=np.int64),
                scene_id=scene_id,
                strength=np.concatenate(strengths)[:, None],
                segment=segment,
                num_classes=len(NUSCENES16_CLASSES),
            )
        except DataError as exc:
            raise DataError(f"{exc} (scan {key_path})") from None
