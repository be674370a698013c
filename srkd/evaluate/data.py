"""Which data `srkd evaluate` scores: the dataset, root and split (explicit values, what the
checkpoints record, the teacher cache's settings, defaults), and the check that a teacher cache
holds the evaluated scenes of that dataset.

Settings recorded in a checkpoint's ``train_params`` that are read here (all optional):
    dataset    registered dataset name, e.g. "scannet"
    data_root  dataset root holding <split>/<scene>/ folders
    val_split  the split to score when none is given (default "val")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srkd.data.registry import DatasetSpec
from srkd.errors import CacheError, ConfigError
from srkd.types import DEFAULT_DATASET, VAL_SPLIT


def resolve_data(
    train_params: Sequence[tuple[Path, dict[str, Any]]],
    cache_spec: Any = None,
    *,
    dataset: str | None = None,
    data_root: Path | None = None,
    split: str | None = None,
) -> tuple[str, Path, str]:
    """(dataset, data_root, split): explicit value > what the checkpoints record in train_params
    (dataset, data_root, val_split; they must agree) > the teacher cache's settings (its split
    only when no checkpoint is given) > defaults ("scannet", none: error, "val")."""

    def pick(key: str, explicit: Any, default: Any, flag: str = "") -> Any:
        if explicit is not None:
            return explicit
        found = {str(tp[key]) for _, tp in train_params if tp.get(key) is not None}
        if len(found) > 1:
            raise ConfigError(
                f"the checkpoints record different {key} values {sorted(found)}; evaluate them "
                f"separately or pass {flag or '--' + key.replace('_', '-')}"
            )
        if found:
            return found.pop()
        if cache_spec is not None and hasattr(cache_spec, key):
            return getattr(cache_spec, key)
        return default

    name = pick("dataset", dataset, DEFAULT_DATASET)
    root = pick("data_root", data_root, None)
    if root is None:
        raise ConfigError(
            "no dataset root: the checkpoint does not record train_params['data_root']; "
            "pass --data-root DIR"
        )
    if split is None and not train_params and cache_spec is not None:
        split = cache_spec.split  # only a cached teacher: score the split it was built from
    chosen_split = pick("val_split", split, VAL_SPLIT, "--split")
    return str(name), Path(root), str(chosen_split)


def check_cache(cache: Any, spec: DatasetSpec, ids: Sequence[str]) -> None:
    """CacheError unless the teacher cache (a CacheReader) holds the dataset's classes and every
    scene id in `ids`."""
    k = cache.spec.num_classes
    if k != spec.num_classes:
        raise CacheError(
            f"the teacher cache at {cache.where} holds {k} classes, dataset {spec.name!r} has "
            f"{spec.num_classes}; score it on the dataset it was built from"
        )
    held = set(cache.scene_ids)
    missing = [s for s in ids if s not in held]
    if missing:
        raise CacheError(
            f"the teacher cache at {cache.where} (built for split {cache.spec.split!r}) lacks "
            f"{len(missing)} of the {len(ids)} evaluated scenes, e.g. {', '.join(missing[:3])}; "
            "build a cache of this split with `srkd cache-teacher`, or pick the cache's split "
            "with --split"
        )
