"""Looking at a teacher cache: its summary and a full verification (the store's own checks).

Both read the cache only (no teacher, no torch, no ground truth). Scoring the cached teacher
against ground truth is `srkd.scoring.teacher_miou`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from srkd.cache.reader import CacheReader
from srkd.cache.schema import COMMITTED, ENSEMBLE, entry_name
from srkd.errors import SrkdError


def _entry_bytes(group: zarr.Group) -> int:
    """Stored bytes of every array below `group` (chunks + array metadata)."""
    total = 0
    for _, arr in group.arrays():
        total += arr.nbytes_stored()
    for _, sub in group.groups():
        total += _entry_bytes(sub)
    return total


def summarize(path_or_store: Any) -> dict[str, Any]:
    """Headline facts of a cache.

    Returns:
        dict with where, schema_version, fingerprint, srkd_version, spec (the settings as JSON),
        scenes (committed count), uncommitted (ids of uncommitted scene groups), points (original
        points over committed scenes), views, ensemble, entries_per_scene, bytes (stored bytes of
        all committed scene arrays), bytes_per_point (per point per stored entry).
    """
    reader = CacheReader(path_or_store, cache_bytes=0)
    root = reader.root
    points = 0
    stored = 0
    for scene in reader.scene_ids:
        points += reader.num_points(scene)
        stored += _entry_bytes(root[scene])
    spec = reader.spec
    entries = spec.views + int(spec.ensemble)
    return {
        "where": reader.where,
        "schema_version": reader.record["schema_version"],
        "fingerprint": reader.fingerprint,
        "srkd_version": reader.record.get("srkd_version"),
        "spec": spec.to_json(),
        "codec": str(spec.codec),
        "color_norm": spec.teacher_color_norm,
        "scenes": len(reader.scene_ids),
        "uncommitted": sorted(set(root.group_keys()) - set(reader.scene_ids)),
        "points": points,
        "views": spec.views,
        "ensemble": spec.ensemble,
        "entries_per_scene": entries,
        "bytes": stored,
        "bytes_per_point": stored / (points * entries) if points else float("nan"),
    }


def verify(path_or_store: Any) -> list[str]:
    """Decode every committed scene and list every problem found (empty list = healthy).

    Checks: the root opens (srkd cache, schema version, self-consistent fingerprint); every scene
    group is committed (an uncommitted one is a crashed or unfinished write); each committed
    scene holds its recorded views (+ ensemble), one replay record per view, every chunk present
    and readable, N rows of K logits and D features, all finite.
    """
    root_problem, scenes = verify_scenes(path_or_store)
    return ([root_problem] if root_problem else []) + [p for problems in scenes.values() for p in problems]


def verify_scenes(path_or_store: Any) -> tuple[str | None, dict[str, list[str]]]:
    """`verify`, by scene: (the root's problem or None, {scene id: its problems} for every scene
    group that is uncommitted or damaged)."""
    try:
        reader = CacheReader(path_or_store, cache_bytes=0)
    except SrkdError as exc:
        return str(exc), {}
    out: dict[str, list[str]] = {}
    root = reader.root
    spec = reader.spec
    for name in sorted(root.group_keys()):
        try:
            committed = root[name].attrs.get(COMMITTED) is True
        except Exception as exc:  # torn metadata
            out[name] = [f"scene {name!r}: metadata unreadable ({exc}); re-run `srkd cache-teacher`"]
            continue
        if not committed:
            out[name] = [f"scene {name!r} is not committed (an interrupted write); re-run `srkd cache-teacher`"]
            continue
        problems = _verify_scene(reader, name, spec.num_classes, spec.feature_dim)
        if problems:
            out[name] = problems
    return None, out


def _verify_scene(reader: CacheReader, scene: str, k: int, d: int) -> list[str]:
    out: list[str] = []
    attrs = reader.root[scene].attrs
    n = int(attrs.get("num_points", -1))
    views = int(attrs.get("views", -1))
    if views != reader.spec.views:
        out.append(f"scene {scene!r} holds {views} views, the cache settings say {reader.spec.views}")
    if len(attrs.get("view_params") or []) != views:
        out.append(f"scene {scene!r}: {len(attrs.get('view_params') or [])} replay records for {views} views")
    if bool(attrs.get(ENSEMBLE)) != reader.spec.ensemble:
        out.append(f"scene {scene!r}: ensemble entry presence differs from the cache settings")
    for view in reader.entries(scene):
        where = f"scene {scene!r}, {entry_name(view)}"
        try:
            logits, feature = reader.read_all(scene, view)
        except SrkdError as exc:
            out.append(str(exc))
            continue
        if logits.shape != (n, k) or feature.shape != (n, d):
            out.append(f"{where}: shapes {logits.shape} and {feature.shape}, expected ({n}, {k}) and ({n}, {d})")
        if not (np.isfinite(logits).all() and np.isfinite(feature).all()):
            out.append(f"{where}: decoded values contain NaN or infinity")
    return out
