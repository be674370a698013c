"""Cross-entropy against the ground-truth labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srkd.losses._checks import (
    as_float,
    check_logits,
    check_segment,
    class_balanced_mean,
    zero_like_graph,
)
from srkd.types import IGNORE_INDEX


def cross_entropy_loss(
    logits: torch.Tensor, segment: torch.Tensor, ignore_index: int = IGNORE_INDEX,
    balanced: bool = False,
) -> torch.Tensor:
    """Mean cross-entropy over points with a valid label.

        CE = -1/|V| * sum_{p in V} log softmax(z_p)[y_p],   V = {p : y_p != ignore_index}

    With `balanced` the per-point CE is averaged within each label class first, then over the
    classes present in the batch (inverse class-frequency weighting per batch): a label-only
    control for the class rebalancing that CWD implies.

    Args:
        logits:   float (N, K) student logits (computed in float32 whatever the input dtype).
        segment:  int64 (N,) labels in [0, K) or `ignore_index` (-1).
        balanced: class-balanced mean instead of the plain mean over V.
    Returns:
        float32 scalar; 0 (attached to the graph) when no point has a valid label.
    """
    check_logits("logits", logits)
    check_segment(segment, logits.shape[0], logits.shape[1], ignore_index)
    if not bool((segment != ignore_index).any()):
        return zero_like_graph(as_float(logits))
    if balanced:
        valid = segment != ignore_index
        per_point = F.cross_entropy(as_float(logits[valid]), segment[valid], reduction="none")
        return class_balanced_mean(per_point, segment[valid], logits.shape[1])
    return F.cross_entropy(as_float(logits), segment, ignore_index=ignore_index)
