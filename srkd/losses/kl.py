"""Temperature-scaled KL divergence between teacher and student class distributions."""

from __future__ import annotations

import torch

from srkd.losses._checks import (
    as_float,
    check_logits,
    check_pair,
    check_segment,
    check_temperature,
    zero_like_graph,
)
from srkd.types import IGNORE_INDEX


def kl_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    segment: torch.Tensor,
    temperature: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Hinton-style distillation on per-point class distributions, valid points only.

        KL_T = T^2 * 1/|V| * sum_{p in V} KL( softmax(t_p / T) || softmax(s_p / T) ),
        KL(q || r) = sum_k q_k (log q_k - log r_k),      V = {p : y_p != ignore_index}

    (Hinton, Vinyals and Dean, "Distilling the knowledge in a neural network", 2015; the T^2
    factor keeps gradient magnitudes comparable across temperatures.) The teacher is detached.

    Args:
        student_logits: float (N, K).
        teacher_logits: float (N, K) at the same points (no gradient flows into it).
        segment:        int64 (N,) labels; only selects the points, the labels are not used.
        temperature:    T > 0 (2 on ScanNet, 1 on nuScenes).
    Returns:
        float32 scalar >= 0; 0 (attached to the graph) when no point has a valid label.
    """
    check_logits("student logits", student_logits)
    check_logits("teacher logits", teacher_logits)
    check_pair("KL", student_logits, teacher_logits, same_width=True)
    check_segment(segment, student_logits.shape[0], student_logits.shape[1], ignore_index)
    check_temperature("temperature", temperature)
    valid = segment != ignore_index
    if not bool(valid.any()):
        return zero_like_graph(as_float(student_logits))
    t = float(temperature)
    log_q = torch.log_softmax(as_float(teacher_logits[valid].detach()) / t, dim=1)
    log_r = torch.log_softmax(as_float(student_logits[valid]) / t, dim=1)
    per_point = (log_q.exp() * (log_q - log_r)).sum(dim=1)
    return per_point.mean() * (t * t)
