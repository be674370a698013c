"""Typed value objects shared by the whole library (numpy only, no torch).

`PointCloud` is the one container that carries a scene through reading, transforms and
voxelisation. Every operation that drops, duplicates or reorders points goes through
`PointCloud.select`, so `origin_index` (the point's position in the scene as stored on disk)
always follows the point; the teacher cache is keyed by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from srkd.errors import DataError

FEATURE_WIDTHS: dict[str, int] = {"coord": 3, "color": 3, "normal": 3, "strength": 1}
"""Channels of each (N, C) per-point field that can be a model input."""

UNPOOLING_MODES: tuple[str, ...] = ("v3m1", "v3m2")
"""PTv3 decoder semantics (srkd.models.ptv3_blocks.SerializedUnpooling): "v3m1" = Pointcept's
PT-v3m1, whose first decoder block of each stage convolves the projected skip features in its
positional encoding; "v3m2" = it convolves the sum (Pointcept's later models)."""

LOSS_METHODS: tuple[str, ...] = ("srkd", "srkd-scarce", "srkd-release", "kd", "mse", "cwd", "relation", "ce")
"""The loss recipes `--method` names (their weights: srkd.losses.recipes)."""

TARGET_MODES: tuple[str, ...] = ("view", "canonical", "ensemble", "labels")
"""Where a distilled student's cached targets come from (`--targets`, srkd.distill.targets): a replayed
cached view, view 0 under the student's own augmentation, the mean over the cached views, or
`labels`: the ground truth as one-hot logits in the teacher's place (a label-only control; with a
cache the student still replays its views, so `--method ce --targets labels` is the student alone
on exactly the cached views)."""

DEFAULT_DATASET = "scannet"
"""The dataset of a command (and a loss recipe) when none is given or recorded."""

TRAIN_SPLIT = "train"
"""The split a model is trained on and a cache is built for when none is given."""

VAL_SPLIT = "val"
"""The split validated during training and scored by `srkd evaluate` when none is given."""

CODEC_NAMES: tuple[str, ...] = ("int8", "float16", "lossless", "compact")
"""The teacher cache's codecs (`--codec`; their parameters: srkd.cache.codecs)."""

DEFAULT_CODEC = "compact"
"""The codec of a cache built without --codec: ~21 bytes per point at KL ~5e-4 and affinity
error ~7e-3 on the demo teacher (docs/cache-at-scale.md, "Bytes per point"); int8 ~43."""

SEQUENCE_SAMPLES = 40
"""Most samples a teacher cache packs into one sequence (`--sequence-samples`; a nuScenes scene has
about 40 keyframes): one build task, so it bounds a task's memory and the work a crash redoes."""

VIEWS = 1
"""Cached views per scene without --views: view 0 alone, the scene as stored."""

VIEW_SEED = 0
"""Seed of a cache's augmented views 1..V-1 without --seed."""

CONTENT_FIELDS: tuple[str, ...] = ("coord", "color", "normal", "segment")
"""The fields whose content identifies a scene's data (PointCloud.content_sha256)."""

OPTIONAL_CONTENT_FIELDS: tuple[str, ...] = ("strength",)
"""Content fields hashed only when present (so that the identity of scenes without them, e.g. every
ScanNet scene, is the same as before the field existed)."""

IGNORE_INDEX = -1
"""Label value of points that have no ground truth (ScanNet and Pointcept convention)."""


@dataclass(frozen=True, eq=False)
class PointCloud:
    """One scene (or one view / crop of it) as per-point arrays.

    Fields (N points):
        coord:        float32 (N, 3), metres.
        origin_index: int64 (N,), index of the point in the scene as stored on disk.
        color:        float32 (N, 3) in [0, 255] (as read) or normalised by a transform; optional.
        normal:       float32 (N, 3), unit vectors; optional.
        strength:     float32 (N, 1), lidar return intensity scaled to [0, 1] (outdoor scans);
                      optional.
        segment:      int64 (N,), class id in [0, num_classes) or -1 = ignore; optional.
        instance:     int64 (N,), instance id or -1 = none; optional.
        scene_id:     name of the scene (used in error messages and as the cache key).
        num_classes:  label range used to validate `segment`; 0 disables the range check.

    Construction validates and normalises dtypes; violations raise `DataError` naming the scene,
    the field and the offending value. Instances are immutable: transforms return new ones.
    """

    coord: np.ndarray
    origin_index: np.ndarray
    scene_id: str = "scene"
    color: np.ndarray | None = None
    normal: np.ndarray | None = None
    strength: np.ndarray | None = None
    segment: np.ndarray | None = None
    instance: np.ndarray | None = None
    num_classes: int = 0

    PER_POINT_FIELDS: ClassVar[tuple[str, ...]] = (
        "coord",
        "origin_index",
        "color",
        "normal",
        "strength",
        "segment",
        "instance",
    )
    _DTYPES: ClassVar[dict[str, Any]] = {
        "coord": np.float32,
        "origin_index": np.int64,
        "color": np.float32,
        "normal": np.float32,
        "strength": np.float32,
        "segment": np.int64,
        "instance": np.int64,
    }
    _WIDTH: ClassVar[dict[str, int]] = FEATURE_WIDTHS

    def __post_init__(self) -> None:
        n = None
        for name in self.PER_POINT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            arr = self._check_field(name, value)
            object.__setattr__(self, name, arr)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise DataError(
                    f"scene {self.scene_id!r}: field {name!r} has {len(arr)} points but "
                    f"'coord' has {n}; every per-point field must have the same length"
                )
        if n == 0:
            raise DataError(f"scene {self.scene_id!r}: the scene has no points")
        if not np.isfinite(self.coord).all():
            bad = int(np.argwhere(~np.isfinite(self.coord))[0, 0])
            raise DataError(
                f"scene {self.scene_id!r}: field 'coord' has a non-finite value "
                f"{self.coord[bad].tolist()} at point {bad}"
            )
        if self.segment is not None and self.num_classes > 0:
            bad_mask = (self.segment != IGNORE_INDEX) & (
                (self.segment < 0) | (self.segment >= self.num_classes)
            )
            if bad_mask.any():
                i = int(np.argmax(bad_mask))
                raise DataError(
                    f"scene {self.scene_id!r}: field 'segment' has label {int(self.segment[i])} "
                    f"at point {i}; labels must be in [0, {self.num_classes - 1}] or "
                    f"{IGNORE_INDEX} (ignore)"
                )

    def _check_field(self, name: str, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        want = self._DTYPES[name]
        if np.issubdtype(want, np.integer) and not np.issubdtype(arr.dtype, np.integer):
            raise DataError(
                f"scene {self.scene_id!r}: field {name!r} must hold integers, got dtype {arr.dtype}"
            )
        if np.issubdtype(want, np.floating) and not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise DataError(
                f"scene {self.scene_id!r}: field {name!r} must be numeric, got dtype {arr.dtype}"
            )
        width = self._WIDTH.get(name)
        expected_ndim = 2 if width else 1
        if arr.ndim != expected_ndim or (width and arr.shape[1] != width):
            shape = f"(N, {width})" if width else "(N,)"
            raise DataError(
                f"scene {self.scene_id!r}: field {name!r} has shape {arr.shape}, expected {shape}"
            )
        return np.ascontiguousarray(arr, dtype=want)

    @property
    def num_points(self) -> int:
        """Number of points N."""
        return len(self.coord)

    def fields(self) -> dict[str, np.ndarray]:
        """The per-point fields that are present, by name."""
        return {k: getattr(self, k) for k in self.PER_POINT_FIELDS if getattr(self, k) is not None}

    def select(self, idx: np.ndarray) -> PointCloud:
        """Subset, reorder or duplicate points: every per-point field is indexed by `idx` at once.

        Args:
            idx: int (M,) indices into this cloud, or bool (N,) mask.
        Returns:
            A new PointCloud with M points; `origin_index` follows the points.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool and idx.shape != (self.num_points,):
            raise DataError(
                f"scene {self.scene_id!r}: boolean mask has shape {idx.shape}, "
                f"expected ({self.num_points},)"
            )
        return dataclasses.replace(self, **{k: v[idx] for k, v in self.fields().items()})

    def replace(self, **changes: Any) -> PointCloud:
        """A copy with some fields replaced (validated again), e.g. new coordinates."""
        return dataclasses.replace(self, **changes)

    def feature(self, names: tuple[str, ...] = ("color", "normal")) -> np.ndarray:
        """Concatenate the named per-point fields into the model input, float32 (N, sum widths)."""
        parts = []
        for name in names:
            value = getattr(self, name, None)
            if value is None:
                raise DataError(
                    f"scene {self.scene_id!r}: input feature {name!r} was requested but the "
                    f"scene has no {name!r} field"
                )
            parts.append(value.reshape(self.num_points, -1))
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def content_sha256(self) -> str:
        """Hex sha256 identifying the scene's data: the arrays a teacher sees and the labels
        (CONTENT_FIELDS, each as name, dtype, shape and bytes; an absent field counts as absent; then
        OPTIONAL_CONTENT_FIELDS, only those present).

        Meaningful on a scene as loaded (not on a transformed view): the teacher cache records it
        per scene and distill / evaluate compare it with the scene they load.
        """
        digest = hashlib.sha256()
        for name in CONTENT_FIELDS:
            value = getattr(self, name)
            if value is None:
                digest.update(f"{name}:absent;".encode())
            else:
                _digest_array(digest, name, value)
        for name in OPTIONAL_CONTENT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                _digest_array(digest, name, value)
        return digest.hexdigest()


def _digest_array(digest: Any, name: str, value: np.ndarray) -> None:
    """Feed one named array (name, dtype, shape, then its bytes) into a hashlib digest."""
    array = np.ascontiguousarray(value)
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
