"""Where a run's teacher targets come from: a teacher cache (opened, matched against the run's
dataset and data, its settings taken over) or an online teacher; the per-batch targets
themselves are srkd.distill.targets. Cached targets are gathered by the training dataset
(srkd.distill.data.train_dataset), so the loop only takes them from the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from srkd.cache.matching import check_cache_data
from srkd.data.collate import PointBatch
from srkd.data.scannet import DatasetSpec
from srkd.distill.config import RunConfig
from srkd.distill.targets import OnlineTeacher, batch_targets, label_targets
from srkd.errors import CacheError, ConfigError
from srkd.models.base import ModelOutput

TargetsFn = Callable[[PointBatch], ModelOutput | None]
"""batch -> teacher logits and features per point (None: no teacher)."""


def no_targets(batch: PointBatch) -> None:
    """The `TargetsFn` of a run without a teacher: no targets for any batch."""


def open_cache(cfg: RunConfig) -> tuple[Any, RunConfig]:
    """(an open CacheReader of cfg.cache, cfg with the cache's dataset, data root and split).

    The cache decides dataset, data root and split unless the user overrides them explicitly;
    its data root is only a hint (the data is checked by content, scene by scene).
    Raises ConfigError when --dataset contradicts the cache or its data root is gone."""
    from srkd.cache import CacheReader

    reader = CacheReader(cfg.cache)
    spec = reader.spec
    if cfg.dataset is not None and cfg.dataset != spec.dataset:
        raise ConfigError(
            f"--dataset {cfg.dataset} does not match the cache {cfg.cache}, which was built for "
            f"{spec.dataset!r} ({spec.num_classes} classes); drop --dataset or use a matching cache"
        )
    if cfg.data_root is None and not Path(spec.data_root).is_dir():
        raise ConfigError(
            f"the cache {cfg.cache} was built from {spec.data_root}, which does not exist here; "
            "pass --data-root with the same data at its new location"
        )
    cfg = replace(cfg, dataset=spec.dataset, data_root=cfg.data_root or Path(spec.data_root),
                  train_split=spec.split)
    return reader, cfg


def check_cache_covers(reader: Any, source: Any, cfg: RunConfig) -> None:
    """Before training, not in the middle of an epoch: every scene of `source` (the train split
    of cfg.data_root) is in the cache, and a few of them hold the data the cache was built from
    (srkd.cache.matching.check_cache_data). Raises CacheError naming the missing scenes."""
    cached = set(reader.scene_ids)
    missing = [s for s in source.scene_ids if s not in cached]
    if missing:
        raise CacheError(
            f"{len(missing)} of {len(source.scene_ids)} scenes of {cfg.data_root}/"
            f"{cfg.train_split} are not in the cache {cfg.cache} (e.g. {', '.join(missing[:3])}); "
            "run `srkd cache-teacher` again to add them"
        )
    check_cache_data(reader, source, source.scene_ids)


def teacher_targets(cfg: RunConfig, ds: DatasetSpec, device: torch.device,
                    reader: Any) -> tuple[TargetsFn, int | None]:
    """(targets_fn, teacher feature dim) from the open cache `reader` or the online teacher;
    (no_targets, None) when the run has neither; (label_targets, None) for --targets labels. With a cache, targets_fn is `batch_targets`:
    the dataset of srkd.distill.data.train_dataset gathers them with each sample.

    Raises ConfigError when both are given, the cache's classes differ from the dataset's, or
    --targets ensemble meets a cache without an ensemble entry."""
    if cfg.cache is not None and cfg.online_teacher is not None:
        raise ConfigError("give either --cache or --online-teacher, not both")
    if cfg.targets == "labels":  # a label-only control: the cache (if any) only gives the views
        if cfg.online_teacher is not None:
            raise ConfigError("--targets labels puts the ground truth in the teacher's place; "
                              "drop --online-teacher (a --cache still gives the views)")
        return label_targets(ds.num_classes), None
    if reader is not None:
        if reader.spec.num_classes != ds.num_classes:
            raise ConfigError(
                f"the cache {cfg.cache} holds {reader.spec.num_classes} classes but dataset "
                f"{ds.name!r} has {ds.num_classes}"
            )
        if cfg.targets == "ensemble" and not reader.spec.ensemble:
            raise ConfigError(
                f"--targets ensemble: the cache {cfg.cache} holds no ensemble entry; rebuild it "
                "with several --views and --ensemble, or use --targets view|canonical"
            )
        return batch_targets, reader.spec.feature_dim
    if cfg.online_teacher is not None:
        from srkd.models.teacher import TeacherRef, load_teacher

        ref = TeacherRef(cfg.online_teacher, cfg.teacher_model, color_norm=cfg.teacher_color_norm)
        teacher, info = load_teacher(ref, ds, device)
        prepend = info.feature_names[:1] == ("coord",) and "coord" not in ds.feature_names
        online = OnlineTeacher(teacher.to(device), amp=cfg.amp, feature_names=ds.feature_names,
                               color_norms=(cfg.color_norm, info.color_norm), prepend_coord=prepend)
        return online, teacher.feature_dim
    return no_targets, None
