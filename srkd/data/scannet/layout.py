"""The Pointcept ScanNet scene layout on disk: `<root>/<split>/<scene_id>/<field>.npy`.

Writers (`srkd prepare`, `srkd generate-synthetic`) go through `write_scene`, which writes into a
temporary sibling folder and renames it into place, so a crash never leaves a scene folder that
looks complete. A writer that fills a whole dataset root in place may put an `UNFINISHED` marker
file at the root while it works; readers (srkd.data.scannet) refuse such a root.

Split and scene names are single folder names (`check_split`, `check_scene_id`): every path the
layout builds stays under its dataset root.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from srkd.errors import ConfigError, DataError

SCENE_FILES: dict[str, tuple[str, ...]] = {
    # field name -> accepted dtypes as stored by Pointcept's preprocessing
    "coord": ("float32", "float64"),
    "color": ("uint8", "float32", "float64"),
    "normal": ("float32", "float64"),
    "segment20": ("int64", "int32", "int16"),
    "segment200": ("int64", "int32", "int16"),
    "instance": ("int64", "int32", "int16"),
}
"""File stems of a scene folder (each `<stem>.npy`, one row per point)."""

UNFINISHED = "unfinished.json"
"""Marker file at a dataset root whose writer has not finished (or failed): the root's scenes may be
fewer than intended. Its content is the writer's own (e.g. the synthetic manifest)."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_scene_id(scene_id: str) -> str:
    """Return `scene_id` if it is a safe single path component (no '/', '..', etc.)."""
    if not isinstance(scene_id, str) or not _SAFE_ID.match(scene_id) or ".." in scene_id:
        raise DataError(
            f"scene id {scene_id!r} is not a plain name (letters, digits, '_', '-', '.'); "
            "it would not map to a single folder"
        )
    return scene_id


def check_split(split: str) -> str:
    """Return `split` if it is a plain folder name directly under a dataset root.

    Refused (ConfigError naming the value): non-strings, empty or blank names, '.', '..', names
    starting with '.' (hidden and temporary folders), and anything with '/', '\\' or a NUL byte
    (so also absolute paths). Every place that joins `<root>/<split>` calls this first, so a split
    can never point outside the data root.
    """
    bad = (
        not isinstance(split, str)
        or not split.strip()
        or split.startswith(".")
        or any(c in split for c in ("/", "\\", "\0"))
        or Path(split).is_absolute()
    )
    if bad:
        raise ConfigError(
            f"split {split!r} is not a plain folder name: a split is one folder directly under "
            "the data root (e.g. train, val), without '/', '\\', '..' or a leading '.'"
        )
    return split


def write_scene(root: Path, split: str, scene_id: str, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write one scene folder `<root>/<split>/<scene_id>/` from named arrays.

    Args:
        root: dataset root.
        split: split folder name, e.g. "train" (see `check_split`).
        scene_id: scene folder name (see `check_scene_id`).
        arrays: stem -> array (stems from SCENE_FILES); all with the same first dimension.
    Returns:
        The final scene folder.
    """
    check_split(split)
    check_scene_id(scene_id)
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"scene {scene_id!r}: arrays have different lengths {lengths}")
    unknown = set(arrays) - set(SCENE_FILES)
    if unknown:
        raise DataError(f"scene {scene_id!r}: unknown layout fields {sorted(unknown)}")
    split_dir = Path(root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    final = split_dir / scene_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{scene_id}.", suffix=".tmp", dir=split_dir))
    try:
        for stem, arr in arrays.items():
            np.save(tmp / f"{stem}.npy", np.ascontiguousarray(arr))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def check_finished(root: Path) -> None:
    """DataError when `root` holds the UNFINISHED marker of a writer that stopped part-way (every
    reader, indoor and lidar, refuses such a root)."""
    marker = Path(root) / UNFINISHED
    if marker.exists():
        raise DataError(
            f"dataset root {root} is unfinished ({marker} exists): the command that wrote it "
            "stopped before writing every scene; re-run it with the same options to finish it, "
            "or delete the folder"
        )
