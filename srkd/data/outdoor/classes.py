"""Class names, colours, raw-id maps and splits of the outdoor lidar benchmarks.

nuScenes-lidarseg: the 32 annotated categories (ids 0..31 in the `.bin` label files, the
`index` field of `category.json`) are merged into the 16 challenge classes by the official
fine-to-coarse map (nuscenes-devkit, `eval/lidarseg/utils.py`, LidarsegClassMapper); the
devkit numbers the coarse classes 1..16 with 0 = ignore, training code (Pointcept) shifts them to
0..15 with ignore = -1, which is what srkd uses.

SemanticKITTI: raw semantic ids (lower 16 bits of a `.label` word) are merged into the 19
single-scan classes by the official `learning_map` of semantic-kitti-api's
`config/semantic-kitti.yaml` (moving classes into their static ones, unlabelled / outlier /
other-structure / other-object to ignore); the yaml numbers them 1..19 with 0 = ignore, srkd
uses 0..18 with ignore = -1 (Behley et al., ICCV 2019).
"""

from __future__ import annotations

import numpy as np

IGNORE_LABEL = -1
"""Label of a point that no class covers (noise, unlabelled, ego vehicle...)."""

# ---------------------------------------------------------------------------- nuScenes-lidarseg

NUSCENES_RAW_CATEGORIES: tuple[str, ...] = (
    "noise", "animal", "human.pedestrian.adult", "human.pedestrian.child",
    "human.pedestrian.construction_worker", "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer", "human.pedestrian.stroller", "human.pedestrian.wheelchair",
    "movable_object.barrier", "movable_object.debris", "movable_object.pushable_pullable",
    "movable_object.trafficcone", "static_object.bicycle_rack", "vehicle.bicycle",
    "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction",
    "vehicle.emergency.ambulance", "vehicle.emergency.police", "vehicle.motorcycle",
    "vehicle.trailer", "vehicle.truck", "flat.driveable_surface", "flat.other", "flat.sidewalk",
    "flat.terrain", "static.manmade", "static.other", "static.vegetation", "vehicle.ego",
)  # fmt: skip
"""The 32 nuScenes-lidarseg categories: name i has raw label id i (`category.json` `index`)."""

NUSCENES16_CLASSES: tuple[str, ...] = (
    "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)  # fmt: skip
"""The 16 nuScenes-lidarseg challenge classes in training order 0..15 (devkit index - 1)."""

NUSCENES16_COLORS: tuple[tuple[int, int, int], ...] = (
    (112, 128, 144), (220, 20, 60), (255, 127, 80), (255, 158, 0), (233, 150, 70),
    (255, 61, 99), (0, 0, 230), (47, 79, 79), (255, 140, 0), (255, 99, 71), (0, 207, 191),
    (175, 0, 75), (75, 0, 75), (112, 180, 60), (222, 184, 135), (0, 175, 0),
)  # fmt: skip
"""RGB colour of each nuScenes-16 class (the devkit's coarse colormap)."""

_NUSCENES_FINE_TO_COARSE: dict[str, str | None] = {
    "human.pedestrian.adult": "pedestrian", "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.barrier": "barrier", "movable_object.trafficcone": "traffic_cone",
    "vehicle.bicycle": "bicycle", "vehicle.bus.bendy": "bus", "vehicle.bus.rigid": "bus",
    "vehicle.car": "car", "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle", "vehicle.trailer": "trailer", "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface", "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk", "flat.terrain": "terrain", "static.manmade": "manmade",
    "static.vegetation": "vegetation",
}  # fmt: skip
"""Fine category name -> coarse class name; a category absent here is ignored."""

NUSCENES_RAW_TO_16: dict[int, int] = {
    raw: (
        NUSCENES16_CLASSES.index(_NUSCENES_FINE_TO_COARSE[name])
        if name in _NUSCENES_FINE_TO_COARSE
        else IGNORE_LABEL
    )
    for raw, name in enumerate(NUSCENES_RAW_CATEGORIES)
}
"""Raw lidarseg id 0..31 -> nuScenes-16 label 0..15, or -1 (ignore)."""

# -------------------------------------------------------------------------------- SemanticKITTI

SEMANTICKITTI19_CLASSES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)  # fmt: skip
"""The 19 SemanticKITTI single-scan classes in training order 0..18 (yaml index - 1)."""

SEMANTICKITTI19_RAW_IDS: tuple[int, ...] = (
    10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72, 80, 81,
)  # fmt: skip
"""Raw semantic id of each class (the yaml's learning_map_inv): what a prediction is written as."""

SEMANTICKITTI19_COLORS: tuple[tuple[int, int, int], ...] = (
    (100, 150, 245), (100, 230, 245), (30, 60, 150), (80, 30, 180), (0, 0, 255), (255, 30, 30),
    (255, 40, 200), (150, 30, 90), (255, 0, 255), (255, 150, 255), (75, 0, 75), (175, 0, 75),
    (255, 200, 0), (255, 120, 50), (0, 175, 0), (135, 60, 0), (150, 240, 80), (255, 240, 150),
    (255, 0, 0),
)  # fmt: skip
"""RGB colour of each SemanticKITTI-19 class (the yaml's color_map, which is BGR, reversed)."""

_SEMANTICKITTI_MERGED: dict[int, int] = {
    13: 20, 16: 20, 60: 40,  # bus, on-rails -> other-vehicle; lane-marking -> road
    252: 10, 253: 31, 254: 30, 255: 32, 256: 20, 257: 20, 258: 18, 259: 20,  # moving -> static
}  # fmt: skip
"""Raw id -> the raw id of the class it is merged into."""

_SEMANTICKITTI_IGNORED: tuple[int, ...] = (0, 1, 52, 99)
"""unlabeled, outlier, other-structure, other-object."""

SEMANTICKITTI_LEARNING_MAP: dict[int, int] = {
    **{raw: IGNORE_LABEL for raw in _SEMANTICKITTI_IGNORED},
    **{raw: label for label, raw in enumerate(SEMANTICKITTI19_RAW_IDS)},
    **{raw: SEMANTICKITTI19_RAW_IDS.index(into) for raw, into in _SEMANTICKITTI_MERGED.items()},
}
"""Every raw semantic id of the release (34 ids) -> label 0..18, or -1 (ignore)."""

SEMANTICKITTI_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{seq:02d}" for seq in range(11, 22)),
}
"""Sequence folders of each split; the test sequences have no labels."""


def lookup_table(mapping: dict[int, int], size: int) -> np.ndarray:
    """Dense int64 (size,) table of a raw-id map; ids the map lacks hold -2 ("unknown").

    Indexing the table with a raw label array maps a whole scan at once; a -2 in the result
    marks a raw id the release does not define (callers turn that into a DataError).
    """
    table = np.full(size, -2, dtype=np.int64)
    for raw, label in mapping.items():
        table[raw] = label
    return table
