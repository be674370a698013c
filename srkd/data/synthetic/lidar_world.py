"""The procedural street a synthetic lidar scans (srkd.data.synthetic.lidar): primitives + labels.

A street runs along +x: a road (|y| < road_half), sidewalks beside it, terrain beyond, and an
optional cross street (|x - cross_x| < road_half). Along it stand buildings (boxes), trees
(trunk cylinder + canopy sphere), bushes (spheres), poles (thin cylinders), parked and oncoming
cars / trucks / buses (boxes, a car with a cabin box on its body), pedestrians (cylinders on the
sidewalks), traffic cones and barriers at the road edge. The ego vehicle drives along the lane
y = -0.3 road_half, which is kept free (vehicles park on its side only on roads wider than 10 m).

Every primitive carries its nuScenes-lidarseg RAW category id (category.json `index`; mapped to
the 16 training classes by srkd.data.outdoor.classes.NUSCENES_RAW_TO_16) and a reflectivity in
[0, 1] that sets its return intensity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# nuScenes-lidarseg raw category ids (NUSCENES_RAW_CATEGORIES index)
NOISE, PEDESTRIAN, BARRIER, TRAFFIC_CONE = 0, 2, 9, 12
BUS, CAR, TRUCK = 16, 17, 23
DRIVEABLE, SIDEWALK, TERRAIN, MANMADE, VEGETATION = 24, 26, 27, 28, 30

REFLECTIVITY: dict[int, float] = {
    DRIVEABLE: 0.08, SIDEWALK: 0.16, TERRAIN: 0.22, VEGETATION: 0.28, MANMADE: 0.32,
    CAR: 0.38, TRUCK: 0.42, BUS: 0.42, PEDESTRIAN: 0.2, BARRIER: 0.6, TRAFFIC_CONE: 0.9,
    NOISE: 0.05,
}  # fmt: skip
"""Mean reflectivity of each material (traffic cones and barriers are retro-reflective)."""

WORLD_X = (-90.0, 190.0)
"""Street extent along x in metres (the ego drives from x = 0 towards +x)."""


@dataclass
class Primitives:
    """Growing lists of one primitive kind; `arrays()` stacks them.

    boxes:     centre (3), half size (3), yaw (radians about z), raw label, reflectivity
    cylinders: centre x, y, z0 (bottom), z1 (top), radius, raw label, reflectivity (vertical)
    spheres:   centre (3), radius, raw label, reflectivity
    """

    boxes: list[tuple[float, ...]] = field(default_factory=list)
    cylinders: list[tuple[float, ...]] = field(default_factory=list)
    spheres: list[tuple[float, ...]] = field(default_factory=list)

    def box(self, center: tuple[float, float, float], size: tuple[float, float, float],
            yaw: float, label: int) -> None:
        """An oriented box of full `size` (length x, width y, height z before the yaw)."""
        self.boxes.append((*center, *(s / 2 for s in size), yaw, label, REFLECTIVITY[label]))

    def cylinder(self, x: float, y: float, z0: float, z1: float, radius: float, label: int) -> None:
        """A vertical cylinder from z0 to z1."""
        self.cylinders.append((x, y, z0, z1, radius, label, REFLECTIVITY[label]))

    def sphere(self, center: tuple[float, float, float], radius: float, label: int) -> None:
        """A sphere."""
        self.spheres.append((*center, radius, label, REFLECTIVITY[label]))


@dataclass(frozen=True)
class Street:
    """One procedural world. Arrays are float64; the label columns hold raw ids as floats.

    boxes (B, 9), cylinders (C, 7), spheres (S, 6): rows as in `Primitives`.
    road_half: half width of the road; sidewalk: sidewalk width (m); cross_x: x of the cross
    street's centre line, or None; lane_y: y of the ego lane.
    """

    boxes: np.ndarray
    cylinders: np.ndarray
    spheres: np.ndarray
    road_half: float
    sidewalk: float
    cross_x: float | None
    lane_y: float

    def ground_label(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """int64 raw label of ground points at (x, y): road, sidewalk or terrain."""
        ay = np.abs(y)
        road = ay < self.road_half
        walk = ay < self.road_half + self.sidewalk
        if self.cross_x is not None:
            ax = np.abs(x - self.cross_x)
            road |= ax < self.road_half
            walk |= ax < self.road_half + self.sidewalk
        return np.where(road, DRIVEABLE, np.where(walk, SIDEWALK, TERRAIN)).astype(np.int64)


def _stack(rows: list[tuple[float, ...]], width: int) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, width)


def build_street(rng: np.random.Generator) -> Street:
    """Draw one street from `rng` (same state, same street)."""
    road_half = float(rng.uniform(3.5, 6.0))
    sidewalk = float(rng.uniform(2.0, 4.0))
    cross_x = float(rng.uniform(15.0, 45.0)) if rng.random() < 0.6 else None
    prims = Primitives()
    edge = road_half + sidewalk
    for side in (-1.0, 1.0):
        _buildings(rng, prims, side, edge, road_half, cross_x)
        _roadside(rng, prims, side, road_half, edge, cross_x)
        _parked(rng, prims, side, road_half, cross_x)
    _oncoming(rng, prims, road_half, cross_x)
    return Street(_stack(prims.boxes, 9), _stack(prims.cylinders, 7), _stack(prims.spheres, 6),
                  road_half, sidewalk, cross_x, -0.3 * road_half)  # fmt: skip


def _clear_of_cross(x0: float, x1: float, cross_x: float | None, margin: float) -> bool:
    return cross_x is None or x1 < cross_x - margin or x0 > cross_x + margin


def _buildings(rng: np.random.Generator, prims: Primitives, side: float, edge: float,
               road_half: float, cross_x: float | None) -> None:
    x = WORLD_X[0]
    while x < WORLD_X[1]:
        length = rng.uniform(8.0, 25.0)
        if _clear_of_cross(x, x + length, cross_x, road_half + 3.0) and rng.random() < 0.85:
            depth, height = rng.uniform(8.0, 15.0), rng.uniform(4.0, 20.0)
            y = side * (edge + rng.uniform(0.5, 5.0) + depth / 2)
            prims.box((x + length / 2, y, height / 2), (length, depth, height), 0.0, MANMADE)
        elif rng.random() < 0.7:  # a garden: bushes on terrain
            for _ in range(int(rng.integers(1, 4))):
                r = rng.uniform(0.5, 1.2)
                bx, by = x + rng.uniform(0, length), side * (edge + rng.uniform(1.0, 8.0))
                prims.sphere((bx, by, r * 0.6), r, VEGETATION)
        x += length + rng.uniform(0.0, 6.0)


def _roadside(rng: np.random.Generator, prims: Primitives, side: float, road_half: float,
              edge: float, cross_x: float | None) -> None:
    """Trees and poles along the sidewalk, pedestrians on it, cones and barriers at the kerb."""
    x = WORLD_X[0] + rng.uniform(0, 10)
    while x < WORLD_X[1]:
        if _clear_of_cross(x, x, cross_x, road_half + 1.0):
            y = side * (edge - rng.uniform(0.4, 0.9))
            if rng.random() < 0.65:
                trunk, r = rng.uniform(2.0, 3.5), rng.uniform(1.4, 3.0)
                prims.cylinder(x, y, 0.0, trunk, rng.uniform(0.15, 0.3), VEGETATION)
                prims.sphere((x, y, trunk + 0.7 * r), r, VEGETATION)
            else:
                prims.cylinder(x, y, 0.0, rng.uniform(5.0, 8.0), rng.uniform(0.08, 0.15), MANMADE)
        x += rng.uniform(6.0, 14.0)
    for _ in range(int(rng.integers(4, 12))):
        px = rng.uniform(-30.0, 60.0)
        py = side * rng.uniform(road_half + 0.4, edge - 0.3)
        prims.cylinder(px, py, 0.0, rng.uniform(1.55, 1.9), rng.uniform(0.2, 0.3), PEDESTRIAN)
    for _ in range(int(rng.integers(1, 4))):  # a short works zone of cones, or a barrier row
        x0 = rng.uniform(-15.0, 50.0)
        kerb = side * (road_half - 0.3)
        if rng.random() < 0.5:
            for k in range(int(rng.integers(3, 7))):
                prims.cylinder(x0 + 2.0 * k, kerb, 0.0, 0.7, 0.16, TRAFFIC_CONE)
        else:
            for k in range(int(rng.integers(2, 5))):
                prims.box((x0 + 2.1 * k, kerb, 0.5), (2.0, 0.35, 1.0), 0.0, BARRIER)


def _vehicle(rng: np.random.Generator, prims: Primitives, x: float, y: float, yaw: float,
             label: int) -> float:
    """One vehicle centred at (x, y); returns its length."""
    if label == CAR:
        length, width = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95)
        prims.box((x, y, 0.65), (length, width, 0.8), yaw, CAR)  # body, 0.25 m above ground
        prims.box((x - 0.2 * np.cos(yaw), y - 0.2 * np.sin(yaw), 1.3),
                  (length * 0.55, width * 0.9, 0.5), yaw, CAR)  # cabin  # fmt: skip
        return length
    length = rng.uniform(6.0, 9.0) if label == TRUCK else rng.uniform(10.0, 12.5)
    width, height = rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.8)
    prims.box((x, y, 0.3 + height / 2), (length, width, height), yaw, label)
    return length


def _kind(rng: np.random.Generator, parked: bool = False) -> int:
    """Vehicle class: mostly cars; buses only drive (they do not park at the kerb)."""
    return int(rng.choice([CAR] * 6 + ([TRUCK] if parked else [TRUCK, BUS])))


def _parked(rng: np.random.Generator, prims: Primitives, side: float, road_half: float,
            cross_x: float | None) -> None:
    if side < 0 and road_half < 5.0:  # the ego's side of a narrow road stays free
        return
    x = WORLD_X[0] + rng.uniform(0, 8)
    while x < WORLD_X[1] - 20:
        kind = _kind(rng, parked=True)
        if _clear_of_cross(x - 7, x + 7, cross_x, road_half + 2) and rng.random() < 0.55:
            yaw = (0.0 if side > 0 else np.pi) + rng.normal(0, 0.03)
            x += _vehicle(rng, prims, x, side * (road_half - 1.15), yaw, kind)
        x += rng.uniform(1.0, 9.0)


def _oncoming(rng: np.random.Generator, prims: Primitives, road_half: float,
              cross_x: float | None) -> None:
    """Vehicles in the opposite lane (y > 0, between the parked row and the centre line)."""
    for _ in range(int(rng.integers(2, 6))):
        x = rng.uniform(12.0, 120.0)  # ahead of the ego's start
        if road_half > 4.2 and _clear_of_cross(x - 7, x + 7, cross_x, road_half + 2):
            _vehicle(rng, prims, x, road_half * 0.35, np.pi + rng.normal(0, 0.02), _kind(rng))
