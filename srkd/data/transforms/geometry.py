"""Geometric transforms: centre shift, rotation, scale, flip (affine) and jitter, elastic (deform).

Parameter defaults follow Pointcept's ScanNet training config (semseg-pt-v3m1-0-base). All
arithmetic is done in float64 and the result stored as float32, in the same order on sample and
replay, so a replay is bit-exact. Normals follow rotations and flips.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from srkd.errors import ConfigError
from srkd.types import PointCloud

from .base import Transform, floats, new_seed, register_transform


def _translation(t: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def _linear(a: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = a
    return m


def rotation_matrix(axis: str, angle: float) -> np.ndarray:
    """float64 (3, 3) right-handed rotation by `angle` radians about 'x', 'y' or 'z'."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ConfigError(f"rotation axis must be 'x', 'y' or 'z', got {axis!r}")


def _check_p(p: float, what: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{what}: probability p must be in [0, 1], got {p}")
    return float(p)


@register_transform
class CenterShift(Transform):
    """Move the bounding-box centre (x, y) to 0 and, with `apply_z`, the minimum z to 0.

    params: {"shift": [3 floats]} subtracted from every coordinate (computed from the input).
    """

    name = "center_shift"
    kind = "affine"

    def __init__(self, apply_z: bool = True) -> None:
        self.apply_z = apply_z

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        lo = pc.coord.min(axis=0).astype(np.float64)
        hi = pc.coord.max(axis=0).astype(np.float64)
        shift = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] if self.apply_z else 0.0]
        return {"shift": floats(shift)}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        shift = np.asarray(params["shift"], dtype=np.float64)
        return pc.replace(coord=(pc.coord.astype(np.float64) - shift).astype(np.float32))

    def affine(self, params: dict[str, Any]) -> np.ndarray:
        return _translation(-np.asarray(params["shift"], dtype=np.float64))


@register_transform
class RandomRotate(Transform):
    """With probability p, rotate about `axis` by an angle uniform in `angle` (radians).

    The rotation centre is `center` if given, else the input's bounding-box centre; it is
    recorded, so the map is a fixed affine on replay whatever points are present.
    params: {"applied": bool, "axis": str, "angle": float, "center": [3 floats]}.
    """

    name = "rotate"
    kind = "affine"

    def __init__(
        self,
        angle: tuple[float, float] = (-math.pi, math.pi),
        axis: str = "z",
        center: tuple[float, float, float] | None = None,
        p: float = 0.5,
    ) -> None:
        rotation_matrix(axis, 0.0)  # validates the axis
        self.angle = (float(angle[0]), float(angle[1]))
        self.axis = axis
        self.center = None if center is None else floats(center)
        self.p = _check_p(p, "RandomRotate")

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() >= self.p:
            return {"applied": False, "axis": self.axis, "angle": 0.0, "center": [0.0] * 3}
        if self.center is None:
            lo = pc.coord.min(axis=0).astype(np.float64)
            hi = pc.coord.max(axis=0).astype(np.float64)
            center = floats((lo + hi) / 2)
        else:
            center = list(self.center)
        angle = float(rng.uniform(self.angle[0], self.angle[1]))
        return {"applied": True, "axis": self.axis, "angle": angle, "center": center}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"]:
            return pc
        r = rotation_matrix(params["axis"], params["angle"])
        c = np.asarray(params["center"], dtype=np.float64)
        coord = ((pc.coord.astype(np.float64) - c) @ r.T + c).astype(np.float32)
        changes: dict[str, Any] = {"coord": coord}
        if pc.normal is not None:
            changes["normal"] = (pc.normal.astype(np.float64) @ r.T).astype(np.float32)
        return pc.replace(**changes)

    def affine(self, params: dict[str, Any]) -> np.ndarray:
        if not params["applied"]:
            return np.eye(4)
        c = np.asarray(params["center"], dtype=np.float64)
        r = rotation_matrix(params["axis"], params["angle"])
        return _translation(c) @ _linear(r) @ _translation(-c)


@register_transform
class RandomScale(Transform):
    """Scale coordinates about the origin by a factor uniform in `scale` (per axis if anisotropic).

    params: {"scale": [3 floats]}. Normals are unchanged for a uniform factor; for anisotropic
    factors they get the inverse-transpose map and are re-normalised.
    """

    name = "scale"
    kind = "affine"

    def __init__(self, scale: tuple[float, float] = (0.9, 1.1), anisotropic: bool = False) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ConfigError(f"RandomScale: need 0 < low <= high, got {scale}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.anisotropic = anisotropic

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        s = rng.uniform(self.scale[0], self.scale[1], 3 if self.anisotropic else 1)
        return {"scale": floats(np.broadcast_to(s, 3))}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        s = np.asarray(params["scale"], dtype=np.float64)
        changes: dict[str, Any] = {"coord": (pc.coord.astype(np.float64) * s).astype(np.float32)}
        if pc.normal is not None and not np.all(s == s[0]):
            n = pc.normal.astype(np.float64) / s
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
            changes["normal"] = n.astype(np.float32)
        return pc.replace(**changes)

    def affine(self, params: dict[str, Any]) -> np.ndarray:
        return _linear(np.diag(np.asarray(params["scale"], dtype=np.float64)))


@register_transform
class RandomFlip(Transform):
    """Negate x with probability p and, independently, y with probability p (coord and normal).

    params: {"x": bool, "y": bool}.
    """

    name = "flip"
    kind = "affine"

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_p(p, "RandomFlip")

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        return {"x": bool(rng.random() < self.p), "y": bool(rng.random() < self.p)}

    @staticmethod
    def _signs(params: dict[str, Any]) -> np.ndarray:
        return np.array([-1.0 if params["x"] else 1.0, -1.0 if params["y"] else 1.0, 1.0])

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not (params["x"] or params["y"]):
            return pc
        s = self._signs(params).astype(np.float32)
        changes: dict[str, Any] = {"coord": pc.coord * s}  # sign flips are exact in float32
        if pc.normal is not None:
            changes["normal"] = pc.normal * s
        return pc.replace(**changes)

    def affine(self, params: dict[str, Any]) -> np.ndarray:
        return _linear(np.diag(self._signs(params)))


@register_transform
class RandomJitter(Transform):
    """Add Gaussian noise N(0, sigma^2) clipped to [-clip, clip] to every coordinate.

    params: {"seed": int, "sigma": float, "clip": float}; the (N, 3) noise is regenerated from
    the seed, so |coord_out - coord_in| <= clip per axis (up to float32 rounding).
    """

    name = "jitter"
    kind = "deform"

    def __init__(self, sigma: float = 0.005, clip: float = 0.02) -> None:
        if sigma < 0 or clip <= 0:
            raise ConfigError(f"RandomJitter: need sigma >= 0 and clip > 0, got {sigma}, {clip}")
        self.sigma, self.clip = float(sigma), float(clip)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        return {"seed": new_seed(rng), "sigma": self.sigma, "clip": self.clip}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        noise = np.random.default_rng(params["seed"]).standard_normal((pc.num_points, 3))
        noise = np.clip(params["sigma"] * noise, -params["clip"], params["clip"])
        return pc.replace(coord=(pc.coord.astype(np.float64) + noise).astype(np.float32))


def elastic_displace(
    coord: np.ndarray, granularity: float, magnitude: float, rng: np.random.Generator
) -> np.ndarray:
    """One scale of elastic distortion (the smoothed-noise-grid scheme used by Pointcept).

    A Gaussian noise vector field on a grid of spacing `granularity` covering the points (one
    extra node on each side) is box-blurred (width 3, twice per axis) and trilinearly
    interpolated at every point; the result times `magnitude` is the displacement.

    Args:
        coord: float64 (N, 3).
    Returns:
        float64 (N, 3) displaced coordinates.
    """
    lo = coord.min(axis=0)
    dims = ((coord - lo).max(axis=0) // granularity).astype(np.int64) + 3
    noise = rng.standard_normal((*dims.tolist(), 3))
    for _ in range(2):
        for axis in range(3):
            noise = uniform_filter1d(noise, size=3, axis=axis, mode="reflect")
    # Grid node k along an axis sits at lo - granularity + k * granularity.
    u = (coord - lo) / granularity + 1.0
    i0 = np.clip(np.floor(u).astype(np.int64), 0, dims - 2)
    f = u - i0
    out = np.zeros_like(coord)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                corner = noise[i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz]
                out += (wx * wy * wz)[:, None] * corner
    return coord + magnitude * out


@register_transform
class ElasticDistortion(Transform):
    """With probability p, apply elastic distortion at each (granularity, magnitude) scale, metres.

    Default scales [[0.2, 0.4], [0.8, 1.6]] and p = 0.95 as in Pointcept.
    params: {"applied": bool, "seed": int, "scales": [[g, m], ...]}; the noise grids are
    regenerated from the seed.
    """

    name = "elastic"
    kind = "deform"

    def __init__(
        self,
        scales: tuple[tuple[float, float], ...] = ((0.2, 0.4), (0.8, 1.6)),
        p: float = 0.95,
    ) -> None:
        if any(g <= 0 for g, _ in scales):
            raise ConfigError(f"ElasticDistortion: granularities must be > 0, got {scales}")
        self.scales = [floats(s) for s in scales]
        self.p = _check_p(p, "ElasticDistortion")

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        applied = bool(rng.random() < self.p)
        return {"applied": applied, "seed": new_seed(rng), "scales": [list(s) for s in self.scales]}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"]:
            return pc
        rng = np.random.default_rng(params["seed"])
        coord = pc.coord.astype(np.float64)
        for granularity, magnitude in params["scales"]:
            coord = elastic_displace(coord, granularity, magnitude, rng)
        return pc.replace(coord=coord.astype(np.float32))
