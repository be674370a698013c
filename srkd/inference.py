"""Whole-scene inference on every original point: test-mode fragments x augmented views.

Used by `srkd evaluate` (precise test with test-time augmentation) and by `srkd cache-teacher`
(one cached teacher view = one augmented view covering every point). Pointcept's precise test:
the scene is voxelised in test mode into fragments that together cover every point; each fragment
runs through the model separately; softmax probabilities are summed per original point over
fragments and views; argmax gives the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from srkd.data.collate import collate
from srkd.data.dataset import make_fragments
from srkd.data.transforms import (
    Record,
    canonical_view_record,
    fragment_transforms,
    replay,
    tta_view_records,
)
from srkd.settings import PRECISIONS
from srkd.types import PointCloud


@dataclass
class SceneInference:
    """Per original point of one scene (N points, K classes, D feature channels).

    prob_sum:    float64 (N, K) sum of softmax probabilities over all predictions of the point.
    feature_sum: float64 (N, D) sum of distilled features, or None when not requested.
    votes:       int64 (N,) number of (view, fragment) predictions that covered the point.
    """

    prob_sum: np.ndarray
    feature_sum: np.ndarray | None
    votes: np.ndarray

    @property
    def probs(self) -> np.ndarray:
        """float32 (N, K) mean probability over the predictions of each point."""
        return (self.prob_sum / np.maximum(self.votes, 1)[:, None]).astype(np.float32)

    @property
    def features(self) -> np.ndarray | None:
        """float32 (N, D) mean feature over the predictions of each point."""
        if self.feature_sum is None:
            return None
        return (self.feature_sum / np.maximum(self.votes, 1)[:, None]).astype(np.float32)

    def predictions(self) -> np.ndarray:
        """int64 (N,) argmax class of the summed probabilities."""
        return self.prob_sum.argmax(axis=1).astype(np.int64)

    def add(self, other: SceneInference) -> None:
        """Accumulate another view of the same scene in place."""
        self.prob_sum += other.prob_sum
        self.votes += other.votes
        if self.feature_sum is not None and other.feature_sum is not None:
            self.feature_sum += other.feature_sum


def precise_views(pc: PointCloud, tta: bool = True, domain: str = "indoor") -> list[Record]:
    """The views a precise test scores, as replayable records: with `tta`, the release's views
    (`tta_view_records`: indoors 4 z-rotations x 3 scales + 1 flip = 13, outdoors 5 scales x
    flip = 10); else the scene as stored (indoors centre-shifted, `canonical_view_record`)."""
    return tta_view_records(pc, domain) if tta else [canonical_view_record(pc, domain)]


def inference_autocast(device: torch.device, precision: str = "fp32", amp: bool = False) -> torch.autocast:
    """The autocast a model's inference runs under: bfloat16 on `device` for precision "bf16"
    (srkd.models.sparse runs spconv's CPU convolutions in float32 inside it), float16 for `amp` on
    CUDA, else none (float32). Unknown precision: ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def infer_view(
    model: nn.Module,
    view: PointCloud,
    grid_size: float,
    feature_names: Sequence[str],
    device: torch.device | str = "cpu",
    *,
    color_norm: str,
    with_feature: bool = False,
    amp: bool = False,
    precision: str = "fp32",
    num_points: int | None = None,
    domain: str = "indoor",
) -> SceneInference:
    """Run `model` over every point of one (already augmented) view, fragment by fragment.

    Args:
        view: the scene after the view's geometric transforms; `origin_index` maps its points to
            the N original points.
        num_points: N, the size of the original scene (default: max origin_index + 1).
        color_norm: the model's input colour normalisation (srkd.data.transforms.COLOR_NORMS;
            a checkpoint's `CheckpointMeta.color_norm`). Required: a wrong one silently costs
            accuracy.
        domain: "indoor" or "outdoor": which per-fragment transforms (`fragment_transforms`).
        amp: float16 autocast on CUDA (the teacher cache's setting); ignored on the CPU.
        precision: "fp32", or "bf16" for a bfloat16 autocast on any device (`inference_autocast`).
    Returns:
        Sums over fragments, indexed by ORIGINAL point.
    """
    device = torch.device(device)
    n = int(num_points if num_points is not None else view.origin_index.max() + 1)
    prob_sum = None
    feature_sum = None
    votes = np.zeros(n, dtype=np.int64)
    post = fragment_transforms(color_norm, domain)
    for sample in make_fragments(view, grid_size, tuple(feature_names), post):
        batch = collate([sample]).to(device)
        with inference_autocast(device, precision, amp):
            out = model(batch)
        prob = torch.softmax(out.logits.float(), dim=1).double().cpu().numpy()
        if prob_sum is None:
            prob_sum = np.zeros((n, prob.shape[1]), dtype=np.float64)
            if with_feature:
                feature_sum = np.zeros((n, out.feature.shape[1]), dtype=np.float64)
        np.add.at(prob_sum, sample.origin_index, prob)
        if feature_sum is not None:
            np.add.at(feature_sum, sample.origin_index, out.feature.float().double().cpu().numpy())
        np.add.at(votes, sample.origin_index, 1)
    assert prob_sum is not None  # a scene has at least one point, hence one fragment
    return SceneInference(prob_sum=prob_sum, feature_sum=feature_sum, votes=votes)


def infer_scene(
    model: nn.Module,
    pc: PointCloud,
    views: Sequence[Record],
    grid_size: float,
    feature_names: Sequence[str],
    device: torch.device | str = "cpu",
    *,
    color_norm: str,
    amp: bool = False,
    precision: str = "fp32",
    domain: str = "indoor",
) -> SceneInference:
    """Precise inference: the sum of `infer_view` over `views` (records replayed on `pc`, e.g.
    `precise_views(pc, domain=...)`), with the model's input `color_norm` and the fragment
    transforms of `domain`; `amp` and `precision` as in `infer_view`."""
    total: SceneInference | None = None
    for record in views:
        result = infer_view(model, replay(pc, record), grid_size, feature_names, device, amp=amp,
                            precision=precision, num_points=pc.num_points, color_norm=color_norm, domain=domain)
        if total is None:
            total = result
        else:
            total.add(result)
    assert total is not None, "need at least one view"
    return total
