"""Augmentation chains of the outdoor (lidar) recipe: nuScenes and SemanticKITTI.

The release trains its outdoor models with Pointcept's nuScenes recipe (docs/method.md; Pointcept
`configs/nuscenes/semseg-pt-v3m1-0-base.py`): the model input is the coordinates themselves plus
the return intensity (feat keys `coord`, `strength`), so there is no centre shift (it would move
the input features) and no colour operation:

    outdoor_train_transforms()   = rotate z (about the sensor, p 0.5) | scale 0.9..1.1 |
                                   flip (x, y, each p 0.5) | jitter (sigma 0.005, clip 0.02) |
                                   grid sample 0.05 m
    outdoor_view_transforms()    = rotate z | scale | flip     (point-preserving, affine: the part a
                                   teacher-cache view stores and the student replays)
    outdoor_student_transforms() = jitter | grid sample         (the rest)
    outdoor_tta_view_records()   = scales 0.9, 0.95, 1, 1.05, 1.1, each without and with a flip of
                                   both x and y (Pointcept's RandomFlip p=1): 10 views

Pointcept's test config first grid-samples the scan at 0.025 m (train mode, with the inverse map)
before the 0.05 m fragments; srkd scores every original point through the fragments directly,
which covers each point with the same 0.05 m voxelisation.
"""

from __future__ import annotations

import math
from typing import Any

from srkd.errors import ConfigError

from .base import Compose, Record, Transform
from .geometry import RandomFlip, RandomJitter, RandomRotate, RandomScale
from .sampling import OUTDOOR_GRID_SIZE, GridSample

OUTDOOR_TTA_SCALES: tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
"""Scales of the outdoor test-time views (each also flipped: 10 views)."""


def outdoor_view_transforms(
    rotate_z: tuple[float, float] = (-math.pi, math.pi),
    scale: tuple[float, float] = (0.9, 1.1),
    p_rotate: float = 0.5,
    p_flip: float = 0.5,
) -> Compose:
    """The geometric view chain of a lidar scan: rotate z about the origin (the sensor) with
    probability `p_rotate` | uniform scale in `scale` | flip x and y, each with `p_flip`."""
    return Compose(
        [
            RandomRotate(rotate_z, axis="z", center=(0.0, 0.0, 0.0), p=p_rotate),
            RandomScale(scale),
            RandomFlip(p=p_flip),
        ]
    )


def outdoor_student_transforms(
    grid_size: float = OUTDOOR_GRID_SIZE, jitter: tuple[float, float] = (0.005, 0.02)
) -> Compose:
    """What follows the view part in training: jitter (sigma, clip in metres; sigma 0 disables
    it) | grid sample at `grid_size` metres."""
    chain: list[Transform] = []
    if jitter[0] > 0:
        chain.append(RandomJitter(sigma=jitter[0], clip=jitter[1]))
    chain.append(GridSample(grid_size))
    return Compose(chain)


def outdoor_train_transforms(
    grid_size: float = OUTDOOR_GRID_SIZE,
    jitter: tuple[float, float] = (0.005, 0.02),
    **view_options: Any,
) -> Compose:
    """The full outdoor training chain (view part, then `outdoor_student_transforms`)."""
    return outdoor_view_transforms(**view_options) + outdoor_student_transforms(grid_size, jitter)


def outdoor_view_record(scale: float = 1.0, flip: bool = False, angle_z: float = 0.0) -> Record:
    """A deterministic record of `outdoor_view_transforms()`: rotation `angle_z` radians about the
    origin, uniform `scale`, and (with `flip`) x and y both negated."""
    if not scale > 0:
        raise ConfigError(f"a view's scale must be > 0, got {scale}")
    return [
        {
            "name": "rotate",
            "params": {"applied": angle_z != 0.0, "axis": "z", "angle": float(angle_z),
                       "center": [0.0] * 3},
        },
        {"name": "scale", "params": {"scale": [float(scale)] * 3}},
        {"name": "flip", "params": {"x": bool(flip), "y": bool(flip)}},
    ]  # fmt: skip


def outdoor_tta_view_records() -> list[Record]:
    """The 10 outdoor test-time views: OUTDOOR_TTA_SCALES without, then with, the x-and-y flip
    (Pointcept's nuScenes `aug_transform` order)."""
    return [outdoor_view_record(s, flip) for flip in (False, True) for s in OUTDOOR_TTA_SCALES]


def outdoor_fragment_transforms() -> Compose:
    """Per test fragment: nothing (the coordinates are an input feature, so no centre shift)."""
    return Compose([])
