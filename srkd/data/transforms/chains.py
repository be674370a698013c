"""Augmentation chains for training, teacher-cache views and student view replay.

Every transform is a small class over `srkd.types.PointCloud` (see `base` for the
sample/apply protocol, `geometry`, `color`, `sampling` for the
classes). This module builds the chains and turns records into matrices.

Chains (ScanNet, in the order of docs/method.md):

    train_transforms()   = centre shift | dropout | rotate z, x, y | scale | flip | jitter |
                           elastic | chromatic auto-contrast, translation, jitter |
                           grid sample | sphere crop | centre shift (xy) | normalise colour
    view_transforms()    = centre shift | rotate z, x, y | scale | flip
                           (purely geometric and point-preserving: the part a teacher-cache view
                           stores and the student replays)
    student_transforms() = dropout | jitter | elastic | chromatic x3 | grid sample |
                           sphere crop | centre shift (xy) | normalise colour
                           (train_transforms() minus the view part)

Student chain with view replay ("replay a recorded view, then the rest"):

    pc = view_transforms().replay(raw, view_record)        # exact teacher geometry
    pc, rest_record = student_transforms()(pc, rng)        # fresh point-subset/colour draws
    full_record = view_record + rest_record                # replayable with `replay`

(`apply_view_then` does exactly this.) The outdoor (lidar) chains live in `outdoor`;
`domain="outdoor"` selects them where a function here takes a domain (DOMAINS). Dropout moves after the view part here; because the view
part is point-wise with recorded centres, and dropout's subset depends only on the point count,
this is the same distribution as the release's order (docs/method.md) up to the rotation centre of the small x/y
tilts (bounding-box centre of the full versus the dropped-out cloud).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from srkd.errors import ConfigError
from srkd.types import PointCloud

from .base import (
    KINDS,
    TRANSFORMS,
    Compose,
    Record,
    Transform,
    check_record,
    record_from_json,
    record_to_json,
    register_transform,
    replay,
)
from .color import (
    COLOR_NORMS,
    DEFAULT_COLOR_NORM,
    LEGACY_COLOR_NORM,
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    NormalizeColor,
    check_color_norm,
)
from .geometry import (
    CenterShift,
    ElasticDistortion,
    RandomFlip,
    RandomJitter,
    RandomRotate,
    RandomScale,
    rotation_matrix,
)
from .outdoor import (
    outdoor_fragment_transforms,
    outdoor_student_transforms,
    outdoor_train_transforms,
    outdoor_tta_view_records,
    outdoor_view_record,
    outdoor_view_transforms,
)
from .sampling import (
    INDOOR_GRID_SIZE,
    OUTDOOR_GRID_SIZE,
    SPHERE_CROP_POINTS,
    GridSample,
    RandomDropout,
    SphereCrop,
    VoxelCloud,
    with_grid,
)

__all__ = [
    "COLOR_NORMS",
    "DEFAULT_COLOR_NORM",
    "DOMAINS",
    "INDOOR_GRID_SIZE",
    "KINDS",
    "LEGACY_COLOR_NORM",
    "OUTDOOR_GRID_SIZE",
    "TRANSFORMS",
    "CenterShift",
    "ChromaticAutoContrast",
    "ChromaticJitter",
    "ChromaticTranslation",
    "Compose",
    "ElasticDistortion",
    "GridSample",
    "NormalizeColor",
    "RandomDropout",
    "RandomFlip",
    "RandomJitter",
    "RandomRotate",
    "RandomScale",
    "Record",
    "SphereCrop",
    "Transform",
    "VoxelCloud",
    "apply_view_then",
    "canonical_chain",
    "canonical_view_record",
    "check_color_norm",
    "check_domain",
    "check_record",
    "fragment_transforms",
    "geometry_matrix",
    "outdoor_student_transforms",
    "outdoor_train_transforms",
    "outdoor_view_transforms",
    "record_from_json",
    "record_to_json",
    "register_transform",
    "replay",
    "rotation_matrix",
    "student_transforms",
    "train_transforms",
    "tta_view_records",
    "view_record",
    "view_transforms",
    "with_grid",
]

TILT = math.pi / 64
"""Largest x/y rotation of the ScanNet recipe, radians."""

DOMAINS: tuple[str, ...] = ("indoor", "outdoor")
"""Which recipe's chains a dataset uses: "indoor" (ScanNet: colour + normal, centre shifts, 13
test views) or "outdoor" (lidar: coord + strength, no centre shift, 10 test views)."""


def check_domain(domain: str) -> str:
    """`domain` if it is one of DOMAINS, else ConfigError naming the known ones."""
    if domain not in DOMAINS:
        raise ConfigError(f"unknown transform domain {domain!r}; known: {', '.join(DOMAINS)}")
    return domain


def view_transforms(
    rotate_z: tuple[float, float] = (-math.pi, math.pi),
    tilt: float = TILT,
    scale: tuple[float, float] = (0.9, 1.1),
    p_rotate: float = 0.5,
    p_flip: float = 0.5,
) -> Compose:
    """The geometric, point-preserving view chain (its record is what a cached view stores).

    centre shift (z min to 0) | rotate z (about the origin) | rotate x, y by up to `tilt`
    (about the bbox centre) | scale | flip.
    """
    return Compose(
        [
            CenterShift(apply_z=True),
            RandomRotate(rotate_z, axis="z", center=(0.0, 0.0, 0.0), p=p_rotate),
            RandomRotate((-tilt, tilt), axis="x", p=p_rotate),
            RandomRotate((-tilt, tilt), axis="y", p=p_rotate),
            RandomScale(scale),
            RandomFlip(p=p_flip),
        ]
    )


def student_transforms(
    grid_size: float = INDOOR_GRID_SIZE,
    max_points: int = SPHERE_CROP_POINTS,
    dropout: tuple[float, float] = (0.2, 0.2),
    jitter: tuple[float, float] = (0.005, 0.02),
    elastic: bool = True,
    chromatic: bool = True,
    color_norm: str = DEFAULT_COLOR_NORM,
) -> Compose:
    """Everything of the training chain after the view part (see the module docstring).

    Args:
        grid_size: voxel edge in metres for the train-mode grid sample.
        max_points: sphere crop size.
        dropout: (ratio, probability); probability 0 disables it.
        jitter: (sigma, clip) in metres; sigma 0 disables it.
        elastic: include elastic distortion (Pointcept's two scales).
        chromatic: include the three chromatic transforms.
        color_norm: the model's input colour normalisation (COLOR_NORMS key).
    """
    chain: list[Transform] = []
    if dropout[1] > 0:
        chain.append(RandomDropout(ratio=dropout[0], p=dropout[1]))
    chain.extend(_deform_and_colour(jitter, elastic, chromatic))
    chain.extend(_tail(grid_size, max_points, color_norm))
    return Compose(chain)


def train_transforms(
    grid_size: float = INDOOR_GRID_SIZE,
    max_points: int = SPHERE_CROP_POINTS,
    dropout: tuple[float, float] = (0.2, 0.2),
    jitter: tuple[float, float] = (0.005, 0.02),
    elastic: bool = True,
    chromatic: bool = True,
    color_norm: str = DEFAULT_COLOR_NORM,
    **view_options: Any,
) -> Compose:
    """The full ScanNet training chain in the release's order (docs/method.md) (arguments as `student_transforms`;
    `view_options` go to `view_transforms`)."""
    view = view_transforms(**view_options).transforms
    chain: list[Transform] = [view[0]]
    if dropout[1] > 0:
        chain.append(RandomDropout(ratio=dropout[0], p=dropout[1]))
    chain.extend(view[1:])
    chain.extend(_deform_and_colour(jitter, elastic, chromatic))
    chain.extend(_tail(grid_size, max_points, color_norm))
    return Compose(chain)


def _deform_and_colour(
    jitter: tuple[float, float], elastic: bool, chromatic: bool
) -> list[Transform]:
    out: list[Transform] = []
    if jitter[0] > 0:
        out.append(RandomJitter(sigma=jitter[0], clip=jitter[1]))
    if elastic:
        out.append(ElasticDistortion())
    if chromatic:
        out.extend([ChromaticAutoContrast(), ChromaticTranslation(), ChromaticJitter()])
    return out


def _tail(grid_size: float, max_points: int, color_norm: str) -> list[Transform]:
    return [
        GridSample(grid_size),
        SphereCrop(max_points),
        CenterShift(apply_z=False),
        NormalizeColor(color_norm),
    ]


def fragment_transforms(color_norm: str = DEFAULT_COLOR_NORM, domain: str = "indoor") -> Compose:
    """Applied to each test-mode fragment, as at the end of the training chain: indoors, centre
    shift in x/y, then the model's colour normalisation; outdoors nothing."""
    if check_domain(domain) == "outdoor":
        return outdoor_fragment_transforms()
    return Compose([CenterShift(apply_z=False), NormalizeColor(color_norm)])


def canonical_chain(domain: str = "indoor") -> Compose:
    """The chain of a scene's canonical (as stored) view: the z-to-0 centre shift indoors,
    nothing outdoors (a lidar scan stays in its sensor frame)."""
    if check_domain(domain) == "outdoor":
        return Compose([])
    return Compose([CenterShift(apply_z=True)])


def canonical_view_record(pc: PointCloud, domain: str = "indoor") -> Record:
    """The record of `pc`'s untransformed view in its domain's view chain (`view_record(pc)`
    indoors, `outdoor_view_record()` outdoors)."""
    if check_domain(domain) == "outdoor":
        return outdoor_view_record()
    return view_record(pc)


def apply_view_then(
    pc: PointCloud, view_record: Record, rest: Compose, rng: np.random.Generator
) -> tuple[PointCloud, Record]:
    """Replay a recorded view on `pc`, then draw `rest`; returns the output and the full record."""
    out = replay(pc, view_record)
    out, rest_record = rest(out, rng)
    return out, list(view_record) + rest_record


def geometry_matrix(record: Record, strict: bool = True) -> np.ndarray:
    """Compose the affine entries of a record into one float64 (4, 4) matrix M.

    For a record without deform entries, ``out.coord ≈ (M @ [raw.coord[out.origin_index]; 1])``
    (float32 rounding per step aside). Subset and colour entries are the identity.

    Args:
        record: a transform record.
        strict: raise ConfigError if an applied deform entry (jitter, elastic) is present, since
            the output then is not an affine image of the input; with False they are skipped.
    """
    m = np.eye(4)
    for entry in check_record(record):
        t = TRANSFORMS.get(entry["name"])()
        if t.kind == "affine":
            m = t.affine(entry["params"]) @ m
        elif t.kind == "deform" and strict and entry["params"].get("applied", True):
            raise ConfigError(
                f"record entry {entry['name']!r} is a non-affine deformation; use strict=False "
                "to get the matrix of the affine entries only"
            )
    return m


def view_record(
    pc: PointCloud,
    angle_z: float = 0.0,
    scale: float = 1.0,
    flip_x: bool = False,
    flip_y: bool = False,
) -> Record:
    """A deterministic record for `view_transforms()` (centre shift computed from `pc`).

    Used for test-time-augmented views: rotation `angle_z` radians about the origin, uniform
    `scale`, optional flips; no x/y tilt.
    """
    shift = CenterShift(apply_z=True).sample(pc, np.random.default_rng(0))
    no_tilt = {"applied": False, "angle": 0.0, "center": [0.0] * 3}
    return [
        {"name": "center_shift", "params": shift},
        {
            "name": "rotate",
            "params": {"applied": angle_z != 0.0, "axis": "z", "angle": float(angle_z),
                       "center": [0.0] * 3},
        },
        {"name": "rotate", "params": {**no_tilt, "axis": "x"}},
        {"name": "rotate", "params": {**no_tilt, "axis": "y"}},
        {"name": "scale", "params": {"scale": [float(scale)] * 3}},
        {"name": "flip", "params": {"x": bool(flip_x), "y": bool(flip_y)}},
    ]


def tta_view_records(pc: PointCloud, domain: str = "indoor") -> list[Record]:
    """The test-time views of the release (docs/method.md). Indoors the 13 ScanNet views: z rotations
    0, 90, 180, 270 degrees at scales 1, 0.95, 1.05, plus one x-and-y flip; outdoors the 10 lidar
    views of `outdoor_tta_view_records`."""
    if check_domain(domain) == "outdoor":
        return outdoor_tta_view_records()
    views = [
        view_record(pc, angle_z=k * math.pi / 2, scale=s)
        for s in (1.0, 0.95, 1.05)
        for k in range(4)
    ]
    views.append(view_record(pc, flip_x=True, flip_y=True))
    return views
