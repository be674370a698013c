"""The teacher cache's on-disk schema (Zarr v3) and the value objects that describe a cache.

Layout (see docs/cache.md):

    <root>/zarr.json                      attributes["srkd_cache"] = {schema_version, fingerprint,
                                          srkd_version, spec: {dataset, data_root, split, ...}}
    <root>/<scene>/zarr.json              attributes: num_points, views, ensemble, view_params,
                                          ensemble_params, data_sha256, committed (written LAST)
    <root>/<scene>/view_<v>/<array>       one entry per cached view v = 0..V-1
    <root>/<scene>/ensemble/<array>       optional: mean probabilities over the views

Every per-point array has one row per ORIGINAL point of the scene (row i = origin_index i).
Which arrays an entry holds depends on the codec (`srkd.cache.codecs`); how they are stored is
`srkd.cache.arrays`, their dimension names and decode attributes `srkd.cache.annotations`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zarr
from zarr.core.sync import sync

from srkd.cache.arrays import missing_chunk_keys
from srkd.cache.codec_base import Codec
from srkd.cache.codecs import CodecSpec
from srkd.data.scannet.layout import check_scene_id as layout_check_scene_id
from srkd.data.transforms.color import LEGACY_COLOR_NORM, check_color_norm
from srkd.errors import CacheError, ConfigError, DataError
from srkd.io import to_plain

SCHEMA_VERSION = 3
"""The layout new caches get; bumped whenever the layout changes incompatibly. Version 3: the
samples of a sequence packed into one set of sharded arrays with `sample_offsets`
(`srkd.cache.packed`). Version 2: a group per scene; the fingerprint no longer covers the data
root (a cache moved with its data stays valid) and each scene records `data_sha256`, the content
hash of the data its teacher saw."""

READABLE_SCHEMAS = (1, 2, 3)
"""Versions readers accept. Version 1 (srkd 0.1): fingerprint over every field including the data
root, no per-scene content hash (its scenes cannot be checked against the data)."""

WRITABLE_SCHEMAS = (2, 3)
"""Versions a build may create or extend (a schema-2 cache is resumed in its own layout)."""

DATA_SHA256 = "data_sha256"
"""Scene attribute: `PointCloud.content_sha256()` of the scene the teacher saw."""

LOCATION_FIELDS = ("data_root",)
"""CacheSpec fields that say where the data was, not what it is: kept as a hint, outside the
fingerprint (schema >= 2), so the same data at another path is the same cache."""

ROOT_KEY = "srkd_cache"
"""The root attribute holding the cache's identity; a store without it is not a srkd cache."""

COMMITTED = "committed"
"""Scene attribute written last; a scene without `committed: true` does not exist for readers."""

ENSEMBLE = "ensemble"


def check_scene_id(scene_id: str) -> str:
    """Return `scene_id` if it is a safe single path component (the dataset layout's rule,
    `srkd.data.scannet.layout.check_scene_id`), else raise CacheError."""
    try:
        return layout_check_scene_id(scene_id)
    except (DataError, TypeError):
        raise CacheError(
            f"scene id {scene_id!r} is not a plain name (letters, digits, '_', '-', '.'); "
            "it would not map to a single group inside the cache"
        ) from None


def entry_name(view: int | str) -> str:
    """Group name of a view index (0 -> "view_0") or of "ensemble"."""
    if view == ENSEMBLE:
        return ENSEMBLE
    if isinstance(view, (int, np.integer)) and not isinstance(view, bool) and view >= 0:
        return f"view_{int(view)}"
    raise CacheError(f"view must be a non-negative int or {ENSEMBLE!r}, got {view!r}")


def canonical_json(obj: Any) -> str:
    """Sorted-key, compact JSON (the fingerprint's input). Numpy values are refused."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cache settings must be plain JSON values (no numpy, NaN): {exc}") from exc


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    """Everything that determines a cache's targets; its fingerprint decides reuse.

    Mapping fields (`teacher_args`, `view_settings`) hold plain JSON values; `view_settings`
    should record the view augmentations and their seeds, so replaying a view is exact.
    """

    dataset: str
    data_root: str
    split: str
    class_names: tuple[str, ...]
    teacher_name: str
    teacher_args: Mapping[str, Any]
    teacher_sha256: str
    feature_dim: int
    codec: CodecSpec = CodecSpec()
    views: int = 1
    ensemble: bool = False
    view_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    grid_size: float = 0.02
    color_norm: str | None = None
    """The teacher's input colour normalisation (COLOR_NORMS key); None only in caches written
    before it was recorded (they used "legacy"), and then left out of the fingerprint's input so
    their fingerprints stay valid."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once here
        set_(self, "class_names", tuple(str(c) for c in self.class_names))
        # what a sorted JSON round trip gives (the fingerprint's input), or one ConfigError
        set_(self, "teacher_args", to_plain(dict(self.teacher_args), where="teacher_args", json=True))
        set_(self, "view_settings", to_plain(dict(self.view_settings), where="view_settings", json=True))
        set_(self, "feature_dim", int(self.feature_dim))
        set_(self, "views", int(self.views))
        set_(self, "grid_size", float(self.grid_size))
        if not self.class_names:
            raise ConfigError("a cache needs at least one class name")
        if self.feature_dim < 1 or self.views < 1:
            raise ConfigError(f"feature_dim and views must be >= 1, got {self.feature_dim}, {self.views}")
        if not math.isfinite(self.grid_size) or self.grid_size <= 0:
            raise ConfigError(f"grid_size must be a positive number, got {self.grid_size}")
        if self.color_norm is not None:
            check_color_norm(self.color_norm)

    @property
    def teacher_color_norm(self) -> str:
        """The colour normalisation the teacher's inputs had (recorded, or "legacy" if unrecorded)."""
        return self.color_norm or LEGACY_COLOR_NORM

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["class_names"] = list(self.class_names)
        out["codec"] = self.codec.to_json()
        if out["color_norm"] is None:
            del out["color_norm"]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CacheSpec:
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: v for k, v in obj.items() if k in fields}
            kwargs["codec"] = CodecSpec.from_json(obj["codec"])
            kwargs["class_names"] = tuple(obj["class_names"])
            return cls(**kwargs)
        except (KeyError, TypeError, ConfigError) as exc:
            raise CacheError(f"malformed cache spec in root attributes: {exc}") from exc

    def identity(self, schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
        """The fields that decide reuse: every field but LOCATION_FIELDS (schema 1: every field)."""
        out = self.to_json()
        if schema_version >= 2:
            for name in LOCATION_FIELDS:
                del out[name]
        return out

    def fingerprint(self, schema_version: int = SCHEMA_VERSION) -> str:
        """sha256 (hex) of the canonical JSON of `identity(schema_version)`."""
        return hashlib.sha256(canonical_json(self.identity(schema_version)).encode()).hexdigest()

    def diff(self, other: CacheSpec) -> list[str]:
        """Human-readable differences, "field: <self> != <other>", one per changed (sub)field."""
        out: list[str] = []
        mine, theirs = self.identity(), other.identity()
        for key in sorted(set(mine) | set(theirs), key=[f.name for f in dataclasses.fields(self)].index):
            a, b = mine.get(key), theirs.get(key)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                for sub in sorted(set(a) | set(b)):
                    if a.get(sub) != b.get(sub):
                        out.append(f"{key}.{sub}: {_short(a.get(sub))} != {_short(b.get(sub))}")
            else:
                out.append(f"{key}: {_short(a)} != {_short(b)}")
        return out


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SampleTargets(NamedTuple):
    """Everything cached for one sample: its views, the optional ensemble, and the content hash
    of the data its teacher saw (None: not recorded)."""

    sample_id: str
    views: Sequence[ViewTargets]
    ensemble: ViewTargets | None = None
    data_sha256: str | None = None


class ViewTargets(NamedTuple):
    """One view's teacher outputs for every original point of a scene.

    logits: float32 (N, K); feature: float32 (N, D); params: JSON-serialisable replay record.
    """

    logits: np.ndarray
    feature: np.ndarray
    params: dict[str, Any]


def ensemble_of(views: Sequence[ViewTargets], params: dict[str, Any] | None = None) -> ViewTargets:
    """The test-time-augmented teacher: mean probabilities (and mean features) over views.

    logits = log(mean_v softmax(l_v)) computed as logsumexp_v(log_softmax(l_v)) - log V, so
    softmax(logits) is exactly the mean probability and no logit becomes -inf.
    """
    if not views:
        raise ConfigError("ensemble_of needs at least one view")
    stacked = np.stack([np.asarray(v.logits, dtype=np.float64) for v in views])  # (V, N, K)
    log_p = stacked - stacked.max(axis=2, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=2, keepdims=True))
    top = log_p.max(axis=0)
    logits = top + np.log(np.exp(log_p - top).sum(axis=0)) - math.log(len(views))
    feature = np.mean([np.asarray(v.feature, dtype=np.float64) for v in views], axis=0)
    record = {"kind": ENSEMBLE, "views": len(views)} if params is None else params
    return ViewTargets(logits.astype(np.float32), feature.astype(np.float32), record)


def root_record(spec: CacheSpec, srkd_version: str, schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The root attribute value written once, by the process that creates the cache."""
    return {
        "schema_version": schema_version,
        "fingerprint": spec.fingerprint(schema_version),
        "srkd_version": srkd_version,
        "spec": spec.to_json(),
    }


def store_path(path: str | Path) -> Path:
    """The absolute, resolved form of a cache directory path: the only form srkd hands to zarr.

    zarr 3.1's LocalStore.list_prefix strips its root from listed keys with `str.replace`, so a
    short relative root that reappears inside keys (a cache named `c` holding `.../c/0`, or `0`)
    loses parts of every key and its chunks look missing. An absolute root cannot recur inside
    a key relative to it."""
    return Path(path).expanduser().resolve()


def open_store(path_or_store: Any, *, read_only: bool) -> Any:
    """A zarr Store for a directory path (a LocalStore on `store_path(path)`) or an existing
    Store object."""
    if isinstance(path_or_store, zarr.abc.store.Store):
        return path_or_store
    return zarr.storage.LocalStore(store_path(path_or_store), read_only=read_only)


def read_root(group: zarr.Group, where: str) -> tuple[dict[str, Any], CacheSpec]:
    """The root record and spec of a srkd cache, or CacheError for foreign/other-version stores."""
    record = group.attrs.get(ROOT_KEY)
    if not isinstance(record, dict):
        raise CacheError(
            f"{where} is a Zarr store but not a srkd teacher cache (no {ROOT_KEY!r} root attribute); "
            "point at a cache written by `srkd cache-teacher`, or use a new directory"
        )
    version = record.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise CacheError(
            f"the cache at {where} has schema version {version!r}, this srkd reads versions "
            f"{', '.join(map(str, READABLE_SCHEMAS))}; rebuild it with `srkd cache-teacher --overwrite`"
        )
    spec = CacheSpec.from_json(record.get("spec", {}))
    if record.get("fingerprint") != spec.fingerprint(version):
        raise CacheError(f"the cache at {where} has a fingerprint that does not match its own settings; it was edited or damaged")
    return record, spec


def as_recorded(wanted: CacheSpec, found: CacheSpec) -> CacheSpec:
    """`wanted` in the terms `found` (a cache's recorded spec) uses: a cache written before the
    colour normalisation was recorded (None) means "legacy", so a "legacy" request matches it."""
    if found.color_norm is None and wanted.color_norm == LEGACY_COLOR_NORM:
        return dataclasses.replace(wanted, color_norm=None)
    return wanted


def stale_message(where: str, found: CacheSpec, wanted: CacheSpec) -> str:
    lines = "; ".join(found.diff(wanted))
    return (
        f"the cache at {where} was built with other settings (cache != requested: {lines}); "
        "use --overwrite to replace it, or write to a new directory"
    )


def committed_scene_ids(root: zarr.Group) -> set[str]:
    """Scene groups under `root` whose committed marker is true (unreadable metadata = absent).

    One concurrent metadata pass (`Group.groups`; 2.4x faster than a read per scene at 3,000
    scenes, bench/cache_scale.py); if any scene's metadata is unreadable, scene by scene."""
    try:
        return {name for name, group in root.groups() if group.attrs.get(COMMITTED) is True}
    except Exception:  # a torn scene document (zarr's listing reads them all): one by one
        pass
    out: set[str] = set()
    for name in _child_names(root):
        try:
            if root[name].attrs.get(COMMITTED) is True:
                out.add(name)
        except Exception:  # torn/unreadable scene metadata: not committed
            continue
    return out


def _child_names(group: zarr.Group) -> list[str]:
    """Names directly under `group` from the store's listing, without reading their metadata."""

    async def names() -> list[str]:
        return [key async for key in group.store.list_dir(group.path)]

    return [name for name in sync(names()) if name != "zarr.json"]


def scene_damage(root: zarr.Group, scene: str, spec: CacheSpec, codec: Codec) -> list[str]:
    """What keeps a scene from being complete, judged from metadata and chunk listings only (no
    decoding, so it is cheap enough to run on every committed scene when a build resumes):
    views / replay records / ensemble flag that differ from `spec`, and every array the codec
    writes that is missing, unreadable, has another row count than the scene's N or lacks
    chunks. Empty list = complete."""
    try:
        group = root[scene]
        attrs = dict(group.attrs)
        n = int(attrs["num_points"])
    except Exception as exc:  # torn metadata, or not a scene group at all
        return [f"scene {scene!r}: metadata unreadable or incomplete ({type(exc).__name__}: {exc})"]
    problems = []
    if attrs.get("views") != spec.views or len(attrs.get("view_params") or []) != spec.views:
        problems.append(f"scene {scene!r}: {attrs.get('views')} views / {len(attrs.get('view_params') or [])} "
                        f"replay records, the cache settings say {spec.views}")
    if bool(attrs.get(ENSEMBLE)) != spec.ensemble:
        problems.append(f"scene {scene!r}: ensemble entry presence differs from the cache settings")
    k, d = spec.num_classes, spec.feature_dim
    entries = [entry_name(v) for v in range(spec.views)] + ([ENSEMBLE] if spec.ensemble else [])
    for entry in entries:
        for kind, layout in (("point", codec.point_layout(k, d)), ("side", codec.side_layout(k, d))):
            for name in layout:
                where = f"scene {scene!r}, array {entry}/{name}"
                try:
                    arr = group[f"{entry}/{name}"]
                    if kind == "point" and arr.shape[0] != n:
                        problems.append(f"{where}: {arr.shape[0]} rows, the scene has {n}")
                    elif missing := missing_chunk_keys(arr):
                        problems.append(f"{where}: {len(missing)} chunk file(s) missing")
                except Exception as exc:  # zarr raises KeyError/FileNotFoundError/... for absent arrays
                    problems.append(f"{where} is missing or unreadable ({type(exc).__name__})")
    return problems


def describe(path_or_store: Any) -> str:
    return str(path_or_store) if isinstance(path_or_store, (str, Path)) else type(path_or_store).__name__
