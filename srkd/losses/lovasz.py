"""Lovasz-softmax: a convex surrogate of the per-class Jaccard (IoU) loss.

Berman, Rannen Triki and Blaschko, "The Lovasz-Softmax loss: a tractable surrogate for the
optimization of the intersection-over-union measure in neural networks", CVPR 2018.
"""

from __future__ import annotations

import torch

from srkd.losses._checks import as_float, check_logits, check_segment, zero_like_graph
from srkd.types import IGNORE_INDEX


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at a sorted error vector.

    fg_sorted: float (P,) foreground indicator ordered by decreasing error. Entry k is
    Delta(S_k) - Delta(S_{k-1}), S_k = the k largest errors, Delta(S) = |S| / |F u S|.
    """
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    # successive differences of the Jaccard loss of the growing error sets
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax_loss(
    logits: torch.Tensor, segment: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Lovasz-softmax over the whole batch (points flattened), averaged over present classes.

    With p = softmax(z) over the valid points V and, for each class c present in the labels,
    errors m_c(p) = |[y_p = c] - p_c(p)|:

        Lovasz = 1/|C_present| * sum_c  lovasz_ext(Delta_J_c)(m_c),
        lovasz_ext(Delta)(m) = sum_k m_(k) * (Delta(S_k) - Delta(S_{k-1}))

    where m_(1) >= m_(2) >= ... are the sorted errors, S_k the points of the k largest, and
    Delta_J_c(S) = |S| / |F_c u S| the Jaccard loss of class c (F_c = points labelled c) when the
    points in S are wrong (Berman et al., CVPR 2018, eq. 8-9; "present" classes, per batch).

    Args:
        logits:  float (N, K) student logits (computed in float32).
        segment: int64 (N,) labels in [0, K) or `ignore_index` (-1, excluded).
    Returns:
        float32 scalar in [0, 1]; 0 (attached to the graph) when no point has a valid label.
    """
    check_logits("logits", logits)
    check_segment(segment, logits.shape[0], logits.shape[1], ignore_index)
    valid = segment != ignore_index
    if not bool(valid.any()):
        return zero_like_graph(as_float(logits))
    probs = torch.softmax(as_float(logits[valid]), dim=1)
    labels = segment[valid]
    losses = []
    for c in torch.unique(labels).tolist():
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
    return torch.stack(losses).mean()
