"""Per-point teacher targets of a scene: every cached view through the frozen teacher.

One cached view covers every original point (`srkd.inference.infer_view`: test-mode fragments).
Its cached targets, per ORIGINAL point i:

    logits_i  = log(max(p_i, eps)),  p_i = mean over the fragments covering i of softmax(z)
    feature_i = mean over the same fragments of the teacher's distilled feature

Log-probabilities are valid logits: softmax(log p / T) = softmax(z / T) whenever p = softmax(z)
(one fragment covers i), because log softmax(z) = z - logsumexp(z) only shifts z per point. Where
fragments overlap, p is their mean probability (Pointcept's precise-test vote). The views
themselves (their chains and seeds) are `srkd.cache_teacher.views.ViewSettings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from srkd.cache import ViewTargets, ensemble_of
from srkd.errors import ConfigError
from srkd.inference import SceneInference, infer_view
from srkd.types import PointCloud

if TYPE_CHECKING:
    from srkd.cache_teacher.views import ViewSettings

PROB_EPS = 1e-12
"""Probabilities are clamped here before the log: log(1e-12) = -27.6 lies below the int8 codec's
24-nat window under each point's top logit, so clamping never changes a stored code."""


def inference_targets(result: SceneInference) -> tuple[np.ndarray, np.ndarray]:
    """Cached targets of one view: (logits float32 (N, K) = log mean probability, feature float32
    (N, D) = mean feature), averaged over the fragments covering each original point."""
    if result.feature_sum is None:
        raise ConfigError("the teacher's features were not collected (infer_view with_feature=True)")
    if int(result.votes.min()) < 1:
        missing = int((result.votes < 1).sum())
        raise ConfigError(f"{missing} original points were covered by no fragment; cannot cache them")
    votes = result.votes[:, None].astype(np.float64)
    prob = result.prob_sum / votes
    logits = np.log(np.maximum(prob, PROB_EPS))
    feature = result.feature_sum / votes
    return logits.astype(np.float32), feature.astype(np.float32)


def scene_targets(
    model: nn.Module,
    pc: PointCloud,
    views: ViewSettings,
    grid_size: float,
    feature_names: Sequence[str],
    device: torch.device | str = "cpu",
    ensemble: bool = False,
    *,
    color_norm: str,
) -> tuple[list[ViewTargets], ViewTargets | None]:
    """Every view of one scene through the teacher (eval, no grad, fp16 autocast on CUDA).

    Args:
        pc: the scene as stored (origin_index = arange(N)).
        color_norm: the teacher's input colour normalisation (TeacherInfo.color_norm).
    Returns:
        (V ViewTargets with logits (N, K), feature (N, D) float32 and params {"view": v,
        "canonical": v == 0, "seed": cache seed, "record": transform record}, the ensemble
        entry or None).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: list[ViewTargets] = []
    try:
        for v in range(views.views):
            view_pc, record = views.draw(pc, v)
            result = infer_view(
                model, view_pc, grid_size, feature_names, device, with_feature=True,
                amp=device.type == "cuda", num_points=pc.num_points, color_norm=color_norm,
                domain=views.domain,
            )  # fmt: skip
            logits, feature = inference_targets(result)
            params = {"view": v, "canonical": v == 0, "seed": int(views.seed), "record": record}
            out.append(ViewTargets(logits, feature, params))
    finally:
        model.train(was_training)
    ens = ensemble_of(out, {"kind": "ensemble", "views": len(out)}) if ensemble else None
    return out, ens
