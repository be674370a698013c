"""The combined distillation loss: named, weighted terms; weight 0 switches a term off."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import nn

from srkd.errors import ConfigError
from srkd.losses._checks import check_temperature
from srkd.losses.ce import cross_entropy_loss
from srkd.losses.cwd import cwd_loss
from srkd.losses.feat_mse import FeatMSE
from srkd.losses.kl import KL_POINTS, kl_distill_loss
from srkd.losses.lovasz import lovasz_softmax_loss
from srkd.losses.relation import GatherFn, sampled_relation_loss

if TYPE_CHECKING:  # only for annotations: importing srkd.models would pull in spconv
    from srkd.models.base import ModelOutput

TEACHER_TERMS = ("kl", "relation", "feat_mse", "cwd")
"""Terms that need teacher targets."""


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term (the term's name is the field name; 0 = not computed, not logged).

    L = ce*CE + lovasz*Lovasz + kl*KL_T + relation*Relation_tau + feat_mse*FeatMSE + cwd*CWD
    """

    ce: float = 1.0
    lovasz: float = 1.0
    kl: float = 0.0
    relation: float = 0.0
    feat_mse: float = 0.0
    cwd: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"loss weight {f.name!r} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"loss weight {f.name!r} must be finite and >= 0, got {value!r}")
            object.__setattr__(self, f.name, float(value))

    def active(self) -> dict[str, float]:
        """The terms with a non-zero weight, in a fixed order."""
        return {k: v for k, v in asdict(self).items() if v != 0.0}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every term name."""
        return tuple(f.name for f in fields(cls))

    def contributions(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """What the total actually sees of each term: `<term>_weighted` = weight x value and
        `<term>_share` = weighted / total (every term is >= 0, so shares lie in [0, 1] and sum
        to 1). `terms` holds the unweighted values of the active terms (scalars)."""
        weighted = {name: getattr(self, name) * float(value) for name, value in terms.items()}
        total = sum(weighted.values())
        out: dict[str, float] = {}
        for name, value in weighted.items():
            out[f"{name}_weighted"] = value
            out[f"{name}_share"] = value / total if total > 0 else 0.0
        return out


class DistillLoss(nn.Module):
    """Sums the active terms. A module because FeatMSE owns a learned projection, which exists
    only when feat_mse > 0 (so DDP sees no unused parameters); optimise `parameters()` together
    with the student's.

    Args:
        weights:           LossWeights.
        temperature:       T of KL_T and CWD.
        tau:               affinity temperature of the relation term.
        n_relation_points: points sampled per source scene for the relation term.
        kl_points:         "all" or "labelled": the points KL_T averages over (srkd.losses.kl).
        balanced_kl, balanced_ce: class-balanced means of KL_T and CE.
        student_dim:       student feature width Ds (FeatMSE projection input).
        teacher_dim:       teacher feature width Dt (FeatMSE projection output).
        gather_fn:         DDP hook for the relation term (see srkd.losses.distributed).
        generator:         CPU torch.Generator for relation sampling (None = global RNG).
    """

    def __init__(
        self,
        weights: LossWeights,
        temperature: float = 2.0,
        tau: float = 2.0,
        n_relation_points: int = 2048,
        kl_points: str = "labelled",
        balanced_kl: bool = False,
        balanced_ce: bool = False,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        gather_fn: GatherFn | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(weights, LossWeights):
            raise ConfigError(f"weights must be a LossWeights, got {type(weights).__name__}")
        check_temperature("temperature", temperature)
        check_temperature("tau", tau)
        if int(n_relation_points) < 1:
            raise ConfigError(f"n_relation_points must be >= 1, got {n_relation_points}")
        self.weights = weights
        self.temperature, self.tau = float(temperature), float(tau)
        self.n_relation_points = int(n_relation_points)
        if kl_points not in KL_POINTS:
            raise ConfigError(f"kl_points must be one of {KL_POINTS}, got {kl_points!r}")
        self.kl_points, self.balanced_kl, self.balanced_ce = kl_points, bool(balanced_kl), bool(balanced_ce)
        self.gather_fn, self.generator = gather_fn, generator
        self.feat_mse: FeatMSE | None = None
        if weights.feat_mse > 0:
            if student_dim is None or teacher_dim is None:
                raise ConfigError(
                    "feat_mse > 0 needs student_dim and teacher_dim (the models' feature_dim) "
                    "to build the projection; pass them or set feat_mse=0"
                )
            self.feat_mse = FeatMSE(student_dim, teacher_dim)

    @property
    def needs_teacher(self) -> bool:
        """Whether any active term uses teacher targets."""
        return any(name in TEACHER_TERMS for name in self.weights.active())

    def forward(
        self,
        student: ModelOutput,
        teacher: ModelOutput | None,
        segment: torch.Tensor,
        offset: torch.Tensor,
        relation_index: Sequence[torch.Tensor] | None = None,
        teacher_relation_feature: Sequence[torch.Tensor] | None = None,
        relation_offset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and every active term's (unweighted) value.

        Args:
            student:  logits float (N, K), feature float (N, Ds).
            teacher:  logits float (N, K), feature float (N, Dt) at the same points, or None
                      when only ce/lovasz are active. `feature` may be None when relation uses
                      `teacher_relation_feature` and feat_mse is off.
            segment:  int64 (N,) labels, -1 = ignore.
            offset:   int64 (B,) cumulative end index of each sample.
            relation_index: optional S int64 tensors of global point indices for the relation
                      term (default: sampled here).
            teacher_relation_feature: optional S tensors (n_i, Dt), the teacher features at
                      `relation_index` (e.g. from the cache) instead of teacher.feature.
            relation_offset: int64 (S,) cumulative end index of each SOURCE scene (a Mix3D
                      sample holds two), the samples the relation term pairs; default `offset`.
        Returns:
            (total float32 scalar with graph, {term: detached float32 scalar}) for active terms.
        """
        active = self.weights.active()
        if teacher is None and self.needs_teacher:
            need = [n for n in active if n in TEACHER_TERMS]
            raise ConfigError(
                f"loss terms {need} need teacher targets but none were given; use the 'ce' "
                "recipe to train without a teacher"
            )
        terms: dict[str, torch.Tensor] = {}
        for name in active:
            terms[name] = self._term(
                name, student, teacher, segment, offset, relation_index, teacher_relation_feature,
                offset if relation_offset is None else relation_offset,
            )
        total = student.logits.new_zeros((), dtype=torch.float32)
        for name, value in terms.items():
            total = total + active[name] * value
        return total, {n: v.detach() for n, v in terms.items()}

    def _term(self, name, student, teacher, segment, offset, relation_index, teacher_rel,
              relation_offset):
        if name == "ce":
            return cross_entropy_loss(student.logits, segment, balanced=self.balanced_ce)
        if name == "lovasz":
            return lovasz_softmax_loss(student.logits, segment)
        if name == "kl":
            return kl_distill_loss(student.logits, teacher.logits, segment, self.temperature,
                                   points=self.kl_points, balanced=self.balanced_kl)
        if name == "cwd":
            return cwd_loss(student.logits, teacher.logits, offset, self.temperature)
        if name == "feat_mse":
            _require_feature(teacher, "feat_mse")
            return self.feat_mse(student.feature, teacher.feature)
        if name == "relation":
            if teacher_rel is None:
                _require_feature(teacher, "relation")
            return sampled_relation_loss(
                teacher.feature if teacher_rel is None else teacher_rel,
                student.feature,
                relation_offset,
                self.n_relation_points,
                self.tau,
                indices=relation_index,
                generator=self.generator,
                gather_fn=self.gather_fn,
            )
        raise ConfigError(f"unknown loss term {name!r}")  # unreachable: names come from LossWeights


def _require_feature(teacher: ModelOutput | None, term: str) -> None:
    if teacher is None or getattr(teacher, "feature", None) is None:
        raise ConfigError(
            f"loss term {term!r} needs the teacher's per-point features but the targets have "
            "none; was the cache written without features?"
        )
