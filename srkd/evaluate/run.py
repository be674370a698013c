"""Precise evaluation of segmentation models (and of a cached teacher) over a whole split.

Every ORIGINAL point of every scene is scored. A model goes through `srkd.inference.infer_scene`:
each test-time view (13 for ScanNet, 1 with TTA off) is voxelised in test mode into fragments that
together cover every point, each fragment runs through the model (eval mode, no gradients,
batch 1), softmax probabilities are summed per original point, and the argmax is the prediction.
A cached teacher is scored from its cache without running it: argmax of the stored ensemble
entry, or of the mean of its views' probabilities when there is no ensemble.
One confusion matrix per model is summed over the split (`srkd.metrics`), so mIoU is computed
from split-level intersections and unions.

Settings recorded in a checkpoint's ``train_params`` that this module reads (all optional):
    dataset    registered dataset name, e.g. "scannet"
    data_root  dataset root holding <split>/<scene>/ folders
    grid_size  voxel edge in metres the model was trained with
    val_split  the split to score when none is given (default "val")
    role       what the model is ("student", "teacher", ...), shown as the row's kind; without
               it the kind comes from method / cache / online_teacher (e.g. "student (srkd)")
Explicit arguments always win over the recorded values; the cache's own settings come next.

This module never prints: progress is reported through a `progress(done, total, message)` callback.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srkd.cache.inspect import cached_teacher_prediction
from srkd.data.dataset import SceneSource
from srkd.data.scannet import DatasetSpec, get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.data.transforms import DEFAULT_COLOR_NORM
from srkd.device import describe_device, resolve_device
from srkd.errors import CacheError, CheckpointError, ConfigError
from srkd.evaluate.report import Latency, ReportRow, SplitInfo, write_report
from srkd.inference import infer_scene, precise_views
from srkd.locking import locked_dir
from srkd.metrics import ConfusionAccumulator
from srkd.types import FEATURE_WIDTHS, PointCloud

DEFAULT_DATASET = "scannet"
DEFAULT_SPLIT = "val"
_GENERIC_STEMS = {"model", "best", "last", "checkpoint", "model_best", "model_last", "final"}

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): `done` of `total` scenes scored; `message` says what runs."""


@dataclass
class EvalModel:
    """A model ready to be scored.

    model:         nn.Module mapping a PointBatch to ModelOutput (logits (M, K)); any device.
    feature_names: PointCloud fields that form its input, e.g. ("color", "normal").
    grid_size:     voxel edge (metres) of its test-mode voxelisation; None = the dataset's
                   (DatasetSpec.grid_size), filled in by `evaluate_models`.
    color_norm:    its input colour normalisation (srkd.data.transforms.COLOR_NORMS key).
    """

    name: str
    model: nn.Module
    feature_names: tuple[str, ...]
    grid_size: float | None
    kind: str = "model"
    source: str = ""
    params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None  # logit order; None = not recorded (unchecked)
    train_params: dict[str, Any] = field(default_factory=dict)
    color_norm: str = DEFAULT_COLOR_NORM


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    m: EvalModel,
    pc: PointCloud,
    device: torch.device,
    warmup: int = 2,
    runs: int = 10,
    budget_s: float = 60.0,
    domain: str = "indoor",
) -> Latency:
    """Median wall time (ms) of scoring every point of `pc` once: batch 1, no TTA, all test-mode
    fragments, voxelisation and host/device copies included; `warmup` runs are discarded.

    At most `runs` timed runs; after 3 of them, timing stops once `budget_s` seconds are spent
    (a slow CPU run would otherwise take many minutes). The method string gives the real count.
    `domain`: the dataset's transform domain (DatasetSpec.domain).
    """
    if runs < 1 or warmup < 0:
        raise ConfigError(f"latency needs runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    views = precise_views(pc, tta=False, domain=domain)
    times: list[float] = []
    began = time.perf_counter()
    for i in range(warmup + runs):
        _sync(device)
        start = time.perf_counter()
        infer_scene(m.model, pc, views, m.grid_size, m.feature_names, device, color_norm=m.color_norm,
                    domain=domain)
        _sync(device)
        if i >= warmup:
            times.append(1000.0 * (time.perf_counter() - start))
            if len(times) >= min(3, runs) and time.perf_counter() - began > budget_s:
                break
    method = (f"median of {len(times)} runs after {warmup} warm-up, batch 1, no TTA, "
              f"scene {pc.scene_id} ({pc.num_points:,} points)")  # fmt: skip
    return Latency(statistics.median(times), describe_device(device), method)


def evaluate_models(
    scenes: SceneSource,
    models: Sequence[EvalModel],
    *,
    cache: Any = None,
    cache_name: str = "teacher (cache)",
    tta: bool = True,
    device: str | torch.device = "cpu",
    max_scenes: int | None = None,
    render_scene: str | None = None,
    latency_warmup: int = 2,
    latency_runs: int = 10,
    progress: Progress | None = None,
) -> Evaluation:
    """Score `models` (and the teacher in `cache`, a CacheReader) on every point of the split.

    Args:
        scenes: the labelled split (a source of `open_scenes`, with `spec`, `split`, `root`);
            scenes are scored in sorted order.
        tta: the release's test views of the dataset's domain (True: 13 ScanNet views, 10 lidar
            views) or one identity view (False).
        max_scenes: score only the first N scenes.
        render_scene: scene kept for the top-down render and used for latency (default: the
            first scored scene).
        latency_runs: 0 skips latency measurement.
    Raises:
        ConfigError (no model, bad scene), CacheError (cache for other classes or points).
    """
    device = resolve_device(device)
    spec = scenes.spec
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
        _check_cache(cache, spec, ids)
    for m in models:  # a checkpoint that records no grid size uses the dataset's
        if m.grid_size is None:
            m.grid_size = spec.grid_size
    names = [m.name for m in models] + ([cache_name] if cache is not None else [])
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")

    accs = {n: ConfusionAccumulator(spec.num_classes) for n in names}
    votes_min = {m.name: math.inf for m in models}
    votes_sum = {m.name: 0 for m in models}
    points = 0
    render = None
    for m in models:
        m.model.to(device).eval()
    for done, scene_id in enumerate(ids):
        if progress:
            progress(done, len(ids), scene_id)
        pc = scenes.load(scene_id)
        points += pc.num_points
        preds: dict[str, np.ndarray] = {}
        if cache is not None:  # before any model runs on data the cache was not built from
            cache.check_scene_data(scene_id, pc.content_sha256(), str(scenes.root))
        views = precise_views(pc, tta, spec.domain)
        for m in models:
            result = infer_scene(m.model, pc, views, m.grid_size, m.feature_names, device,
                                 color_norm=m.color_norm, domain=spec.domain)
            if result.prob_sum.shape[1] != spec.num_classes:
                raise CheckpointError(
                    f"model {m.name!r} gives {result.prob_sum.shape[1]} class scores, dataset "
                    f"{spec.name!r} has {spec.num_classes} classes"
                )
            votes_min[m.name] = min(votes_min[m.name], int(result.votes.min()))
            votes_sum[m.name] += int(result.votes.sum())
            preds[m.name] = result.predictions()
        if cache is not None:
            preds[cache_name] = cached_teacher_prediction(cache, scene_id)
            if len(preds[cache_name]) != pc.num_points:
                raise CacheError(
                    f"the teacher cache at {cache.where} holds {len(preds[cache_name])} points of "
                    f"scene {scene_id!r}, the dataset {pc.num_points}; it was built from other data"
                )
        for name, pred in preds.items():
            accs[name].add(pred, pc.segment)
        if scene_id == render_id:
            render = SceneRender(scene_id, pc.coord, pc.segment, preds)
    if progress:
        progress(len(ids), len(ids), "scored")

    rows = []
    split_info = SplitInfo(spec.name, scenes.split, len(ids), len(views))
    latency_pc = scenes.load(render_id) if models and latency_runs > 0 else None
    for m in models:
        latency = None
        if latency_pc is not None:
            if progress:
                progress(len(ids), len(ids), f"latency of {m.name}")
            latency = measure_latency(m, latency_pc, device, latency_warmup, latency_runs,
                                      domain=spec.domain)
        extra = {**m.extra, "grid_size": m.grid_size, "feature_names": list(m.feature_names),
                 "color_norm": m.color_norm, "votes_per_point_min": int(votes_min[m.name]),
                 "votes_per_point_mean": votes_sum[m.name] / points}  # fmt: skip
        rows.append(ReportRow(m.name, m.kind, accs[m.name].scores(), split_info, m.params,
                              latency, m.source, extra))  # fmt: skip
    if cache is not None:
        views = cache.spec.views
        entry = "ensemble entry" if cache.spec.ensemble else f"mean of {views} views"
        info = SplitInfo(spec.name, scenes.split, len(ids), views,
                         f"every original point, cached teacher ({entry})")  # fmt: skip
        extra = {"teacher_name": cache.spec.teacher_name, "fingerprint": cache.fingerprint,
                 "grid_size": cache.spec.grid_size}  # fmt: skip
        rows.append(ReportRow(cache_name, "teacher-cache", accs[cache_name].scores(), info,
                              source=str(cache.where), extra=extra))  # fmt: skip
    return Evaluation(rows, spec, render)


def _check_cache(cache: Any, spec: DatasetSpec, ids: Sequence[str]) -> None:
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


def display_name(path: Path, taken: Sequence[str] = ()) -> str:
    """A short unique row name for a checkpoint: its stem, or its folder for generic stems
    ("runs/student/model.pt" -> "student"); "-2", "-3"... appended on collisions."""
    path = Path(path)
    stem = path.stem
    base = path.parent.name if stem in _GENERIC_STEMS and path.parent.name else stem
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_eval_model(path: Path, *, grid_size: float | None = None, name: str | None = None) -> EvalModel:
    """Load an srkd checkpoint (on CPU) as an EvalModel; check it against a dataset with
    `check_model`. Grid size: `grid_size`, else train_params["grid_size"], else None (the
    dataset's, filled in by `evaluate_models`)."""
    from srkd.models import count_parameters, load_checkpoint

    model, meta = load_checkpoint(path, map_location="cpu")
    unknown = [f for f in meta.feature_names if f not in FEATURE_WIDTHS]
    width = sum(FEATURE_WIDTHS.get(f, 0) for f in meta.feature_names)
    if unknown or not meta.feature_names or (meta.in_channels > 0 and width != meta.in_channels):
        raise CheckpointError(
            f"checkpoint {path} has input features {list(meta.feature_names)} for "
            f"{meta.in_channels} channels; evaluation builds inputs from {sorted(FEATURE_WIDTHS)}"
        )
    tp = dict(meta.train_params)
    grid = grid_size if grid_size is not None else tp.get("grid_size")
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int | float)
                             or not (math.isfinite(grid) and grid > 0)):
        raise ConfigError(f"grid size for {path} must be a positive number of metres, got {grid!r}")
    extra = {"model_name": meta.model_name, "srkd_version": meta.srkd_version}
    return EvalModel(
        name=name or display_name(path), model=model, feature_names=tuple(meta.feature_names),
        grid_size=float(grid), kind=_kind(tp), source=str(path),
        params=count_parameters(model), extra=extra, class_names=tuple(meta.class_names),
        train_params=tp, color_norm=meta.color_norm,
    )


def _kind(tp: dict[str, Any]) -> str:
    """The row's kind from train_params: how the model was trained."""
    method = f" ({tp['method']})" if tp.get("method") else ""
    if tp.get("cache") or tp.get("online_teacher"):
        return "student" + method
    return "trained" + method if method else "checkpoint"


def check_model(m: EvalModel, spec: DatasetSpec) -> None:
    """CheckpointError unless a loaded model predicts the dataset's classes in its label order."""
    if m.class_names is None:
        return
    if len(m.class_names) != spec.num_classes:
        raise CheckpointError(
            f"checkpoint {m.source} predicts {len(m.class_names)} classes but dataset "
            f"{spec.name!r} has {spec.num_classes}; evaluate it on the dataset it was trained "
            "for (--dataset)"
        )
    if tuple(m.class_names) != tuple(spec.class_names):
        diff = [f"#{i}: {a!r} vs {b!r}" for i, (a, b) in
                enumerate(zip(m.class_names, spec.class_names)) if a != b]  # fmt: skip
        raise CheckpointError(
            f"checkpoint {m.source} orders its classes differently from dataset {spec.name!r} "
            f"(checkpoint vs dataset at {', '.join(diff[:3])})"
        )


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
    chosen_split = pick("val_split", split, DEFAULT_SPLIT, "--split")
    return str(name), Path(root), str(chosen_split)


def run_evaluation(
    checkpoints: Sequence[Path] = (),
    *,
    cache: Path | None = None,
    dataset: str | None = None,
    data_root: Path | None = None,
    split: str | None = None,
    grid_size: float | None = None,
    tta: bool = True,
    device: str = "auto",
    max_scenes: int | None = None,
    render_scene: str | None = None,
    latency_warmup: int = 2,
    latency_runs: int = 10,
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
            scenes, models, cache=reader, tta=tta, device=device, max_scenes=max_scenes,
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
