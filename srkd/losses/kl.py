"""Temperature-scaled KL divergence between teacher and student class distributions."""

from __future__ import annotations

import torch

from srkd.losses._checks import (
    as_float,
    class_balanced_mean,
    check_logits,
    check_pair,
    check_segment,
    check_temperature,
    zero_like_graph,
)
from srkd.errors import ConfigError
from srkd.types import IGNORE_INDEX

KL_POINTS: tuple[str, ...] = ("all", "labelled")
"""Which points KL_T averages over (`kl_points`): every point with a teacher target, or only
the points with a valid label (the SRKD release)."""


def kl_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    segment: torch.Tensor,
    temperature: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
    points: str = "labelled",
    balanced: bool = False,
) -> torch.Tensor:
    """Hinton-style distillation on per-point class distributions.

        KL_T = T^2 * 1/|V| * sum_{p in V} KL( softmax(t_p / T) || softmax(s_p / T) ),
        KL(q || r) = sum_k q_k (log q_k - log r_k)

    (Hinton, Vinyals and Dean, "Distilling the knowledge in a neural network", 2015; the T^2
    factor keeps gradient magnitudes comparable across temperatures.) The teacher is detached.
    V is the points with a valid label (`points="labelled"`, the SRKD release's definition) or
    every point (`points="all"`: every point with a teacher target, so points without a label,
    e.g. under a limited annotation budget, still hear the teacher). `balanced` averages the
    per-point KL within each class (the teacher's argmax) first, then over the classes present,
    so rare classes weigh as much as walls and floors.

    Args:
        student_logits: float (N, K).
        teacher_logits: float (N, K) at the same points (no gradient flows into it).
        segment:        int64 (N,) labels; only selects the points, the labels are not used.
        temperature:    T > 0 (2 on ScanNet, 1 on nuScenes).
        points:         "labelled" or "all" (see above).
        balanced:       class-balanced mean instead of the plain mean over V.
    Returns:
        float32 scalar >= 0; 0 (attached to the graph) when V is empty.
    """
    check_logits("student logits", student_logits)
    check_logits("teacher logits", teacher_logits)
    check_pair("KL", student_logits, teacher_logits, same_width=True)
    check_segment(segment, student_logits.shape[0], student_logits.shape[1], ignore_index)
    check_temperature("temperature", temperature)
    if points not in KL_POINTS:
        raise ConfigError(f"kl_points must be one of {KL_POINTS}, got {points!r}")
    student, teacher = student_logits, teacher_logits.detach()
    if points == "labelled":  # "all" takes every row as it is (no copy)
        valid = segment != ignore_index
        student, teacher = student[valid], teacher[valid]
    if student.shape[0] == 0:
        return zero_like_graph(as_float(student_logits))
    t = float(temperature)
    teacher = as_float(teacher)
    log_q = torch.log_softmax(teacher / t, dim=1)
    log_r = torch.log_softmax(as_float(student) / t, dim=1)
    per_point = (log_q.exp() * (log_q - log_r)).sum(dim=1)
    if balanced:
        return class_balanced_mean(per_point, teacher.argmax(dim=1), teacher.shape[1]) * (t * t)
    return per_point.mean() * (t * t)
