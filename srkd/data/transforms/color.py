"""Colour transforms: chromatic auto-contrast / translation / jitter and colour normalisation.

Colours are float32 in [0, 255] until `NormalizeColor` scales them (COLOR_NORMS). Defaults follow
Pointcept's ScanNet training config. A cloud without colour passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from srkd.errors import ConfigError
from srkd.types import PointCloud

from .base import Transform, floats, new_seed, register_transform

COLOR_NORMS: dict[str, tuple[float, float]] = {
    "pointcept": (1.0 / 255.0, 0.0),  # color / 255 in [0, 1]: Pointcept >= v1.6.0 (2025-03)
    "legacy": (1.0 / 127.5, -1.0),  # color / 127.5 - 1 in [-1, 1]: Pointcept < v1.6.0, srkd 0.1 files
}
"""Input colour normalisations as (scale, shift): ``color' = color * scale + shift``."""

DEFAULT_COLOR_NORM = "pointcept"
"""What new runs feed their models (the one home of this default)."""

LEGACY_COLOR_NORM = "legacy"
"""What checkpoints, caches and transform records that do not state a normalisation were made with."""


def check_color_norm(name: str) -> str:
    """`name` if it is a key of COLOR_NORMS, else ConfigError naming the choices."""
    if name not in COLOR_NORMS:
        raise ConfigError(
            f"unknown colour normalisation {name!r}: use 'pointcept' (color / 255, Pointcept >= 1.6) "
            "or 'legacy' (color / 127.5 - 1, older Pointcept checkpoints)"
        )
    return name


def _check_p(p: float, what: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{what}: probability p must be in [0, 1], got {p}")
    return float(p)


@register_transform
class ChromaticAutoContrast(Transform):
    """With probability p, blend colours with their per-channel min-max stretch to [0, 255].

    ``color' = (1 - b) * color + b * (color - lo) * 255 / (hi - lo)``, b uniform in [0, 1) unless
    `blend` is fixed; lo/hi are the per-channel extremes of the input (channels with hi == lo
    are left as they are). params: {"applied": bool, "blend": float}.
    """

    name = "chromatic_auto_contrast"
    kind = "color"

    def __init__(self, p: float = 0.2, blend: float | None = None) -> None:
        self.p = _check_p(p, "ChromaticAutoContrast")
        self.blend = None if blend is None else float(blend)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() >= self.p:
            return {"applied": False, "blend": 0.0}
        blend = float(rng.random()) if self.blend is None else self.blend
        return {"applied": True, "blend": blend}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"] or pc.color is None:
            return pc
        color = pc.color.astype(np.float64)
        lo = color.min(axis=0)
        hi = color.max(axis=0)
        span = hi - lo
        scale = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0)
        stretched = np.where(span > 0, (color - lo) * scale, color)
        b = params["blend"]
        return pc.replace(color=((1.0 - b) * color + b * stretched).astype(np.float32))


@register_transform
class ChromaticTranslation(Transform):
    """With probability p, add one random RGB offset in ±ratio * 255 to all points, clip [0, 255].

    params: {"applied": bool, "shift": [3 floats]}.
    """

    name = "chromatic_translation"
    kind = "color"

    def __init__(self, p: float = 0.95, ratio: float = 0.05) -> None:
        self.p = _check_p(p, "ChromaticTranslation")
        self.ratio = float(ratio)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() >= self.p:
            return {"applied": False, "shift": [0.0] * 3}
        shift = (rng.random(3) - 0.5) * 2.0 * 255.0 * self.ratio
        return {"applied": True, "shift": floats(shift)}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"] or pc.color is None:
            return pc
        shifted = pc.color.astype(np.float64) + np.asarray(params["shift"], dtype=np.float64)
        return pc.replace(color=np.clip(shifted, 0.0, 255.0).astype(np.float32))


@register_transform
class ChromaticJitter(Transform):
    """With probability p, add per-point Gaussian noise of std ``std * 255`` to RGB, clip [0, 255].

    params: {"applied": bool, "seed": int, "std": float}; noise regenerated from the seed.
    """

    name = "chromatic_jitter"
    kind = "color"

    def __init__(self, p: float = 0.95, std: float = 0.05) -> None:
        self.p = _check_p(p, "ChromaticJitter")
        self.std = float(std)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        applied = bool(rng.random() < self.p)
        return {"applied": applied, "seed": new_seed(rng), "std": self.std}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if not params["applied"] or pc.color is None:
            return pc
        noise = np.random.default_rng(params["seed"]).standard_normal((pc.num_points, 3))
        jittered = pc.color.astype(np.float64) + noise * params["std"] * 255.0
        return pc.replace(color=np.clip(jittered, 0.0, 255.0).astype(np.float32))


@register_transform
class NormalizeColor(Transform):
    """Scale colours from [0, 255] by a named normalisation (COLOR_NORMS): "pointcept" gives
    ``color / 255``, "legacy" ``color / 127.5 - 1``. params: {"mode": str} (records without a
    mode were written by srkd 0.1, which always used "legacy")."""

    name = "normalize_color"
    kind = "color"

    def __init__(self, mode: str = DEFAULT_COLOR_NORM) -> None:
        self.mode = check_color_norm(mode)

    def sample(self, pc: PointCloud, rng: np.random.Generator) -> dict[str, Any]:
        return {"mode": self.mode}

    def apply(self, pc: PointCloud, params: dict[str, Any]) -> PointCloud:
        if pc.color is None:
            return pc
        scale, shift = COLOR_NORMS[check_color_norm(params.get("mode", LEGACY_COLOR_NORM))]
        return pc.replace(color=(pc.color.astype(np.float64) * scale + shift).astype(np.float32))
