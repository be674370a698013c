"""Reader of the SemanticKITTI release: one scene per lidar scan.

    <root>/sequences/NN/velodyne/FFFFFF.bin    float32 (N, 4): x, y, z (metres, sensor frame),
                                               remission in [0, 1]
    <root>/sequences/NN/labels/FFFFFF.label    uint32 (N,): raw semantic id in the low 16 bits,
                                               instance id in the high 16 bits
Pointcept's data root (`<root>/dataset/sequences/...`, as the KITTI download unpacks) is accepted
too. Scene ids are `NN_FFFFFF` (sequence, frame), e.g. `08_000123`. A split is a list of sequences
(SEMANTICKITTI_SPLITS: train 00-07 + 09-10, val 08, test 11-21 without labels); the option
`sequences=("00",)` reads other ones, e.g. a partial download. Labels are the raw ids mapped by
the official learning map to 19 classes (srkd.data.outdoor.classes). `poses.txt` / `calib.txt`
are not read: a scene is a single scan in its sensor frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srkd.data.outdoor.classes import (
    SEMANTICKITTI19_CLASSES,
    SEMANTICKITTI_LEARNING_MAP,
    SEMANTICKITTI_SPLITS,
    lookup_table,
)
from srkd.data.outdoor.formats import (
    check_finished,
    check_label_count,
    map_raw_labels,
    read_records,
)
from srkd.errors import ConfigError, DataError
from srkd.types import PointCloud

if TYPE_CHECKING:
    from srkd.data.registry import DatasetSpec

_SCENE_ID = re.compile(r"^(\d{2})_(\d{6})$")
_FRAME = re.compile(r"^\d{6}\.bin$")
_LEARNING_TABLE = lookup_table(SEMANTICKITTI_LEARNING_MAP, 1 << 16)
_FIX = "re-download or re-extract this sequence of SemanticKITTI"


def sequences_root(root: Path) -> Path:
    """`<root>/sequences`, or `<root>/dataset/sequences` (Pointcept's data root); DataError else."""
    root = Path(root)
    for candidate in (root / "sequences", root / "dataset" / "sequences"):
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"SemanticKITTI root {root} has no sequences/ folder (nor dataset/sequences/); point "
        "--data-root at the folder that holds sequences/NN/velodyne/"
    )


def split_sequences(split: str, sequences: Sequence[str] | None) -> tuple[str, ...]:
    """The sequence folder names to read: `sequences` if given, else the split's official list."""
    if sequences is not None:
        names = tuple(sequences)
        bad = [s for s in names if not re.fullmatch(r"\d{2}", str(s))]
        if bad or not names:
            raise ConfigError(
                f"sequences {list(names)!r}: give two-digit sequence folder names, e.g. ('08',)"
            )
        return names
    if split not in SEMANTICKITTI_SPLITS:
        raise ConfigError(
            f"SemanticKITTI split {split!r} is not one of {', '.join(SEMANTICKITTI_SPLITS)}; "
            "or pass sequences=('NN', ...) to read chosen sequences"
        )
    return SEMANTICKITTI_SPLITS[split]


def _list_frames(seq_dir: Path) -> list[str]:
    velodyne = seq_dir / "velodyne"
    if not velodyne.is_dir():
        raise DataError(f"sequence folder {seq_dir} has no velodyne/ folder of .bin scans; {_FIX}")
    frames = sorted(p.name[:-4] for p in velodyne.iterdir() if _FRAME.match(p.name))
    if not frames:
        raise DataError(f"{velodyne} holds no FFFFFF.bin scans; {_FIX}")
    return frames


def read_scan(bin_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """coord float32 (N, 3) and remission float32 (N,) of one velodyne .bin; DataError if bad."""
    points = read_records(bin_path, "<f4", 4, "SemanticKITTI scan", _FIX)
    if len(points) == 0:
        raise DataError(f"SemanticKITTI scan {bin_path} holds no points; {_FIX}")
    remission = points[:, 3]
    bad = ~((remission >= 0.0) & (remission <= 1.0))
    if bad.any():
        raise DataError(
            f"SemanticKITTI scan {bin_path}: remission (4th column) must be in [0, 1], point "
            f"{int(np.argmax(bad))} has {float(remission[bad][0])}; the file is not a "
            f"SemanticKITTI scan (or its intensities are scaled differently); {_FIX}"
        )
    return points[:, :3].copy(), remission.copy()


def read_labels(label_path: Path, bin_path: Path, points: int) -> np.ndarray:
    """int64 (N,) labels 0..18 / -1 from a .label file (low 16 bits mapped by the learning map)."""
    words = read_records(label_path, "<u4", 1, "SemanticKITTI label file", _FIX)
    check_label_count(words, points, label_path, bin_path, _FIX)
    known = "raw ids of semantic-kitti.yaml: 0, 1, 10..99, 252..259"
    return map_raw_labels(words & 0xFFFF, _LEARNING_TABLE, label_path, known)


class SemanticKittiScenes:
    """The scans of one SemanticKITTI split, loadable by scene id `NN_FFFFFF`.

    Args:
        root: the release root (holds sequences/) or Pointcept's data root (dataset/sequences/).
        split: "train", "val" or "test" (ignored when `sequences` is given, but recorded).
        spec: a DatasetSpec with 19 classes (the registered "semantickitti").
        require_labels: if False, a scan without a .label file gets `segment=None`.
        sequences: read these sequence folders instead of the split's official list.
    Raises:
        ConfigError for an unknown split or a spec with another class count; DataError for a
        missing root, sequence folder or velodyne folder, or a root marked unfinished.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        spec: DatasetSpec,
        *,
        require_labels: bool = True,
        sequences: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.spec = spec
        self.require_labels = require_labels
        if getattr(spec, "num_classes", None) != len(SEMANTICKITTI19_CLASSES):
            raise ConfigError(
                f"dataset {getattr(spec, 'name', spec)!r} has "
                f"{getattr(spec, 'num_classes', '?')} classes; the SemanticKITTI reader maps "
                f"labels to {len(SEMANTICKITTI19_CLASSES)} (use dataset 'semantickitti')"
            )
        self.sequences = split_sequences(split, sequences)
        check_finished(self.root)
        self._seq_root = sequences_root(self.root)
        missing = [s for s in self.sequences if not (self._seq_root / s).is_dir()]
        if missing:
            have = sorted(p.name for p in self._seq_root.iterdir() if p.is_dir())
            raise DataError(
                f"split {split!r} needs sequence folder(s) {', '.join(missing)} under "
                f"{self._seq_root}, which holds only {', '.join(have) or 'none'}; download them, "
                "or read the ones you have with sequences=('NN', ...) (--sequences)"
            )
        self.scene_ids: list[str] = [
            f"{seq}_{frame}"
            for seq in self.sequences
            for frame in _list_frames(self._seq_root / seq)
        ]
        self._known = frozenset(self.scene_ids)

    def __len__(self) -> int:
        return len(self.scene_ids)

    def __repr__(self) -> str:
        return (
            f"SemanticKittiScenes(root={str(self.root)!r}, split={self.split!r}, "
            f"sequences={list(self.sequences)}, scenes={len(self)})"
        )

    def paths(self, scene_id: str) -> tuple[Path, Path]:
        """(velodyne .bin, .label) paths of a scene id `NN_FFFFFF`."""
        match = _SCENE_ID.match(scene_id) if isinstance(scene_id, str) else None
        if match is None or scene_id not in self._known:
            raise DataError(
                f"scene {scene_id!r} is not in split {self.split!r} of {self.root} (ids are "
                f"NN_FFFFFF of sequences {', '.join(self.sequences)})"
            )
        seq_dir = self._seq_root / match.group(1)
        return seq_dir / "velodyne" / f"{match.group(2)}.bin", seq_dir / "labels" / (
            f"{match.group(2)}.label"
        )

    def load(self, scene_id: str) -> PointCloud:
        """One scan as a PointCloud: coord float32 (N, 3), strength float32 (N, 1) = remission,
        segment int64 (N,) in 0..18 / -1 (None for an unlabelled scan when labels are optional),
        origin_index arange(N), num_classes 19."""
        bin_path, label_path = self.paths(scene_id)
        coord, remission = read_scan(bin_path)
        segment = None
        if label_path.exists() or self.require_labels:
            if not label_path.exists():
                raise DataError(
                    f"scene {scene_id!r}: label file {label_path} is missing; labelled splits "
                    "need sequences/NN/labels/ (the SemanticKITTI label download); for "
                    "unlabelled scans pass require_labels=False"
                )
            segment = read_labels(label_path, bin_path, len(coord))
        try:
            return PointCloud(
                coord=coord,
                origin_index=np.arange(len(coord), dtype=np.int64),
                scene_id=scene_id,
                strength=remission[:, None],
                segment=segment,
                num_classes=len(SEMANTICKITTI19_CLASSES),
            )
        except DataError as exc:
            raise DataError(f"{exc} (file {bin_path})") from None
