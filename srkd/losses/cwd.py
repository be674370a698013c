"""Channel-wise distillation of per-point logits, one spatial distribution per sample."""

from __future__ import annotations

import torch

from srkd.losses._checks import (
    as_float,
    check_logits,
    check_pair,
    check_temperature,
    split_sizes,
)


def cwd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    offset: torch.Tensor,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., "Channel-wise knowledge distillation for dense
    prediction", ICCV 2021), with the points of one sample in place of an image's pixels.

    For sample b with points P_b and channel (class) c, phi(x)_{b,c} = softmax over p in P_b of
    x_{p,c} / T. Then

        CWD = T^2 / (B * K) * sum_b sum_c KL( phi(t)_{b,c} || phi(s)_{b,c} )

    Each distribution spans ONE sample's points (never the whole batch). The teacher is detached.

    Args:
        student_logits: float (N, K).
        teacher_logits: float (N, K) at the same points.
        offset:         int64 (B,) cumulative end index of each sample (offset[-1] == N).
        temperature:    T > 0 (2 in the release's CWD baseline).
    Returns:
        float32 scalar >= 0.
    """
    check_logits("student logits", student_logits)
    check_logits("teacher logits", teacher_logits)
    check_pair("CWD", student_logits, teacher_logits, same_width=True)
    check_temperature("temperature", temperature)
    sizes = split_sizes(offset, student_logits.shape[0])
    t = float(temperature)
    total = student_logits.new_zeros((), dtype=torch.float32)
    for s_b, t_b in zip(
        torch.split(student_logits, sizes), torch.split(teacher_logits.detach(), sizes)
    ):
        # dim 0 = the sample's points: one distribution per channel
        log_q = torch.log_softmax(as_float(t_b) / t, dim=0)
        log_r = torch.log_softmax(as_float(s_b) / t, dim=0)
        total = total + (log_q.exp() * (log_q - log_r)).sum()
    return total * (t * t) / (len(sizes) * student_logits.shape[1])
