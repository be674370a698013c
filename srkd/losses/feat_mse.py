"""Feature regression through a learned projection (FitNets-style hint loss)."""

from __future__ import annotations

import torch
from torch import nn

from srkd.errors import ConfigError
from srkd.losses._checks import as_float, check_pair


class FeatMSE(nn.Module):
    """Mean squared error between a learned projection of the student feature and the teacher's.

        FeatMSE = 1/(N * Dt) * sum_p || W s_p + b - t_p ||^2

    with (W, b) = nn.Linear(Ds -> Dt), trained with the student, and t detached (Romero et al.,
    "FitNets: hints for thin deep nets", ICLR 2015; the SRKD release's MSE baseline). All points
    take part: features do not depend on labels. The projection exists only for training; it is
    not part of the deployed student.

    Args:
        student_dim: Ds, width of the student's distilled feature.
        teacher_dim: Dt, width of the teacher's distilled feature.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        if int(student_dim) < 1 or int(teacher_dim) < 1:
            raise ConfigError(
                f"FeatMSE needs positive feature widths, got student_dim={student_dim}, "
                f"teacher_dim={teacher_dim}"
            )
        self.student_dim, self.teacher_dim = int(student_dim), int(teacher_dim)
        self.proj = nn.Linear(self.student_dim, self.teacher_dim)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        """student_feature float (N, Ds), teacher_feature float (N, Dt) -> float32 scalar."""
        check_pair("FeatMSE", student_feature, teacher_feature, same_width=False)
        widths = (student_feature.shape[1], teacher_feature.shape[1])
        if widths != (self.student_dim, self.teacher_dim):
            raise ConfigError(
                f"FeatMSE was built for student width {self.student_dim} -> teacher width "
                f"{self.teacher_dim} but got {student_feature.shape[1]} -> "
                f"{teacher_feature.shape[1]}; pass the models' feature_dim values"
            )
        projected = as_float(self.proj(student_feature.to(self.proj.weight.dtype)))
        return torch.mean((projected - as_float(teacher_feature.detach())) ** 2)
