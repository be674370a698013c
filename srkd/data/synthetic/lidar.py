"""Synthetic outdoor lidar scans: a rotating multi-beam lidar ray-cast against a procedural street.

The sensor (`LidarConfig`, defaults after nuScenes' Velodyne HDL-32E: 32 beams from +10.67 to
-30.67 degrees elevation, 1080 azimuth steps per revolution, 70 m range, mounted 1.84 m above
the road) casts one ray per (beam, azimuth step) from its pose; each ray returns the nearest of:
the ground plane z = 0 (labelled road, sidewalk or terrain by where it is hit), oriented boxes,
vertical cylinders and spheres of the street (srkd.data.synthetic.lidar_world). The casting is
vectorised over rays: each primitive is intersected with the rays of its azimuth window in one
numpy pass (a loop over the ~200 primitives, none over rays).

Per return:
    range     true range + N(0, range_noise^2); rays beyond max_range or inside min_range, and a
              `dropout` share of the rest (dark / specular surfaces), give no point
    intensity 0..255: 255 * reflectivity * (0.3 + 0.7 |cos incidence|) * lognormal(0, 0.25)
              (nuScenes reports 0..255; the reader scales it to strength in [0, 1])
    label     the hit primitive's nuScenes-lidarseg RAW id; a `noise_fraction` share of rays
              returns a spurious point at a random range with raw id 0 (noise: ignored in
              training, like the real release's noise class)

The ego vehicle drives along +x in its lane at a per-scene speed; `scan_at(t)` gives the
revolution at time t (seconds) in the SENSOR frame plus its sensor-to-world pose, so scans of
one scene can be accumulated (multi-sweep) through their poses. Everything is deterministic:
scene `index` of dataset `seed` draws only from `np.random.default_rng([seed, index])`, and the
scan at time t from `np.random.default_rng([seed, index, round(t * 1e6)])`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srkd.data.synthetic.lidar_world import NOISE, REFLECTIVITY, Street, build_street
from srkd.errors import ConfigError


@dataclass(frozen=True)
class LidarConfig:
    """The simulated sensor; defaults after nuScenes' HDL-32E (LIDAR_TOP at 20 Hz)."""

    beams: int = 32
    elevation_deg: tuple[float, float] = (10.67, -30.67)  # top and bottom beam
    azimuth_steps: int = 1080
    min_range: float = 1.0
    max_range: float = 70.0
    range_noise: float = 0.02  # metres (sigma)
    height: float = 1.84  # sensor above the road, metres
    dropout: float = 0.03
    noise_fraction: float = 0.002

    def __post_init__(self) -> None:
        if self.beams < 1 or self.azimuth_steps < 8:
            raise ConfigError(f"lidar needs beams >= 1 and azimuth_steps >= 8, got "
                              f"{self.beams}, {self.azimuth_steps}")  # fmt: skip
        if not 0 < self.min_range < self.max_range:
            raise ConfigError(f"lidar needs 0 < min_range < max_range, got {self.min_range}, "
                              f"{self.max_range}")  # fmt: skip
        for name in ("dropout", "noise_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"lidar {name} must be in [0, 1), got {getattr(self, name)}")

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions float64 (R, 3) in the sensor frame (R = beams x azimuth_steps,
        beam-major) and each ray's ring index int64 (R,) (0 = the top beam)."""
        elev = np.deg2rad(np.linspace(self.elevation_deg[0], self.elevation_deg[1], self.beams))
        azim = np.linspace(-np.pi, np.pi, self.azimuth_steps, endpoint=False)
        e, a = np.meshgrid(elev, azim, indexing="ij")
        d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1)
        ring = np.repeat(np.arange(self.beams, dtype=np.int64), self.azimuth_steps)
        return d.reshape(-1, 3), ring


@dataclass(frozen=True)
class SimulatedScan:
    """One revolution, N returns, in the sensor frame.

    points:    float32 (N, 3) metres, sensor frame (x forward, y left, z up).
    intensity: float32 (N,) in [0, 255].
    ring:      int64 (N,) beam index 0..beams-1.
    raw_label: uint8 (N,) nuScenes-lidarseg raw category id.
    part:      int8 (N,) what was hit: 0 ground, 1 box, 2 cylinder, 3 sphere, 4 noise.
    pose:      float64 (4, 4) sensor frame -> world frame.
    timestamp: int, microseconds since the scene started.
    """

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    raw_label: np.ndarray
    part: np.ndarray
    pose: np.ndarray
    timestamp: int

    def world_points(self) -> np.ndarray:
        """float64 (N, 3) the returns in the world frame (pose applied)."""
        return self.points.astype(np.float64) @ self.pose[:3, :3].T + self.pose[:3, 3]


def _ground(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Distance along each ray to z = 0 (inf for rays that do not go down)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d[:, 2] < -1e-9, -o[2] / d[:, 2], np.inf)


def _box_hit(o: np.ndarray, d: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays (M, 3) against one oriented box row: (t (M,), inf = miss; unit normal (M, 3)).
    Slab method in the box's frame (Kay & Kajiya, SIGGRAPH 1986)."""
    c, s = np.cos(b[6]), np.sin(b[6])
    rot = np.array(((c, s, 0.0), (-s, c, 0.0), (0.0, 0.0, 1.0)))  # world -> box frame
    po = rot @ (o - b[:3])
    dl = d @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        t1, t2 = (-b[3:6] - po) * inv, (b[3:6] - po) * inv
    near = np.minimum(t1, t2)
    tmin, axis = near.max(1), near.argmax(1)
    hit = (np.maximum(t1, t2).min(1) >= tmin) & (tmin > 1e-6)
    normal = np.zeros_like(d)
    normal[np.arange(len(d)), axis] = -np.sign(dl[np.arange(len(d)), axis])
    return np.where(hit, tmin, np.inf), normal @ rot


def _cylinder_hit(o: np.ndarray, d: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays (M, 3) against one vertical cylinder row (side and top cap): (t (M,), normal (M, 3))."""
    px, py = o[0] - c[0], o[1] - c[1]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    bq = d[:, 0] * px + d[:, 1] * py
    disc = bq**2 - a * (px**2 + py**2 - c[4] ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-bq - np.sqrt(disc)) / a
        z = o[2] + t_side * d[:, 2]
        side = (disc >= 0) & (t_side > 1e-6) & (z >= c[2]) & (z <= c[3])
        t_cap = (c[3] - o[2]) / d[:, 2]
        cx, cy = px + t_cap * d[:, 0], py + t_cap * d[:, 1]
        cap = (t_cap > 1e-6) & (cx**2 + cy**2 <= c[4] ** 2) & (d[:, 2] < 0)
    t_side, t_cap = np.where(side, t_side, np.inf), np.where(cap, t_cap, np.inf)
    t = np.minimum(t_side, t_cap)
    tt = np.where(np.isfinite(t), t, 0.0)
    normal = np.stack([px + tt * d[:, 0], py + tt * d[:, 1], np.zeros(len(d))], 1)
    normal[t_cap < t_side] = (0.0, 0.0, 1.0)
    return t, normal


def _sphere_hit(o: np.ndarray, d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays (M, 3) against one sphere row: (t (M,), normal (M, 3), not normalised)."""
    p = o - s[:3]
    bq = d @ p
    disc = bq**2 - (p @ p - s[3] ** 2)
    with np.errstate(invalid="ignore"):
        t = -bq - np.sqrt(disc)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    return t, p + np.where(np.isfinite(t), t, 0.0)[:, None] * d


_HITS = (_box_hit, _cylinder_hit, _sphere_hit)


def _footprint(kind: int, row: np.ndarray) -> tuple[float, float, float]:
    """(x, y, radius) of a circle holding the primitive's footprint."""
    if kind == 0:
        return row[0], row[1], float(np.hypot(row[3], row[4]))
    return row[0], row[1], row[4] if kind == 1 else row[3]


def _rays_near(kind: int, row: np.ndarray, o: np.ndarray, yaw: float, lidar: LidarConfig) -> np.ndarray | None:
    """Indices of the rays (beam-major, `LidarConfig.directions` order, sensor heading `yaw`)
    whose azimuth can reach the primitive; None when it lies beyond max_range."""
    cx, cy, rad = _footprint(kind, row)
    dist = float(np.hypot(cx - o[0], cy - o[1]))
    steps = lidar.azimuth_steps
    if dist - rad > lidar.max_range:
        return None
    if dist <= rad * 1.01:
        ks = np.arange(steps)
    else:
        half = float(np.arcsin(min(1.0, rad / dist)))
        centre = float(np.arctan2(cy - o[1], cx - o[0])) - yaw + np.pi
        da = 2 * np.pi / steps
        ks = np.arange(int(np.floor((centre - half) / da)) - 1, int(np.ceil((centre + half) / da)) + 2)
        ks = np.unique(ks % steps)
    return (np.arange(lidar.beams)[:, None] * steps + ks[None, :]).ravel()


def cast(street: Street, origin: np.ndarray, d: np.ndarray, yaw: float, lidar: LidarConfig) -> tuple[np.ndarray, ...]:
    """Cast the rays of one revolution from `origin` (3,), world frame.

    Args:
        d: float64 (R, 3) unit world directions, `lidar.directions()` rotated by heading `yaw`
            (the azimuth culling relies on that order).
    Returns (t float64 (R,) distance, inf = no hit; raw label int64 (R,); reflectivity float64
    (R,); |cos| of the incidence angle float64 (R,); part int8 (R,): 0 ground, 1 box,
    2 cylinder, 3 sphere). Each primitive is tested only against
    the rays of its azimuth window (a loop over primitives, each vectorised over its rays).
    """
    t = _ground(origin, d)
    hit = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    label = street.ground_label(hit[:, 0], hit[:, 1])
    normal = np.zeros_like(d)
    normal[:, 2] = 1.0
    reflect = np.zeros(len(d))
    for lab, value in REFLECTIVITY.items():
        reflect[label == lab] = value
    part = np.zeros(len(d), dtype=np.int8)
    tables = (street.boxes, street.cylinders, street.spheres)
    lab_cols = (7, 5, 4)
    for kind, table in enumerate(tables):
        for row in table:
            idx = _rays_near(kind, row, origin, yaw, lidar)
            if idx is None:
                continue
            tk, nk = _HITS[kind](origin, d[idx], row)
            closer = tk < t[idx]
            if not closer.any():
                continue
            sel = idx[closer]
            t[sel] = tk[closer]
            normal[sel] = nk[closer]
            label[sel] = int(row[lab_cols[kind]])
            reflect[sel] = row[lab_cols[kind] + 1]
            part[sel] = kind + 1
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return t, label, reflect, np.abs((normal * d).sum(1)), part


@dataclass(frozen=True)
class OutdoorScene:
    """One synthetic drive: a street, the ego's speed and start, the sensor.

    The sensor pose at time t (seconds): position (x0 + speed t, lane_y + 0.3 sin(0.4 t),
    lidar.height), heading yaw(t) = atan of the lane's slope (a gentle weave, so poses are not
    pure translations).
    """

    seed: int
    index: int
    street: Street
    speed: float
    x0: float
    lidar: LidarConfig

    def pose(self, t: float) -> np.ndarray:
        """float64 (4, 4) sensor -> world at time `t` seconds."""
        x = self.x0 + self.speed * t
        y = self.street.lane_y + 0.3 * np.sin(0.4 * t)
        yaw = np.arctan2(0.12 * np.cos(0.4 * t), self.speed)
        m = np.eye(4)
        c, s = np.cos(yaw), np.sin(yaw)
        m[:2, :2] = ((c, -s), (s, c))
        m[:3, 3] = (x, y, self.lidar.height)
        return m

    def scan_at(self, t: float) -> SimulatedScan:
        """The revolution at time `t` seconds (t >= 0), deterministic per (seed, index, t)."""
        if t < 0:
            raise ConfigError(f"scan time must be >= 0 seconds, got {t}")
        micros = round(t * 1e6)
        rng = np.random.default_rng([self.seed, self.index, micros])
        lidar = self.lidar
        local, ring = lidar.directions()
        pose = self.pose(t)
        yaw = float(np.arctan2(pose[1, 0], pose[0, 0]))
        dist, label, reflect, cos, part = cast(self.street, pose[:3, 3], local @ pose[:3, :3].T, yaw, lidar)
        r = len(local)
        noise = rng.random(r) < lidar.noise_fraction
        dist = np.where(noise, rng.uniform(lidar.min_range, 30.0, r), dist)
        label = np.where(noise, NOISE, label)
        part = np.where(noise, 4, part).astype(np.int8)
        reflect = np.where(noise, REFLECTIVITY[NOISE], reflect)
        dist = dist + rng.normal(0.0, lidar.range_noise, r)
        keep = (np.isfinite(dist) & (dist >= lidar.min_range) & (dist <= lidar.max_range)
                & (rng.random(r) >= lidar.dropout))  # fmt: skip
        gain = np.exp(rng.normal(0.0, 0.25, r))
        intensity = np.clip(255.0 * reflect * (0.3 + 0.7 * cos) * gain, 0.0, 255.0)
        return SimulatedScan(
            points=(local[keep] * dist[keep, None]).astype(np.float32),
            intensity=intensity[keep].astype(np.float32),
            ring=ring[keep],
            raw_label=label[keep].astype(np.uint8),
            part=part[keep],
            pose=pose,
            timestamp=micros,
        )


def make_scene(seed: int, index: int, lidar: LidarConfig | None = None) -> OutdoorScene:
    """Scene `index` of synthetic outdoor dataset `seed` (draws only from default_rng([seed,
    index]))."""
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and scene index must be >= 0, got {seed}, {index}")
    rng = np.random.default_rng([seed, index])
    street = build_street(rng)
    return OutdoorScene(seed, index, street, float(rng.uniform(4.0, 10.0)),
                        float(rng.uniform(-5.0, 5.0)), lidar or LidarConfig())  # fmt: skip
