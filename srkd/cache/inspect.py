"""Looking at a teacher cache: summary, full verification, and the cached teacher's mIoU.

All three read the cache only (no teacher, no torch). `teacher_miou` runs one dask task per scene
(decode the entry, argmax, confusion matrix against ground truth) and sums the matrices, so scoring
a cached teacher over a split costs a pass over the cache, not a teacher forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import zarr

from srkd.cache.reader import CacheReader, View
from srkd.cache.schema import COMMITTED, ENSEMBLE, entry_name
from srkd.errors import CacheError, SrkdError


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
    root = reader._root
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
    root = reader._root
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
    attrs = reader._root[scene].attrs
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


def cached_teacher_prediction(reader: CacheReader, scene_id: str, view: View | None = None) -> np.ndarray:
    """int64 (N,) class of every original point of a scene, from a `srkd.cache.CacheReader`.

    With `view`, that entry's argmax; else the ensemble entry's argmax when stored, else the
    argmax of the mean of the views' softmax probabilities (one rule for `srkd evaluate --cache`
    and `srkd inspect-cache --verify`).
    """
    if view is not None:
        logits, _ = reader.read_all(scene_id, view)
        return logits.argmax(axis=1).astype(np.int64)
    if reader.has_ensemble(scene_id):
        logits, _ = reader.read_all(scene_id, "ensemble")
        return logits.argmax(axis=1).astype(np.int64)
    prob_sum = None
    for v in range(reader.views(scene_id)):
        logits, _ = reader.read_all(scene_id, v)
        z = logits.astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        prob_sum = p if prob_sum is None else prob_sum + p
    assert prob_sum is not None, "a cached scene holds at least one view"
    return prob_sum.argmax(axis=1).astype(np.int64)


def _scene_confusion(
    path_or_store: Any, scene: str, view: View | None, labels_for_scene: Callable[[str], np.ndarray], k: int
) -> np.ndarray:
    from srkd.metrics import confusion_matrix

    pred = cached_teacher_prediction(CacheReader(path_or_store, cache_bytes=0), scene, view)
    labels = np.asarray(labels_for_scene(scene))
    if labels.shape != (len(pred),):
        raise CacheError(
            f"scene {scene!r}: {labels.shape[0] if labels.ndim else 0} ground-truth labels for "
            f"{len(pred)} cached points; the cache was built from other data"
        )
    return confusion_matrix(pred, labels, k)


def teacher_miou(
    path_or_store: Any,
    labels_for_scene: Callable[[str], np.ndarray],
    num_classes: int,
    view: View | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Score the cached teacher against ground truth over every committed scene, with dask.

    Args:
        path_or_store: the cache.
        labels_for_scene: scene id -> int (N,) labels of its original points (-1 = ignore).
        num_classes: K.
        view: which entry to score; default (None) as `cached_teacher_prediction`: the ensemble
            if stored, else the mean of the views' probabilities.
        num_workers: dask threads (default: dask's choice).
    Returns:
        dict with view, scenes, miou, macc, allacc, iou (per class list, None = absent class)
        and confusion (K x K list); intersections/unions summed over the split (METHOD.md).
    """
    import dask

    from srkd.metrics import SegmentationScores

    reader = CacheReader(path_or_store, cache_bytes=0)
    if view is not None:
        entry_name(view)  # validate early
    tasks = [
        dask.delayed(_scene_confusion)(path_or_store, s, view, labels_for_scene, num_classes)
        for s in reader.scene_ids
    ]
    if tasks:
        total = dask.delayed(sum)(tasks).compute(scheduler="threads", num_workers=num_workers)
    else:
        total = np.zeros((num_classes, num_classes), np.int64)
    scores = SegmentationScores.from_confusion(total)
    return {
        "view": view if view is not None else ("ensemble" if reader.spec.ensemble else "mean of views"),
        "scenes": len(tasks),
        "miou": scores.miou,
        "macc": scores.macc,
        "allacc": scores.allacc,
        "iou": [None if np.isnan(v) else float(v) for v in scores.iou],
        "confusion": np.asarray(total).tolist(),
    }
