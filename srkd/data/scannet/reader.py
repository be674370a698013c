"""Reader of the Pointcept ScanNet layout: `<root>/<split>/<scene_id>/<field>.npy`.

A scene folder holds one row per point in each of
    coord.npy       float32/float64 (N, 3), metres
    color.npy       uint8 (N, 3) in 0..255 (float accepted)
    normal.npy      float32/float64 (N, 3), unit vectors
    segment20.npy   int (N,), ScanNet-20 labels 0..19, -1 = ignore
    segment200.npy  int (N,), ScanNet200 labels 0..199, -1 = ignore
    instance.npy    int (N,), instance id, -1 = none (optional)
A dataset name ("scannet", "scannet200") picks which segment file becomes `PointCloud.segment`
(its DatasetSpec, srkd.data.registry).

What the reader refuses (each a DataError or ConfigError naming the value or the file): a split that
is not a plain folder name under the root (`layout.check_split`), a root whose writer left its
`layout.UNFINISHED` marker, and a scene with a missing, malformed or non-finite (NaN / inf) coord,
color or normal file, or labels out of range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srkd.data.registry import DatasetSpec, get_dataset_spec
from srkd.data.scannet.layout import (
    SCENE_FILES,
    check_finished,
    check_scene_id,
    check_split,
)
from srkd.errors import ConfigError, DataError
from srkd.types import PointCloud


def _existing_splits(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_scenes(root: Path, split: str) -> list[str]:
    """Sorted scene folder names under `<root>/<split>/` (hidden / temporary folders skipped).

    Raises ConfigError for a split that is not a plain folder name, DataError for a missing root,
    split or scene folder, or a root marked unfinished by its writer.
    """
    root = Path(root)
    split_dir = root / check_split(split)
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist; point it at a folder with <split>/<scene>/ "
            "subfolders (create one with `srkd prepare scannet` or `srkd generate-synthetic`)"
        )
    check_finished(root)
    if not split_dir.is_dir():
        have = ", ".join(_existing_splits(root)) or "none"
        raise DataError(
            f"split folder {split_dir} does not exist (splits found under {root}: {have}); "
            "pick one of those splits or prepare the data for this one"
        )
    scenes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not scenes:
        raise DataError(
            f"split folder {split_dir} holds no scene folders; each scene must be a folder "
            "<scene_id>/ with coord.npy, color.npy, normal.npy and the label files"
        )
    return scenes


def _check_finite(arr: np.ndarray, path: Path, scene_id: str) -> None:
    """DataError naming `path` when the float array `arr` (N, 3) holds NaN or inf values.

    Costs one `np.isfinite` pass over an array already in memory; integer arrays are skipped.
    """
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    bad = ~np.isfinite(arr)
    rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
    raise DataError(
        f"scene {scene_id!r}: {path.absolute()} holds {int(bad.sum())} non-finite {path.stem} "
        f"value(s) (NaN or inf) in {len(rows)} of {len(arr)} points, first at point {rows[0]}; "
        "repair or re-create this file (e.g. re-run `srkd prepare scannet` or "
        "`srkd generate-synthetic`), or move the scene folder out of the split"
    )


def _load_npy(path: Path, scene_id: str, width: int | None, n: int | None) -> np.ndarray:
    """Load one layout file and check its dtype and shape ((N, width) or (N,))."""
    stem = path.stem
    try:
        arr = np.load(path, mmap_mode=None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(
            f"scene {scene_id!r}: {path} is truncated or not a valid .npy file ({exc}); "
            "re-create the scene (e.g. re-run `srkd prepare scannet`)"
        ) from None
    if arr.dtype.name not in SCENE_FILES[stem]:
        raise DataError(
            f"scene {scene_id!r}: {path} has dtype {arr.dtype}, expected one of "
            f"{', '.join(SCENE_FILES[stem])}"
        )
    want = (n if n is not None else "N", width) if width else (n if n is not None else "N",)
    ok = arr.ndim == len(want) and (width is None or arr.shape[1] == width)
    if ok and n is not None:
        ok = arr.shape[0] == n
    if not ok:
        raise DataError(
            f"scene {scene_id!r}: {path} has shape {arr.shape}, expected "
            f"({', '.join(map(str, want))}{',' if len(want) == 1 else ''})"
        )
    return arr


def load_scene(
    root: Path,
    split: str,
    scene_id: str,
    spec: DatasetSpec,
    *,
    require_labels: bool = True,
) -> PointCloud:
    """Read one scene folder into a validated PointCloud.

    Args:
        root: dataset root (holds `<split>/<scene_id>/`).
        split: split folder, e.g. "train".
        scene_id: scene folder name.
        spec: which label file and class count to use.
        require_labels: if False, a missing `<spec.segment_file>.npy` gives `segment=None`
            (unlabelled test scenes) instead of an error.
    Returns:
        PointCloud with coord float32 (N, 3), color float32 (N, 3) in 0..255, normal float32
        (N, 3), segment int64 (N,) or None, instance int64 (N,) or None, origin_index = arange(N),
        num_classes = spec.num_classes.
    Raises:
        DataError naming the file for a missing or malformed file, a wrong shape or length, a
        NaN or inf in coord, color or normal, a label out of range, or an empty scene;
        ConfigError for a split that is not a plain folder name (DataError for such a scene id).
    """
    check_scene_id(scene_id)
    scene_dir = Path(root) / check_split(split) / scene_id
    if not scene_dir.is_dir():
        raise DataError(
            f"scene folder {scene_dir} does not exist; list the available scenes with "
            f"list_scenes({str(root)!r}, {split!r})"
        )
    _check_files(scene_dir, scene_id, spec, require_labels)
    coord = _load_npy(scene_dir / "coord.npy", scene_id, 3, None)
    n = len(coord)
    if n == 0:
        raise DataError(
            f"scene {scene_id!r}: {scene_dir / 'coord.npy'} holds no points (empty scene)"
        )
    color = _load_npy(scene_dir / "color.npy", scene_id, 3, n)
    normal = _load_npy(scene_dir / "normal.npy", scene_id, 3, n)
    for stem, arr in (("coord", coord), ("color", color), ("normal", normal)):
        _check_finite(arr, scene_dir / f"{stem}.npy", scene_id)
    segment = _load_optional(scene_dir / f"{spec.segment_file}.npy", scene_id, n)
    instance = _load_optional(scene_dir / "instance.npy", scene_id, n)
    try:
        return PointCloud(
            coord=coord.astype(np.float32, copy=False),
            origin_index=np.arange(n, dtype=np.int64),
            scene_id=scene_id,
            color=color.astype(np.float32),
            normal=normal.astype(np.float32, copy=False),
            segment=segment,
            instance=instance,
            num_classes=spec.num_classes,
        )
    except DataError as exc:  # add the folder, so the user knows which files to look at
        raise DataError(f"{exc} (scene folder {scene_dir})") from None


def _check_files(scene_dir: Path, scene_id: str, spec: DatasetSpec, require_labels: bool) -> None:
    """DataError naming the first missing file of coord / color / normal (and the label file of
    `spec` when `require_labels`), with the label files the scene does have."""
    needed = ["coord", "color", "normal"] + ([spec.segment_file] if require_labels else [])
    for stem in needed:
        path = scene_dir / f"{stem}.npy"
        if path.is_file():
            continue
        hint = ""
        if stem.startswith("segment"):
            others = sorted(p.stem for p in scene_dir.glob("segment*.npy"))
            hint = (
                f"; dataset {spec.name!r} needs {stem}.npy, this scene has only "
                f"{', '.join(others) or 'no label files'} (pick the dataset that matches, or "
                "re-create the layout from raw ScanNet with `srkd prepare scannet`)"
            )
        raise DataError(
            f"scene {scene_id!r}: {path} is missing; a scene folder needs coord.npy, color.npy, "
            f"normal.npy and {spec.segment_file}.npy (instance.npy optional){hint}"
        )


def _load_optional(path: Path, scene_id: str, n: int) -> np.ndarray | None:
    """A per-point (n,) file that a scene may lack (labels, instances): its array, or None."""
    return _load_npy(path, scene_id, None, n) if path.is_file() else None


class ScanNetScenes:
    """The scenes of one split of a layout dataset, loadable by id.

    Args:
        root: dataset root.
        split: split folder name.
        spec: DatasetSpec (or a registered dataset name).
        require_labels: see `load_scene`.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        spec: DatasetSpec | str,
        *,
        require_labels: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.spec = get_dataset_spec(spec) if isinstance(spec, str) else spec
        if self.spec.layout != "scannet":
            raise ConfigError(
                f"dataset {self.spec.name!r} is stored in the {self.spec.layout} layout, not the "
                "ScanNet one; open it with srkd.data.sources.open_scenes"
            )
        self.require_labels = require_labels
        self.scene_ids: list[str] = list_scenes(self.root, split)

    def __len__(self) -> int:
        return len(self.scene_ids)

    def __repr__(self) -> str:
        return (
            f"ScanNetScenes(root={str(self.root)!r}, split={self.split!r}, "
            f"dataset={self.spec.name!r}, scenes={len(self)})"
        )

    def load(self, scene_id: str) -> PointCloud:
        """Read scene `scene_id` (one of `scene_ids`) as a PointCloud."""
        if scene_id not in self.scene_ids:
            raise DataError(
                f"scene {scene_id!r} is not in split {self.split!r} of {self.root} "
                f"({len(self)} scenes, e.g. {', '.join(self.scene_ids[:3])})"
            )
        return load_scene(
            self.root, self.split, scene_id, self.spec, require_labels=self.require_labels
        )
