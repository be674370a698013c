"""Stage two: train a student against teacher targets (cached or online), or a model alone.

Teacher targets are per ORIGINAL point, so any student view can gather them by
(scene, view, origin_index):
- targets "view": the student's sample replays one of the scene's cached teacher views (its
  recorded geometry), then draws its own point-subset, deformation and colour augmentations;
  the teacher's outputs for that view are gathered for the points that survive.
- targets "canonical": cached view 0 (the scene as stored); "ensemble": the cached mean over
  views (a test-time-augmented teacher). The student draws a fresh view of its own.
- targets "labels": the ground truth as one-hot logits stands in for the teacher (a label-only
  control); with a cache the student replays the cached views as with "view".
- online teacher: the frozen teacher runs on exactly the student's batch in every step (the
  release's way), for comparison on equal terms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from srkd.cache.matching import check_cached_scene
from srkd.data.collate import PointBatch
from srkd.data.transforms import COLOR_NORMS, DEFAULT_COLOR_NORM, Record
from srkd.errors import CacheError, ConfigError
from srkd.models.base import ModelOutput
from srkd.types import FEATURE_WIDTHS, IGNORE_INDEX, TARGET_MODES, PointCloud


def sample_slices(batch: PointBatch) -> list[slice]:
    """Point ranges of the batch's SOURCE samples (before any Mix3D merge), one per scene id."""
    ends = batch.sample_offset.tolist()
    return [slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


class CachedTargets:
    """Teacher logits (M, K) and features (M, Dt) float32 gathered from a teacher cache, per sample
    or per batch.

    Training uses `sample` as the dataset's target source (srkd.data.dataset.TargetSource): each
    sample's targets are gathered where the sample is made (the DataLoader workers), travel in
    the batch, and the loop's `targets_fn` is `batch_targets`. Called on a batch (`__call__`),
    it gathers in the calling process instead (tests, benchmarks, batches without targets).

    Args:
        reader: an open `srkd.cache.CacheReader` (safe in forked or spawned DataLoader workers:
            it pickles as its location and zarr resets its event loop after a fork).
        mode: "view" (the sample's own view), "canonical" (view 0) or "ensemble".
    """

    def __init__(self, reader, mode: str = "view") -> None:
        if mode not in TARGET_MODES:
            raise ConfigError(f"--targets must be one of {TARGET_MODES}, got {mode!r}")
        self.reader = reader
        self.mode = mode

    def entry(self, scene_id: str, view: int) -> int | str:
        """The cache entry that holds the targets of one sample."""
        if self.mode == "ensemble":
            if not self.reader.has_ensemble(scene_id):
                raise CacheError(
                    f"scene {scene_id!r}: the cache holds no ensemble entry; rebuild it with "
                    "several views and --ensemble, or use --targets view|canonical"
                )
            return "ensemble"
        if self.mode == "canonical":
            return 0
        if view < 0:
            raise ConfigError(
                f"scene {scene_id!r}: --targets view needs samples that replay a cached view "
                "(the dataset must be built with CachedViewProvider)"
            )
        return view

    def sample(self, scene_id: str, view: int, origin_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits float32 (M, K), features float32 (M, Dt)) of one sample's points, given by
        their int64 (M,) `origin_index`, from the entry `entry(scene_id, view)` picks."""
        return self.reader.gather(scene_id, self.entry(scene_id, view), origin_index)

    def __call__(self, batch: PointBatch) -> ModelOutput:
        """The targets of every point of `batch` (N rows, in point order), on its device."""
        logits, feats = [], []
        origin = batch.origin_index.cpu().numpy()
        for i, rows in enumerate(sample_slices(batch)):
            lg, ft = self.sample(batch.scene_ids[i], int(batch.views[i]), origin[rows])
            logits.append(lg)
            feats.append(ft)
        device = batch.coord.device
        return ModelOutput(
            logits=torch.from_numpy(np.concatenate(logits)).to(device),
            feature=torch.from_numpy(np.concatenate(feats)).to(device),
        )


LABEL_LOGIT = 8.0
"""The logit of the labelled class in `label_targets` (0 elsewhere): at T = 2 the label gets
e^4 / (e^4 + 19) = 0.74 of a 20-class distribution, near a trained teacher's mean maximum
probability (0.78 for the shipped demo teacher on the bench rooms)."""


def label_targets(num_classes: int) -> Callable[[PointBatch], ModelOutput]:
    """`targets_fn` of `--targets labels`: one-hot ground truth in the teacher's place.

    Each point's target logits are LABEL_LOGIT at its label and 0 elsewhere, float32
    (N, num_classes); an unlabelled point gets all zeros (a uniform target). There are no
    features (feature None), so only logit terms (kl, cwd) can use them."""

    def targets_fn(batch: PointBatch) -> ModelOutput:
        n = len(batch.segment)
        logits = torch.zeros(n, num_classes, device=batch.segment.device)
        valid = batch.segment != IGNORE_INDEX
        logits[valid, batch.segment[valid]] = LABEL_LOGIT
        return ModelOutput(logits=logits, feature=None)  # type: ignore[arg-type]

    return targets_fn


def batch_targets(batch: PointBatch) -> ModelOutput:
    """`targets_fn` of a run trained from a cache: the teacher targets the batch carries
    (gathered by the dataset, `CachedTargets.sample`), logits float32 (N, K) and features float32
    (N, Dt), on the batch's device. In the training loop the batch has already been moved there
    with them, so this costs nothing; otherwise it copies them (`non_blocking`: asynchronous from
    pinned memory). ConfigError when the batch carries no targets."""
    if batch.teacher_logits is None or batch.teacher_feature is None:
        raise ConfigError(
            "the batch carries no teacher targets: a run trained from a teacher cache needs a "
            "dataset built with target_source=CachedTargets(reader, mode).sample "
            "(srkd.distill.data.train_dataset does this)"
        )
    device = batch.coord.device
    return ModelOutput(logits=batch.teacher_logits.to(device, non_blocking=True),
                       feature=batch.teacher_feature.to(device, non_blocking=True))


class CachedViewProvider:
    """`ViewProvider` for SceneDataset: draws one of the scene's cached views uniformly and
    returns its recorded geometry, which the dataset replays before the student's own chain.

    With `replay=False` (targets "canonical" / "ensemble") it only checks that the scene is
    cached for the data the dataset loaded and returns (-1, []): the sample keeps its own view.
    The check runs on the scene the dataset has already loaded, once per scene and process
    (`check_cached_scene`): it catches a dataset changed since the cache was built, which
    gathering by index cannot.
    """

    def __init__(self, reader, replay: bool = True, canonical_only: bool = False) -> None:
        self.reader = reader
        self.replay = replay
        self.canonical_only = canonical_only  # replay view 0 only (training without augmentation)
        self._checked: set[str] = set()

    def __call__(self, scene_id: str, pc: PointCloud, rng: np.random.Generator) -> tuple[int, Record]:
        if scene_id not in self._checked:
            check_cached_scene(self.reader, scene_id, pc)
            self._checked.add(scene_id)
        if not self.replay:
            return -1, []
        view = 0 if self.canonical_only else int(rng.integers(self.reader.views(scene_id)))
        return view, view_record_of(self.reader.view_params(scene_id, view))


def view_record_of(params: dict) -> Record:
    """The transform record stored in a cached view's parameters."""
    record = params.get("record") if isinstance(params, dict) else None
    if not isinstance(record, list):
        raise CacheError(f"cached view parameters hold no transform record: {params!r}")
    return record


def renormalize_color(
    feat: torch.Tensor, feature_names: Sequence[str], src: str, dst: str
) -> torch.Tensor:
    """feat float (N, C) built from `feature_names` with colour normalisation `src`, returned
    with its colour channels in normalisation `dst` (COLOR_NORMS: c' = c * scale + shift, so
    c_dst = (c_src - shift_src) / scale_src * scale_dst + shift_dst). Unchanged if src == dst or
    there is no colour."""
    if src == dst or "color" not in feature_names:
        return feat
    start = sum(FEATURE_WIDTHS[n] for n in feature_names[: list(feature_names).index("color")])
    (scale_s, shift_s), (scale_d, shift_d) = COLOR_NORMS[src], COLOR_NORMS[dst]
    out = feat.clone()
    color = out[:, start : start + 3]
    out[:, start : start + 3] = (color - shift_s) / scale_s * scale_d + shift_d
    return out


class OnlineTeacher:
    """`targets_fn` that runs a frozen teacher on the student's batch (eval mode, no grad).

    When the teacher was trained with another colour normalisation than the student's inputs
    have (`color_norms` = (student's, teacher's)), the teacher gets its own: the batch's colour
    channels are mapped with `renormalize_color` (`feature_names` says where they are). A
    teacher whose input starts with the coordinates (`prepend_coord`, Pointcept's Sonata configs:
    coord + colour + normal) gets the batch's coord in front of the features.
    """

    def __init__(
        self,
        teacher: nn.Module,
        amp: bool = True,
        feature_names: Sequence[str] = (),
        color_norms: tuple[str, str] = (DEFAULT_COLOR_NORM, DEFAULT_COLOR_NORM),
        prepend_coord: bool = False,
    ) -> None:
        self.prepend_coord = prepend_coord
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.amp = amp
        self.feature_names = tuple(feature_names)
        self.color_norms = color_norms

    @torch.no_grad()
    def __call__(self, batch: PointBatch) -> ModelOutput:
        device = batch.coord.device
        feat = renormalize_color(batch.feat, self.feature_names, *self.color_norms)
        if self.prepend_coord:  # a Sonata-style teacher takes coord + colour + normal
            feat = torch.cat([batch.coord.to(feat.dtype), feat], dim=1)
        if feat is not batch.feat:
            batch = replace(batch, feat=feat)
        with torch.autocast(device.type, dtype=torch.float16,
                            enabled=self.amp and device.type == "cuda"):
            out = self.teacher(batch)
        return ModelOutput(logits=out.logits.float(), feature=out.feature.float())


