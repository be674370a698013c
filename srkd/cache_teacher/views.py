"""The views of a cached scene, and the cache settings (CacheSpec) they are recorded in.

One cached *view* of a scene is the scene after a geometric, point-preserving transform chain,
run through the teacher with test-mode fragments so every original point is covered; its per-point
targets are computed by `srkd.cache_teacher.targets`.

Views (`ViewSettings`): view 0 is the CANONICAL view, centre shift only (the teacher sees the scene
as stored; outdoors nothing at all, `canonical_chain`); views 1..V-1 are drawn with
`srkd.data.transforms.view_transforms()` (outdoors `outdoor_view_transforms()`) from a numpy
Generator seeded by (cache seed, crc32(scene id), view index), so rebuilding a scene reproduces
its views exactly. Each view stores its transform record; `srkd.data.transforms.replay(raw,
params["record"])` reproduces the geometry the teacher saw, bit for bit.

The orchestration (root metadata, resume, dask workers, write-behind) is in
`srkd.cache_teacher.plan`, `.worker` and `.build`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srkd.cache import CacheSpec, CodecSpec
from srkd.data.registry import DatasetSpec
from srkd.data.transforms import (
    TILT,
    Compose,
    Record,
    canonical_chain,
    check_domain,
    outdoor_view_transforms,
    view_transforms,
)
from srkd.errors import ConfigError
from srkd.models.teacher import TeacherInfo
from srkd.types import VIEW_SEED, VIEWS, PointCloud


@dataclass(frozen=True)
class ViewSettings:
    """How the V views of every scene are drawn (arguments of `view_transforms` + the seed).

    domain: "indoor" (ScanNet's view chain) or "outdoor" (`outdoor_view_transforms`: rotate z,
    scale, flip, no centre shift and no x/y tilt; `tilt` is then unused).
    """

    views: int = VIEWS
    seed: int = VIEW_SEED
    rotate_z: tuple[float, float] = (-math.pi, math.pi)
    tilt: float = TILT
    scale: tuple[float, float] = (0.9, 1.1)
    p_rotate: float = 0.5
    p_flip: float = 0.5
    domain: str = "indoor"

    def __post_init__(self) -> None:
        if int(self.views) < 1:
            raise ConfigError(f"--views must be >= 1 (view 0 is the canonical view), got {self.views}")
        if not 0 <= int(self.seed) < 2**63:
            raise ConfigError(f"--seed must be in [0, 2**63), got {self.seed}")
        check_domain(self.domain)
        self.chain(1)  # validates ranges and probabilities now

    def _chain_args(self) -> dict[str, Any]:
        return {
            "rotate_z": tuple(self.rotate_z), "tilt": self.tilt, "scale": tuple(self.scale),
            "p_rotate": self.p_rotate, "p_flip": self.p_flip,
        }  # fmt: skip

    def chain(self, view: int) -> Compose:
        """The transform chain of view `view` (0 = the canonical view: centre shift only indoors,
        nothing outdoors)."""
        if view == 0:
            return canonical_chain(self.domain)
        if self.domain == "outdoor":
            args = self._chain_args()
            del args["tilt"]
            return outdoor_view_transforms(**args)
        return view_transforms(**self._chain_args())

    def rng(self, scene_id: str, view: int) -> np.random.Generator:
        """The Generator view `view` of `scene_id` is drawn from (same inputs, same draws)."""
        return np.random.default_rng([int(self.seed), zlib.crc32(scene_id.encode()), int(view)])

    def draw(self, pc: PointCloud, view: int) -> tuple[PointCloud, Record]:
        """View `view` of a scene loaded as stored: (transformed cloud, its transform record)."""
        return self.chain(view)(pc, self.rng(pc.scene_id or "", view))

    def to_json(self) -> dict[str, Any]:
        """What the cache records (CacheSpec.view_settings): everything that shapes a view."""
        out = {
            "seed": int(self.seed),
            "canonical_view": "view 0: center_shift(apply_z=True) only",
            "chain": "view_transforms",
            "chain_names": self.chain(1).names,
            "rng": "numpy default_rng([seed, crc32(scene_id), view])",
            "rotate_z": [float(v) for v in self.rotate_z],
            "tilt": float(self.tilt),
            "scale": [float(v) for v in self.scale],
            "p_rotate": float(self.p_rotate),
            "p_flip": float(self.p_flip),
        }
        if self.domain != "indoor":  # indoor caches keep the fingerprint they always had
            out["domain"] = self.domain
            out["canonical_view"] = "view 0: the scan as stored"
            out["chain"] = "outdoor_view_transforms"
        return out


def make_spec(
    dataset: DatasetSpec, data_root: Path, split: str, teacher: TeacherInfo, views: ViewSettings,
    codec: CodecSpec, grid_size: float, ensemble: bool,
) -> CacheSpec:  # fmt: skip
    """The CacheSpec (fingerprint input) of a cache built with these settings."""
    if ensemble and views.views < 2:
        raise ConfigError("an ensemble entry needs --views >= 2 (with one view it would repeat view 0)")
    return CacheSpec(
        dataset=dataset.name,
        data_root=str(Path(data_root).resolve()),
        split=split,
        class_names=dataset.class_names,
        teacher_name=teacher.name,
        teacher_args=teacher.cache_args(),
        teacher_sha256=teacher.sha256,
        feature_dim=teacher.feature_dim,
        codec=codec,
        views=views.views,
        ensemble=bool(ensemble),
        view_settings=views.to_json(),
        grid_size=grid_size,
        color_norm=teacher.color_norm,
    )


def spec_view_settings(spec: CacheSpec) -> ViewSettings:
    """The ViewSettings a cache was built with (from its recorded view_settings)."""
    s = dict(spec.view_settings)
    try:
        return ViewSettings(
            views=spec.views, seed=int(s["seed"]), rotate_z=tuple(s["rotate_z"]), tilt=float(s["tilt"]),
            scale=tuple(s["scale"]), p_rotate=float(s["p_rotate"]), p_flip=float(s["p_flip"]),
            domain=str(s.get("domain", "indoor")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"cache view settings {s} were not written by srkd cache-teacher ({exc})") from None
