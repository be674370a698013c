"""The JSON tables of a nuScenes release, indexed for reading lidar keyframes and their sweeps.

A release root holds the blobs (`samples/`, `sweeps/`, `lidarseg/<version>/`) and one metadata
folder per version (`v1.0-mini`, `v1.0-trainval`, `v1.0-test`) of JSON tables (nuscenes-devkit,
docs/schema_nuscenes.md). The tables read here:
    scene              token, name                               -> scene of a sample
    sample             token, scene_token, timestamp             -> keyframes of a scene, in time
    sample_data        token, sample_token, calibrated_sensor_token, ego_pose_token, filename,
                       is_key_frame, prev                        -> the LIDAR_TOP scans
    calibrated_sensor  token, sensor_token, translation, rotation (w, x, y, z): sensor -> ego
    sensor             token, channel                            -> which records are LIDAR_TOP
    ego_pose           token, translation, rotation (w, x, y, z): ego -> global
    lidarseg           sample_data_token, filename               -> the label file of a keyframe
    category           name, index                               -> checks the raw id meaning
JSON is parsed with the json module only: nothing in a table is executed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from srkd.data.outdoor.classes import NUSCENES_RAW_CATEGORIES
from srkd.errors import DataError

LIDAR_CHANNEL = "LIDAR_TOP"
"""The sensor channel of the lidar that nuScenes-lidarseg annotates."""

BASE_TABLES: tuple[str, ...] = (
    "scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose",
)  # fmt: skip
"""Tables every read needs; labels also need `lidarseg` and `category`."""

_FIX = "download the nuScenes metadata of this version again (and the nuScenes-lidarseg expansion)"


def release_root(root: Path, version: str) -> Path:
    """The folder that holds `<version>/`: `root`, or `root/raw` (Pointcept's data root layout)."""
    root = Path(root)
    for candidate in (root, root / "raw"):
        if (candidate / version).is_dir():
            return candidate
    found = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir()) if root.is_dir() else []
    raise DataError(
        f"nuScenes root {root} has no metadata folder {version}/ (nor raw/{version}/); found "
        f"{', '.join(found) or 'none'}; point the root at the unpacked release, or pick the "
        "version you have (version=...)"
    )


def load_table(release: Path, version: str, name: str) -> list[dict[str, Any]]:
    """The records of `<release>/<version>/<name>.json`; DataError if missing or malformed."""
    path = release / version / f"{name}.json"
    if not path.is_file():
        extra = (
            " (part of the nuScenes-lidarseg expansion; unlabelled data such as the test split "
            "reads with require_labels=False)"
            if name == "lidarseg"
            else ""
        )
        raise DataError(f"nuScenes table {path} is missing{extra}; {_FIX}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"nuScenes table {path} is not valid JSON ({exc}); {_FIX}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"nuScenes table {path} is not a JSON list of records; {_FIX}")
    return records


def by_token(records: list[dict[str, Any]], table: str, path: Path) -> dict[str, dict[str, Any]]:
    """token -> record; DataError naming the table when a record has no token."""
    try:
        return {r["token"]: r for r in records}
    except KeyError:
        raise DataError(
            f"nuScenes table {path / (table + '.json')} has a record without 'token'; {_FIX}"
        ) from None


def field(record: dict[str, Any], key: str, table: str, release: Path, version: str) -> Any:
    """record[key]; DataError naming the table file and the key when it is absent."""
    try:
        return record[key]
    except KeyError:
        raise DataError(
            f"nuScenes table {release / version / (table + '.json')}: record "
            f"{record.get('token', '?')!r} has no field {key!r}; {_FIX}"
        ) from None


def blob_path(release: Path, relative: Any, table: str, version: str) -> Path:
    """`release / relative` for a file name taken from a table; DataError if the name is empty,
    absolute or climbs out of the release with '..' (a table may come from anywhere)."""
    parts = Path(str(relative or "")).parts
    if not parts or Path(str(relative)).is_absolute() or ".." in parts:
        raise DataError(
            f"nuScenes table {release / version / (table + '.json')} names file {relative!r}; "
            f"file names must be paths inside the release folder {release}; {_FIX}"
        )
    return release.joinpath(*parts)


def check_categories(records: list[dict[str, Any]], path: Path) -> None:
    """DataError unless every category's `index` means what NUSCENES_RAW_CATEGORIES says."""
    for record in records:
        index, name = record.get("index"), record.get("name")
        if index is None:
            raise DataError(
                f"nuScenes table {path}: category {name!r} has no 'index' field, so this "
                "metadata predates nuScenes-lidarseg; install the lidarseg expansion's tables"
            )
        if (
            not (0 <= index < len(NUSCENES_RAW_CATEGORIES))
            or NUSCENES_RAW_CATEGORIES[index] != name
        ):
            raise DataError(
                f"nuScenes table {path}: category {name!r} has index {index}, but lidarseg id "
                f"{index} is {NUSCENES_RAW_CATEGORIES[index] if 0 <= index < 32 else 'undefined'}"
                "; srkd's 16-class map would mislabel points: use the official v1.0 tables"
            )


def quaternion_matrix(wxyz: Any, where: str) -> np.ndarray:
    """float64 (3, 3) rotation of a unit quaternion (w, x, y, z) (Hamilton convention, as the
    devkit's pyquaternion); the quaternion is normalised first. DataError for a zero or
    malformed quaternion, naming `where`."""
    q = np.asarray(wxyz, dtype=np.float64)
    norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
    if not np.isfinite(norm) or norm < 1e-12:
        raise DataError(f"{where}: rotation {wxyz!r} is not a quaternion (w, x, y, z); {_FIX}")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rigid(translation: Any, rotation: Any, where: str) -> np.ndarray:
    """float64 (4, 4) homogeneous transform x -> R x + t of a table record's pose."""
    t = np.asarray(translation, dtype=np.float64)
    if t.shape != (3,) or not np.isfinite(t).all():
        raise DataError(f"{where}: translation {translation!r} is not 3 finite numbers; {_FIX}")
    m = np.eye(4)
    m[:3, :3] = quaternion_matrix(rotation, where)
    m[:3, 3] = t
    return m


@dataclass(frozen=True)
class LidarIndex:
    """The LIDAR_TOP part of a release version's tables.

    Attributes:
        release: folder holding `<version>/` and the blobs.
        version: metadata folder name.
        scene_names: scene token -> scene name.
        keyframes: scene name -> LIDAR_TOP sample_data records of its keyframes, in time order.
        lidar: token -> every LIDAR_TOP sample_data record (keyframes and sweeps).
        sensor_poses: calibrated_sensor token -> record.
        ego_poses: ego_pose token -> record (only those of LIDAR_TOP records).
    """

    release: Path
    version: str
    scene_names: dict[str, str]
    keyframes: dict[str, list[dict[str, Any]]]
    lidar: dict[str, dict[str, Any]]
    sensor_poses: dict[str, dict[str, Any]]
    ego_poses: dict[str, dict[str, Any]]

    def sensor_to_global(self, record: dict[str, Any]) -> np.ndarray:
        """float64 (4, 4): lidar frame of a sample_data record -> global frame
        (ego_pose @ calibrated_sensor)."""
        get = partial(
            field, record, table="sample_data", release=self.release, version=self.version
        )
        cs_token, pose_token = get("calibrated_sensor_token"), get("ego_pose_token")
        where = f"{self.release / self.version}: sample_data {record.get('token')!r}"
        if cs_token not in self.sensor_poses or pose_token not in self.ego_poses:
            raise DataError(
                f"{where} points to a calibrated_sensor or ego_pose that the tables lack; {_FIX}"
            )
        cs, pose = self.sensor_poses[cs_token], self.ego_poses[pose_token]
        sensor = rigid(cs.get("translation"), cs.get("rotation"), f"{where} calibrated_sensor")
        ego = rigid(pose.get("translation"), pose.get("rotation"), f"{where} ego_pose")
        return ego @ sensor


def _lidar_records(tables: dict[str, list[dict[str, Any]]], get: Any) -> dict[str, dict[str, Any]]:
    """token -> sample_data record of every LIDAR_TOP scan (sensor -> calibrated_sensor ->
    sample_data)."""
    lidar_sensors = {
        get(r, "token", "sensor")
        for r in tables["sensor"]
        if get(r, "channel", "sensor") == LIDAR_CHANNEL
    }
    lidar_calibs = {
        get(r, "token", "calibrated_sensor")
        for r in tables["calibrated_sensor"]
        if get(r, "sensor_token", "calibrated_sensor") in lidar_sensors
    }
    return {
        get(r, "token", "sample_data"): r
        for r in tables["sample_data"]
        if get(r, "calibrated_sensor_token", "sample_data") in lidar_calibs
    }


def build_index(release: Path, version: str) -> LidarIndex:
    """Read the base tables of `<release>/<version>/` and index their LIDAR_TOP records.

    Raises:
        DataError naming the table for a missing or malformed table, a record without a field
        this reader needs, or a version without any LIDAR_TOP keyframe.
    """
    tables = {name: load_table(release, version, name) for name in BASE_TABLES}
    get = partial(field, release=release, version=version)
    folder = release / version
    lidar = _lidar_records(tables, get)
    if not lidar:
        raise DataError(f"nuScenes tables in {folder} list no {LIDAR_CHANNEL} scans; {_FIX}")
    samples = by_token(tables["sample"], "sample", folder)
    scene_names = {get(r, "token", "scene"): get(r, "name", "scene") for r in tables["scene"]}
    keyframes: dict[str, list[dict[str, Any]]] = {name: [] for name in scene_names.values()}
    for record in lidar.values():
        if not get(record, "is_key_frame", "sample_data"):
            continue
        sample = samples.get(get(record, "sample_token", "sample_data"))
        scene_token = None if sample is None else get(sample, "scene_token", "sample")
        if scene_token not in scene_names:
            raise DataError(
                f"nuScenes table {folder / 'sample_data.json'}: keyframe {record['token']!r} "
                f"belongs to no sample / scene of {folder}; {_FIX}"
            )
        keyframes[scene_names[scene_token]].append(record)
    for records in keyframes.values():
        records.sort(key=lambda r: get(r, "timestamp", "sample_data"))
    used_poses = {get(r, "ego_pose_token", "sample_data") for r in lidar.values()}
    ego_poses = {r.get("token"): r for r in tables["ego_pose"] if r.get("token") in used_poses}
    sensor_poses = by_token(tables["calibrated_sensor"], "calibrated_sensor", folder)
    return LidarIndex(release, version, scene_names, keyframes, lidar, sensor_poses, ego_poses)


def lidarseg_files(release: Path, version: str) -> dict[str, str]:
    """sample_data token -> label file (relative to the release) from `lidarseg.json`, after
    checking `category.json`'s raw ids (check_categories)."""
    check_categories(load_table(release, version, "category"), release / version / "category.json")
    get = partial(field, table="lidarseg", release=release, version=version)
    return {
        get(r, "sample_data_token"): get(r, "filename")
        for r in load_table(release, version, "lidarseg")
    }
