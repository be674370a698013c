"""Looking at a teacher cache: its summary and a full verification (the store's own checks).

Both read the cache only (no teacher, no torch, no ground truth). Scoring the cached teacher
against ground truth is `srkd.scoring.teacher_miou`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from srkd.cache.codecs import make_codec
from srkd.cache.packed import SAMPLE_OFFSETS, SAMPLES, sequence_damage
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
    points = sum(reader.num_points(scene) for scene in reader.scene_ids)
    if reader.packed is not None:
        stored = sum(_entry_bytes(root[seq]) for seq in reader.packed.sequences)
        uncommitted = reader.packed.uncommitted
    else:
        stored = sum(_entry_bytes(root[scene]) for scene in reader.scene_ids)
        uncommitted = sorted(set(root.group_keys()) - set(reader.scene_ids))
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
        "uncommitted": uncommitted,
        "sequences": len(reader.packed.sequences) if reader.packed is not None else None,
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
    group that is uncommitted or damaged). In schema 3 the keys are sequence names (a sequence is
    what is rebuilt)."""
    try:
        reader = CacheReader(path_or_store, cache_bytes=0)
    except SrkdError as exc:
        return str(exc), {}
    if reader.packed is not None:
        return None, _verify_sequences(reader)
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


def _verify_sequences(reader: CacheReader) -> dict[str, list[str]]:
    """Schema 3: {sequence: problems} for every uncommitted or damaged sequence group."""
    index = reader.packed
    out: dict[str, list[str]] = {}
    for name in index.uncommitted:
        out[name] = [f"sequence {name!r} is not committed (an interrupted write); re-run `srkd cache-teacher`"]
    spec, k, d = reader.spec, reader.spec.num_classes, reader.spec.feature_dim
    codec = make_codec(spec.codec, k)
    entries = [entry_name(v) for v in range(spec.views)] + ([ENSEMBLE] if spec.ensemble else [])
    layouts = {"point": codec.point_layout(k, d), "side": codec.side_layout(k, d)}
    dupes = set(index.duplicates)
    for name, attrs in sorted(index.sequences.items()):
        problems = sequence_damage(reader.root, name, spec.views, spec.ensemble, entries, layouts)
        if not problems:
            problems = _offsets_problems(reader.root[name], name, attrs)
        if not problems:
            for sample in attrs.get(SAMPLES, []):
                if sample in dupes:
                    problems.append(f"sequence {name!r}: sample {sample!r} is also in another sequence")
                else:
                    problems += _verify_scene(reader, sample, k, d)
        if problems:
            out[name] = problems
    return out


def _offsets_problems(group: zarr.Group, name: str, attrs: dict[str, Any]) -> list[str]:
    """The stored sample_offsets against the recorded point counts."""
    want = np.concatenate([[0], np.cumsum(np.asarray(attrs.get("num_points", []), dtype=np.int64))])
    try:
        got = group[SAMPLE_OFFSETS][...]
    except Exception as exc:  # unreadable: crc, truncation
        return [f"sequence {name!r}: sample_offsets cannot be read ({type(exc).__name__}: {exc})"]
    if not np.array_equal(got, want):
        return [f"sequence {name!r}: sample_offsets {got[:4].tolist()}... disagree with the recorded point counts"]
    return []


def _verify_scene(reader: CacheReader, scene: str, k: int, d: int) -> list[str]:
    out: list[str] = []
    attrs = reader.root[scene].attrs if reader.packed is None else reader.attributes(scene)
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
