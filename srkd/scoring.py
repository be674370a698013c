"""One whole-split scorer: scenes -> per-scene predictions -> confusion matrices -> scores.

It serves validation during training (`srkd.distill.run`), `srkd evaluate` (`srkd.evaluate.run`:
models with or without test-time augmentation, and the cached teacher) and the teacher mIoU of
`srkd inspect-cache --verify` (`teacher_miou`). Only where predictions come from differs:

- a model, `ModelPredictor`: Pointcept's precise test through `srkd.inference.infer_scene`
  (test-mode fragments x views cover every original point; softmax probabilities are summed per
  point; the argmax is the prediction);
- the cached teacher, `CachedTeacherPredictor`: the argmax of a stored entry, without running
  the teacher (`cached_teacher_prediction`).

Every prediction source maps one loaded scene to int64 (N,) classes of its N ORIGINAL points. One
confusion matrix per source is summed over the split (`srkd.metrics.ConfusionAccumulator`), so
mIoU comes from split-level intersections and unions (docs/method.md), never from per-scene means.

numpy at import time: torch (through `srkd.inference`) is imported only when a model predicts,
so `srkd inspect-cache` scores a cache without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from srkd.cache.reader import CacheReader, View
from srkd.cache.schema import entry_name
from srkd.errors import CacheError, CheckpointError, ConfigError
from srkd.metrics import ConfusionAccumulator, SegmentationScores, confusion_matrix
from srkd.types import PointCloud

if TYPE_CHECKING:
    import torch
    from torch import nn

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): `done` of `total` scenes scored; `message` says what runs."""

Key = TypeVar("Key")


@dataclass(frozen=True)
class LabelledScene:
    """One scene to score.

    labels: int64 (N,) ground-truth class of each original point (-1 = ignored).
    cloud:  the loaded scene (origin_index = arange(N)); sources that run a model need it,
            sources that read a cache do not (None when only the labels are known).
    """

    scene_id: str
    labels: np.ndarray
    cloud: PointCloud | None = None

    @classmethod
    def of(cls, pc: PointCloud, scene_id: str | None = None) -> LabelledScene:
        """A loaded labelled scene (its `segment` are the labels)."""
        return cls(scene_id if scene_id is not None else (pc.scene_id or ""), pc.segment, pc)


Predictor = Callable[[LabelledScene], np.ndarray]
"""A prediction source: scene -> int64 (N,) class of each of its N original points."""


def score_split(
    scenes: Sequence[Key],
    load: Callable[[Key], LabelledScene],
    predictors: Mapping[str, Predictor],
    num_classes: int,
    *,
    progress: Progress | None = None,
    on_scene: Callable[[LabelledScene, dict[str, np.ndarray]], None] | None = None,
    threads: int | None = 1,
) -> dict[str, SegmentationScores]:
    """Score every prediction source over a split.

    Args:
        scenes: what `load` takes, one per scene (scene ids, or already loaded clouds).
        load: key -> LabelledScene; may check the scene (e.g. against a cache) and raise.
        predictors: name -> source; each is called once per scene, in this order.
        num_classes: K; predictions and labels are class ids in [0, K) (labels also -1).
        progress: called with (done, total, scene id) before a scene's predictions (in
            completion order when threaded) and once with (total, total, "scored").
        on_scene: called (in this thread) with each scene and its predictions {name: (N,)}.
        threads: scenes scored at once on a thread pool (1 = in order, in this thread; None =
            the pool's default). Sums of integer counts, so the result does not depend on it.
    Returns:
        name -> SegmentationScores of the confusion matrix summed over all scenes.
    """
    accs = {name: ConfusionAccumulator(num_classes) for name in predictors}
    for scene, preds in _scored(scenes, load, predictors, threads, progress):
        for name, pred in preds.items():
            accs[name].add_matrix(_confusion(pred, scene, num_classes))
        if on_scene is not None:
            on_scene(scene, preds)
    if progress:
        progress(len(scenes), len(scenes), "scored")
    return {name: acc.scores() for name, acc in accs.items()}


def _scored(
    scenes: Sequence[Key], load: Callable[[Key], LabelledScene], predictors: Mapping[str, Predictor],
    threads: int | None, progress: Progress | None,
) -> Iterator[tuple[LabelledScene, dict[str, np.ndarray]]]:  # fmt: skip
    """(scene, {name: predictions}) of every scene, in order: here, or from a thread pool."""
    total = len(scenes)

    def predict_all(scene: LabelledScene) -> dict[str, np.ndarray]:
        return {name: predict(scene) for name, predict in predictors.items()}

    if threads == 1:
        for done, key in enumerate(scenes):
            scene = load(key)
            if progress:
                progress(done, total, scene.scene_id)
            yield scene, predict_all(scene)
        return

    def score_one(key: Key) -> tuple[LabelledScene, dict[str, np.ndarray]]:
        scene = load(key)
        return scene, predict_all(scene)

    pool = ThreadPoolExecutor(threads, thread_name_prefix="srkd-score")
    try:
        for done, (scene, preds) in enumerate(pool.map(score_one, scenes)):
            if progress:
                progress(done, total, scene.scene_id)
            yield scene, preds
    finally:  # after an error, scenes not started yet are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _confusion(pred: np.ndarray, scene: LabelledScene, num_classes: int) -> np.ndarray:
    """int64 (K, K) confusion matrix of one source on one scene (rows = ground truth)."""
    labels = np.asarray(scene.labels)
    if labels.shape != np.shape(pred):
        raise ConfigError(
            f"scene {scene.scene_id!r}: {np.shape(pred)} predictions for ground truth of shape "
            f"{labels.shape}; a prediction source must cover every original point"
        )
    return confusion_matrix(pred, labels, num_classes)


# ---- prediction sources ---------------------------------------------------------------------


class ModelPredictor:
    """A model's precise-test predictions: `srkd.inference.infer_scene` over `precise_views(pc,
    tta, domain)` (13 ScanNet / 10 lidar views with `tta`, else the scene as stored), batch 1,
    eval mode, no gradients; argmax of the summed softmax probabilities.

    Args:
        model: nn.Module mapping a PointBatch to ModelOutput (logits (M, K)), already on `device`.
        feature_names: PointCloud fields that form its input, e.g. ("color", "normal").
        color_norm: its input colour normalisation (srkd.data.transforms.COLOR_NORMS key).
        num_classes: if given, a model with another number of class scores is a CheckpointError
            naming `name` (and the dataset `dataset`).
        precision: "fp32", or "bf16" (`srkd.inference.inference_autocast`): the predictions are
            bf16's, and every scene is also predicted in fp32 to measure their argmax agreement.
    Attributes (over the scenes predicted so far):
        votes_min: fewest (view, fragment) predictions covering one original point (inf before any).
        votes_sum: all such predictions; points: original points seen; views: views per scene.
        agreeing: with bf16, the points whose bf16 and fp32 argmax agree (0 with fp32).
    """

    def __init__(
        self, model: nn.Module, grid_size: float, feature_names: Sequence[str],
        device: torch.device | str = "cpu", *, color_norm: str, domain: str = "indoor",
        tta: bool = False, num_classes: int | None = None, name: str = "model", dataset: str = "",
        precision: str = "fp32",
    ) -> None:  # fmt: skip
        self.model = model.eval()
        self.grid_size = float(grid_size)
        self.feature_names = tuple(feature_names)
        self.device = device
        self.color_norm = color_norm
        self.domain = domain
        self.tta = tta
        self.num_classes = num_classes
        self.name = name
        self.dataset = dataset
        self.precision = precision
        self.agreeing = 0
        self.votes_min: float = math.inf
        self.votes_sum = 0
        self.points = 0
        self.views = 0

    def __call__(self, scene: LabelledScene) -> np.ndarray:
        from srkd.inference import precise_views

        pc = scene.cloud
        if pc is None:
            raise ConfigError(f"scene {scene.scene_id!r}: model {self.name!r} needs the loaded scene")
        views = precise_views(pc, self.tta, self.domain)
        result = self._infer(pc, views, self.precision)
        k = result.prob_sum.shape[1]
        if self.num_classes is not None and k != self.num_classes:
            where = f"dataset {self.dataset!r}" if self.dataset else "the dataset"
            raise CheckpointError(
                f"model {self.name!r} gives {k} class scores, {where} has {self.num_classes} classes"
            )
        self.votes_min = min(self.votes_min, int(result.votes.min()))
        self.votes_sum += int(result.votes.sum())
        self.points += pc.num_points
        self.views = len(views)
        pred = result.predictions()
        if self.precision != "fp32":
            self.agreeing += int((self._infer(pc, views, "fp32").predictions() == pred).sum())
        return pred

    @property
    def precision_agreement(self) -> float | None:
        """With bf16: the fraction of the points so far whose argmax equals fp32's; else None."""
        return self.agreeing / self.points if self.precision != "fp32" and self.points else None

    def _infer(self, pc: PointCloud, views: Sequence[Any], precision: str) -> Any:
        from srkd.inference import infer_scene

        return infer_scene(self.model, pc, views, self.grid_size, self.feature_names, self.device,
                           color_norm=self.color_norm, domain=self.domain, precision=precision)  # fmt: skip


def score_model(
    model: nn.Module,
    scenes: Sequence[PointCloud],
    num_classes: int,
    grid_size: float,
    feature_names: Sequence[str],
    device: torch.device | str = "cpu",
    *,
    color_norm: str,
    domain: str = "indoor",
) -> SegmentationScores:
    """Validation during training: a single-pass (no TTA) precise test of `model` over every
    original point of the loaded `scenes`, with its input `color_norm` and the view and fragment
    transforms of `domain`."""
    predictor = ModelPredictor(model, grid_size, feature_names, device, color_norm=color_norm,
                               domain=domain)  # fmt: skip
    return score_split(scenes, LabelledScene.of, {"model": predictor}, num_classes)["model"]


def cached_teacher_prediction(reader: CacheReader, scene_id: str, view: View | None = None) -> np.ndarray:
    """int64 (N,) class of every original point of a scene, from a `srkd.cache.CacheReader`.

    With `view`, that entry's argmax; else the ensemble entry's argmax when stored, else the
    argmax of the mean of the views' softmax probabilities (p = exp(z - max z) / sum, in float64).
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


class CachedTeacherPredictor:
    """The cached teacher's predictions (`cached_teacher_prediction` of `view`, default: the
    ensemble entry if stored, else the mean of the views' probabilities); no teacher runs.

    A scene whose cached point count differs from its ground truth is a CacheError (the cache was
    built from other data). Safe to call from several threads when `reader` has no LRU
    (cache_bytes=0).
    """

    def __init__(self, reader: CacheReader, view: View | None = None) -> None:
        if view is not None:
            entry_name(view)  # validate early
        self.reader = reader
        self.view = view

    def describe(self) -> str:
        """Which entry is scored: the view, "ensemble" or "mean of views"."""
        if self.view is not None:
            return str(self.view)
        return "ensemble" if self.reader.spec.ensemble else "mean of views"

    def __call__(self, scene: LabelledScene) -> np.ndarray:
        pred = cached_teacher_prediction(self.reader, scene.scene_id, self.view)
        n = np.shape(scene.labels)[0] if np.ndim(scene.labels) else 0
        if np.shape(scene.labels) != (len(pred),):
            raise CacheError(
                f"the teacher cache at {self.reader.where} holds {len(pred)} points of scene "
                f"{scene.scene_id!r}, the ground truth {n}; the cache was built from other data"
            )
        return pred


def teacher_miou(
    path_or_store: Any,
    labels_for_scene: Callable[[str], np.ndarray],
    num_classes: int,
    view: View | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Score the cached teacher against ground truth over every committed scene of a cache.

    Args:
        path_or_store: the cache.
        labels_for_scene: scene id -> int (N,) labels of its original points (-1 = ignore).
        num_classes: K.
        view: which entry to score (see `CachedTeacherPredictor`).
        num_workers: scenes decoded at once on threads (default: the thread pool's choice).
    Returns:
        dict with view, scenes, miou, macc, allacc, iou (per class list, None = absent class)
        and confusion (K x K list); intersections/unions summed over the split (docs/method.md).
    """
    reader = CacheReader(path_or_store, cache_bytes=0)
    teacher = CachedTeacherPredictor(reader, view)

    def load(scene_id: str) -> LabelledScene:
        return LabelledScene(scene_id, np.asarray(labels_for_scene(scene_id)))

    scores = score_split(reader.scene_ids, load, {"teacher": teacher}, num_classes,
                         threads=num_workers)["teacher"]  # fmt: skip
    return {
        "view": view if view is not None else teacher.describe(),
        "scenes": len(reader.scene_ids),
        "miou": scores.miou,
        "macc": scores.macc,
        "allacc": scores.allacc,
        "iou": [None if np.isnan(v) else float(v) for v in scores.iou],
        "confusion": scores.confusion.tolist(),
    }
