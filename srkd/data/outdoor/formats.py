"""The binary files of the lidar releases, both directions: checked record readers and atomic
file writers shared by the nuScenes and SemanticKITTI readers and writers.

    nuScenes   samples|sweeps/LIDAR_TOP/*.pcd.bin   float32 (N, 5): x, y, z, intensity 0..255, ring
               lidarseg/<version>/*_lidarseg.bin   uint8 (N,): raw lidarseg category id 0..31
    KITTI      sequences/NN/velodyne/FFFFFF.bin     float32 (N, 4): x, y, z, remission 0..1
               sequences/NN/labels/FFFFFF.label     uint32 (N,): semantic id (low 16 bits) |
                                                    instance id (high 16 bits) << 16
All little-endian, no header (the records of `numpy.ndarray.tofile`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from srkd.data.scannet.layout import UNFINISHED, check_finished  # noqa: F401 (check_finished: the readers)
from srkd.errors import DataError
from srkd.io import atomic_write_stream


def read_records(path: Path, dtype: str, width: int, what: str, fix: str) -> np.ndarray:
    """Read a headerless binary file of fixed-size records.

    Args:
        path: the file.
        dtype: little-endian element type, e.g. "<f4" or "<u4".
        width: elements per record (5 for a nuScenes point, 1 for a label).
        what: what the file holds, for the error ("nuScenes lidar scan").
        fix: what the user should do when the file is bad.
    Returns:
        (N, width) array of `dtype` ((N,) when width is 1), native byte order.
    Raises:
        DataError naming the file when it is missing, unreadable, or its size is not a whole
        number of records (a truncated download or copy).
    """
    record = np.dtype(dtype).itemsize * width
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{what} {path} is missing or unreadable ({exc.strerror}); {fix}") from None
    if size % record:
        raise DataError(
            f"{what} {path} is truncated or not in this format: {size} bytes is not a whole "
            f"number of {record}-byte records ({width} x {np.dtype(dtype).name}); {fix}"
        )
    data = np.fromfile(path, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="), copy=False)
    return data if width == 1 else data.reshape(-1, width)


def check_label_count(labels: np.ndarray, points: int, path: Path, scan: Path, fix: str) -> None:
    """DataError naming both files when a label file's length differs from its scan's."""
    if len(labels) != points:
        raise DataError(
            f"label file {path} holds {len(labels)} labels but its scan {scan} holds {points} "
            f"points; a label file needs exactly one label per point; {fix}"
        )


def map_raw_labels(raw: np.ndarray, table: np.ndarray, path: Path, known: str) -> np.ndarray:
    """Map raw ids to training labels with a dense table (srkd.data.outdoor.classes.lookup_table).

    Args:
        raw: non-negative integer (N,) raw ids.
        table: int64 (size,), -2 where the release defines no such id.
        path: the label file, for the error.
        known: the ids the release defines, said in the error.
    Returns:
        int64 (N,) labels in [0, C) or -1 (ignore).
    Raises:
        DataError naming the file and the unknown ids.
    """
    raw = raw.astype(np.int64, copy=False)
    inside = raw < len(table)
    labels = np.full(len(raw), -2, dtype=np.int64)
    labels[inside] = table[raw[inside]]
    if (labels == -2).any():
        unknown = np.unique(raw[labels == -2])
        shown = ", ".join(str(int(u)) for u in unknown[:8])
        raise DataError(
            f"label file {path} holds raw id(s) {shown} ({int((labels == -2).sum())} points) "
            f"that the release does not define ({known}); the file is corrupt or from another "
            "dataset: re-download it"
        )
    return labels


def write_records(path: Path, array: np.ndarray, dtype: str) -> Path:
    """Atomically write `array` as headerless little-endian `dtype` records (`tofile` layout)."""
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype))
    return atomic_write_stream(path, lambda f: f.write(data.tobytes()))


def write_json(path: Path, value: Any) -> Path:
    """Atomically write a JSON table (UTF-8, indented like the releases' tables)."""
    return write_text(path, json.dumps(value, indent=0))


def write_text(path: Path, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    return atomic_write_stream(path, lambda f: f.write(text.encode("utf-8")))


@contextmanager
def unfinished_root(root: Path, what: str) -> Iterator[None]:
    """Mark `root` unfinished (srkd.data.scannet.layout.UNFINISHED) while the body writes into it.

    The marker is removed only when the body returns normally; after a crash or an error it
    stays, and the readers refuse the root until a rerun of the writer completes.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / UNFINISHED, {"writer": what})
    yield
    (root / UNFINISHED).unlink()
