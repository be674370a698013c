"""An exported student run by onnxruntime: numpy in, numpy out (no torch, no spconv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srkd.errors import ConfigError, DataError
from srkd.runtime.indices import build_indices
from srkd.runtime.spec import StudentSpec, read_spec


def session_for(path: str | Path, threads: int | None = None):
    """An onnxruntime InferenceSession on the CPU for the ONNX file at `path` (`threads` intra-op
    threads; None = onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an exported student needs onnxruntime: pip install onnxruntime "
                          "(or srkd[deploy])") from None  # fmt: skip
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Student:
    """An exported student: `logits(coord, feat)` and `label(coord, color=..., normal=...)`."""

    def __init__(self, folder: Path, spec: StudentSpec, threads: int | None = None) -> None:
        if spec.network_format != "onnx":
            raise ConfigError(f"{folder} holds a {spec.network_format} program; srkd.runtime runs ONNX exports "
                              "(export with --format onnx)")  # fmt: skip
        self.folder = Path(folder)
        self.spec = spec
        self.session = session_for(self.folder / spec.network, threads)
        self.input_names = list(spec.inputs)

    def indices(self, coord: np.ndarray, offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The network's index inputs for coord float (N, 3) metres (samples ending at offset)."""
        offset = np.array([len(coord)]) if offset is None else np.asarray(offset, dtype=np.int64)
        return build_indices(self.spec.plan, coord, offset, self.spec.grid_size)

    def logits(self, coord: np.ndarray, feat: np.ndarray, offset: np.ndarray | None = None,
               indices: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """float32 (N, K) logits. coord float (N, 3) metres; feat float32 (N, C) the network's
        input features, already normalised (see `features`); offset int64 (B,) sample ends
        (default: one sample); indices: `self.indices(coord, offset)` when already built."""
        coord, feat = _check_points(coord, feat, self.spec.in_channels)
        if offset is not None and len(offset) > 1 and not self.spec.plan.masks:  # one sample per call
            if indices is not None:
                raise DataError("indices can be passed for one sample only")
            ends = np.asarray(offset, dtype=np.int64)
            return np.concatenate([self.logits(coord[a:b], feat[a:b]) for a, b in zip(np.r_[0, ends[:-1]], ends)])
        feeds = dict(indices if indices is not None else self.indices(coord, offset))
        feeds["feat"] = feat
        return self.session.run(["logits"], {n: feeds[n] for n in self.input_names})[0]

    def features(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        """float32 (N, C) network input from per-point fields by name (color in 0..255, normal,
        ...), colours normalised as the model was trained."""
        parts = []
        for name in self.spec.features:
            if fields.get(name) is None:
                raise DataError(f"the model takes {list(self.spec.features)} as input; {name!r} is missing")
            value = np.asarray(fields[name], dtype=np.float64).reshape(len(fields[name]), -1)
            if name == "color":
                value = value * self.spec.color_scale + self.spec.color_shift
            parts.append(value)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def label(self, coord: np.ndarray, **fields: np.ndarray) -> np.ndarray:
        """int64 (N,) class of every point, as `srkd predict --no-tta` labels it: the cloud is
        centred (bounding-box centre in x, y and lowest z at 0), voxelised in test mode into
        fragments of one point per voxel that together cover every point; each fragment runs
        through the network and the argmax of the summed softmax is the label.
        fields: the model's inputs by name (e.g. color=(N, 3) 0..255, normal=(N, 3))."""
        from srkd.data.voxelize import grid_sample

        coord = np.asarray(coord, dtype=np.float32).astype(np.float64)
        lo, hi = coord.min(axis=0), coord.max(axis=0)
        coord = (coord - [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]).astype(np.float32)
        feat = self.features({**fields, "coord": coord})
        total = np.zeros((len(coord), len(self.spec.classes)), dtype=np.float64)
        for idx in grid_sample(coord, self.spec.grid_size, mode="test").fragments:
            logits = self.logits(coord[idx], feat[idx]).astype(np.float64)
            prob = np.exp(logits - logits.max(axis=1, keepdims=True))
            total[idx] += prob / prob.sum(axis=1, keepdims=True)
        return total.argmax(axis=1)


def _check_points(coord: np.ndarray, feat: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    coord, feat = np.asarray(coord), np.asarray(feat, dtype=np.float32)
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise DataError(f"coord must have shape (N, 3) with N > 0, got {coord.shape}")
    if feat.shape != (len(coord), channels):
        raise DataError(f"feat must have shape ({len(coord)}, {channels}), got {feat.shape}")
    if not (np.isfinite(coord).all() and np.isfinite(feat).all()):
        raise DataError("coord or feat holds a non-finite value (NaN or inf)")
    return coord, np.ascontiguousarray(feat)


def load_student(folder: str | Path, threads: int | None = None) -> Student:
    """The exported student in `folder` (ConfigError when it is not an ONNX export)."""
    return Student(Path(folder), read_spec(folder), threads)
