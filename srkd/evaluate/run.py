"""`srkd evaluate`: score models (and a cached teacher) on every original point of a split.

A model is scored with Pointcept's precise test (`srkd.scoring.ModelPredictor`: each test-time
view, 13 for ScanNet or 1 with TTA off, is voxelised in test mode into fragments that together
cover every point; softmax probabilities are summed per original point; the argmax is the
prediction). A cached teacher is scored from its cache without running it
(`srkd.scoring.CachedTeacherPredictor`). One confusion matrix per model is summed over the split
by `srkd.scoring.score_split`, so mIoU comes from split-level intersections and unions.

    models.py   which checkpoints, loaded as EvalModel rows
    data.py     which dataset, root and split; the teacher cache's own checks
    latency.py  the latency column
    run.py      the whole evaluation (this module) and writing its report

Explicit arguments always win over the values recorded in checkpoints; the cache's own settings
come next. This module never prints: progress is reported through a `progress(done, total,
message)` callback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srkd.data.dataset import SceneSource
from srkd.data.registry import DatasetSpec, dataset_default, get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.device import resolve_device
from srkd.errors import CacheError, CheckpointError, ConfigError
from srkd.evaluate.config import LATENCY_RUNS
from srkd.evaluate.data import check_cache, resolve_data
from srkd.evaluate.latency import measure_latency
from srkd.evaluate.models import EvalModel, check_model, display_name, load_eval_model
from srkd.evaluate.report import ReportRow, SplitInfo, write_report
from srkd.locking import locked_dir
from srkd.scoring import (
    CachedTeacherPredictor,
    LabelledScene,
    ModelPredictor,
    Predictor,
    Progress,
    score_split,
)
from srkd.settings import DEFAULT_DEVICE


@dataclass(frozen=True)
class SceneRender:
    """One scene kept for the top-down picture: coord float32 (N, 3), gt int64 (N,) and one
    int64 (N,) prediction per row name."""

    scene_id: str
    coord: np.ndarray
    gt: np.ndarray
    preds: dict[str, np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    """Everything `srkd evaluate` reports: one row per model, plus the scene to draw."""

    rows: list[ReportRow]
    spec: DatasetSpec
    render: SceneRender | None


def evaluate_models(
    scenes: SceneSource,
    models: Sequence[EvalModel],
    *,
    cache: Any = None,
    cache_name: str = "teacher (cache)",
    tta: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    max_scenes: int | None = None,
    render_scene: str | None = None,
    latency_warmup: int = 2,
    latency_runs: int = LATENCY_RUNS,
    progress: Progress | None = None,
) -> Evaluation:
    """Score `models` (and the teacher in `cache`, a CacheReader) on every point of the split.

    Args:
        scenes: the labelled split (a source of `open_scenes`, with `spec`, `split`, `root`);
            scenes are scored in sorted order.
        tta: the release's test views of the dataset's domain (True: 13 ScanNet views, 10 lidar
            views) or one identity view (False).
        precision: the models' inference precision, "fp32" or "bf16"; with bf16 every scene is
            also predicted in fp32 and each row records the argmax agreement of the two.
        max_scenes: score only the first N scenes.
        render_scene: scene kept for the top-down render and used for latency (default: the
            first scored scene).
        latency_runs: 0 skips latency measurement.
    Raises:
        ConfigError (no model, bad scene), CacheError (cache for other classes or points).
    """
    device = resolve_device(device)
    spec = scenes.spec
    ids, render_id = _check_request(scenes, models, cache, cache_name, max_scenes, render_scene)
    for m in models:  # a checkpoint that records no grid size uses the dataset's
        m.grid_size = dataset_default("grid_size", m.grid_size, spec)
    predictors = _predictors(models, cache, cache_name, spec, tta, device, precision)
    renders: list[SceneRender] = []

    def load(scene_id: str) -> LabelledScene:
        pc = scenes.load(scene_id)
        if cache is not None:  # before any model runs on data the cache was not built from
            cache.check_scene_data(scene_id, pc.content_sha256(), str(scenes.root))
        return LabelledScene.of(pc, scene_id)

    def keep(scene: LabelledScene, preds: dict[str, np.ndarray]) -> None:
        if scene.scene_id == render_id and scene.cloud is not None:
            renders.append(SceneRender(scene.scene_id, scene.cloud.coord, scene.labels, preds))

    scores = score_split(ids, load, predictors, spec.num_classes, progress=progress, on_scene=keep)
    rows = _model_rows(scenes, models, predictors, scores, len(ids), render_id, device,
                       (latency_warmup, latency_runs), progress)  # fmt: skip
    if cache is not None:
        rows.append(_cache_row(cache, cache_name, scores[cache_name], scenes, len(ids)))
    return Evaluation(rows, spec, renders[0] if renders else None)


def _check_request(
    scenes: SceneSource, models: Sequence[EvalModel], cache: Any, cache_name: str,
    max_scenes: int | None, render_scene: str | None,
) -> tuple[list[str], str]:  # fmt: skip
    """(ids of the scenes to score, the scene to render); ConfigError/CacheError for a request
    that cannot be scored: nothing to score, a bad scene count or render scene, a cache that
    lacks scenes or classes, two rows with one name."""
    if not models and cache is None:
        raise ConfigError("nothing to evaluate: give at least one model or a teacher cache")
    if max_scenes is not None and max_scenes < 1:
        raise ConfigError(f"max_scenes must be at least 1, got {max_scenes}")
    ids = list(scenes.scene_ids)[:max_scenes]
    render_id = ids[0] if render_scene is None else render_scene
    if render_id not in ids:
        raise ConfigError(
            f"scene {render_id!r} to render is not among the {len(ids)} evaluated scenes of "
            f"split {scenes.split!r} (e.g. {', '.join(ids[:3])})"
        )
    if cache is not None:
        check_cache(cache, scenes.spec, ids)
    names = [m.name for m in models] + ([cache_name] if cache is not None else [])
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")
    return ids, render_id


def _predictors(
    models: Sequence[EvalModel], cache: Any, cache_name: str, spec: DatasetSpec, tta: bool,
    device: torch.device, precision: str = "fp32",
) -> dict[str, Predictor]:  # fmt: skip
    """Row name -> prediction source: the models in their order, then the cached teacher."""
    out: dict[str, Predictor] = {}
    for m in models:
        m.model.to(device).eval()
        assert m.grid_size is not None  # filled in from the dataset by evaluate_models
        out[m.name] = ModelPredictor(
            m.model, m.grid_size, m.feature_names, device, color_norm=m.color_norm, domain=spec.domain,
            tta=tta, num_classes=spec.num_classes, name=m.name, dataset=spec.name, precision=precision,
        )  # fmt: skip
    if cache is not None:
        out[cache_name] = CachedTeacherPredictor(cache)
    return out


def _model_rows(
    scenes: SceneSource, models: Sequence[EvalModel], predictors: dict[str, Predictor],
    scores: dict[str, Any], num_scenes: int, render_id: str, device: torch.device,
    latency_runs: tuple[int, int], progress: Progress | None,
) -> list[ReportRow]:  # fmt: skip
    """One report row per model, with its latency on the render scene unless runs are 0."""
    spec = scenes.spec
    warmup, runs = latency_runs
    latency_pc = scenes.load(render_id) if models and runs > 0 else None
    rows = []
    for m in models:
        p = predictors[m.name]
        assert isinstance(p, ModelPredictor)
        latency = None
        if latency_pc is not None:
            if progress:
                progress(num_scenes, num_scenes, f"latency of {m.name}")
            latency = measure_latency(m, latency_pc, device, warmup, runs, domain=spec.domain,
                                      precision=p.precision)  # fmt: skip
        extra = {**m.extra, "grid_size": m.grid_size, "feature_names": list(m.feature_names),
                 "color_norm": m.color_norm, "votes_per_point_min": int(p.votes_min),
                 "votes_per_point_mean": p.votes_sum / p.points, "precision": p.precision}  # fmt: skip
        if p.precision_agreement is not None:
            extra["argmax_agreement_with_fp32"] = p.precision_agreement
        split_info = SplitInfo(spec.name, scenes.split, num_scenes, p.views)
        rows.append(ReportRow(m.name, m.kind, scores[m.name], split_info, m.params, latency, m.source,
                              extra))  # fmt: skip
    return rows


def _cache_row(cache: Any, name: str, scores: Any, scenes: SceneSource, num_scenes: int) -> ReportRow:
    """The cached teacher's report row."""
    views = cache.spec.views
    entry = "ensemble entry" if cache.spec.ensemble else f"mean of {views} views"
    info = SplitInfo(scenes.spec.name, scenes.split, num_scenes, views,
                     f"every original point, cached teacher ({entry})")  # fmt: skip
    extra = {"teacher_name": cache.spec.teacher_name, "fingerprint": cache.fingerprint,
             "grid_size": cache.spec.grid_size}  # fmt: skip
    return ReportRow(name, "teacher-cache", scores, info, source=str(cache.where), extra=extra)


def run_evaluation(
    checkpoints: Sequence[Path] = (),
    *,
    cache: Path | None = None,
    dataset: str | None = None,
    data_root: Path | None = None,
    split: str | None = None,
    grid_size: float | None = None,
    tta: bool = True,
    device: str = DEFAULT_DEVICE,
    precision: str = "fp32",
    max_scenes: int | None = None,
    render_scene: str | None = None,
    latency_warmup: int = 2,
    latency_runs: int = LATENCY_RUNS,
    progress: Progress | None = None,
) -> Evaluation:
    """Load the checkpoints and/or the teacher cache, resolve the data (see `resolve_data`),
    and run `evaluate_models`. Every checkpoint is checked before any scene is scored."""
    if not checkpoints and cache is None:
        raise ConfigError("nothing to evaluate: pass at least one checkpoint or a teacher cache")
    for p in checkpoints:  # fail before anything slow runs
        if not Path(p).is_file():
            raise CheckpointError(f"checkpoint {p} does not exist (or is not a file)")
    reader = None
    if cache is not None:
        from srkd.cache import CacheReader

        if not Path(cache).is_dir():
            raise CacheError(f"no teacher cache at {cache} (not a directory)")
        reader = CacheReader(cache)
    models: list[EvalModel] = []
    for p in checkpoints:
        label = display_name(Path(p), [m.name for m in models])
        models.append(load_eval_model(Path(p), grid_size=grid_size, name=label))
    recorded = [(Path(m.source), m.train_params) for m in models]
    name, root, split_name = resolve_data(recorded, reader.spec if reader else None,
                                          dataset=dataset, data_root=data_root, split=split)  # fmt: skip
    spec = get_dataset_spec(name)
    for m in models:
        check_model(m, spec)
    scenes = open_scenes(spec, root, split_name)
    # a cache is read under its shared lock: never rebuilt or repaired while it is scored
    with locked_dir(cache, "teacher cache", CacheError, shared=True) if cache else contextlib.nullcontext():
        return evaluate_models(
            scenes, models, cache=reader, tta=tta, device=device, precision=precision, max_scenes=max_scenes,
            render_scene=render_scene, latency_warmup=latency_warmup, latency_runs=latency_runs,
            progress=progress,
            cache_name=f"{reader.spec.teacher_name} (cache)" if reader is not None else "teacher (cache)",
        )


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> dict[str, Path]:
    """metrics.json, report.md, class_iou.png, confusion_<model>.png and scene_<id>.png.

    Returns name -> path of every file written (see `srkd.evaluate.report.write_report`; "render" for
    the scene picture)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = evaluation.spec
    images: dict[str, Path] = {}
    written: dict[str, Path] = {}
    r = evaluation.render
    if r is not None:
        from srkd.evaluate.plots import plot_scene_topdown

        path = plot_scene_topdown(
            r.coord, r.gt, r.preds, spec.class_colors, out_dir / f"scene_{r.scene_id}.png",
            title=f"{r.scene_id}: ground truth and predictions (top-down)",
            class_names=spec.class_names,
        )
        images[f"Scene {r.scene_id} (top-down)"] = path
        written["render"] = path
    written.update(write_report(out_dir, evaluation.rows, spec.class_names, images=images))
    return written
